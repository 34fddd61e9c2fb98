"""The Containerfile, checked without building it (images cannot be pulled here, and
hadolint is not packaged in Debian 12): its instructions parse, each ``RUN`` is valid
``sh``, what it copies exists (or is what the documented build step makes), the
Debian packages it installs exist, the commands it runs work, and it agrees with the
DaemonSet of conf/kubernetes (image name and version, command, arguments, ports).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import speaker
from speaker.cli import main

ROOT = Path(__file__).parent.parent
CONTAINERFILE = ROOT / "Containerfile"
DAEMONSET = ROOT / "conf" / "kubernetes" / "daemonset.yaml"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in CONTAINERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = pending + line
        pending = ""
        word, _, rest = whole.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "the file ends inside a continued instruction"
    return out


def stages() -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for word, rest in instructions():
        if word == "FROM":
            out.append([])
        if out:
            out[-1].append((word, rest))
    return out


def container() -> dict[str, Any]:
    (daemonset,) = [d for d in yaml.safe_load_all(DAEMONSET.read_text()) if d]
    (spec,) = daemonset["spec"]["template"]["spec"]["containers"]
    assert isinstance(spec, dict)
    return spec


KNOWN = {"ARG", "FROM", "RUN", "COPY", "ENV", "EXPOSE", "STOPSIGNAL", "LABEL", "ENTRYPOINT",
         "CMD", "USER", "WORKDIR"}  # fmt: skip


def test_the_containerfile_parses_and_builds_from_debian() -> None:
    found = instructions()
    assert {word for word, _ in found} <= KNOWN, found
    args = dict(rest.partition("=")[::2] for word, rest in found if word == "ARG" and "=" in rest)
    assert re.fullmatch(r"docker\.io/library/debian:[a-z]+-slim", args["DEBIAN"]), args
    build, run = stages()
    assert build[0] == ("FROM", "${DEBIAN} AS build") and run[0] == ("FROM", "${DEBIAN}")


def test_every_run_is_valid_sh_and_installs_debian_packages() -> None:
    packages: set[str] = set()
    for word, rest in instructions():
        if word != "RUN":
            continue
        done = subprocess.run(["sh", "-n", "-c", rest], capture_output=True, text=True,
                              check=False)  # fmt: skip
        assert done.returncode == 0, (rest, done.stderr)
        for match in re.finditer(r"apt-get install ([^&;|]+)", rest):
            packages |= {w for w in shlex.split(match.group(1)) if not w.startswith("-")}
    assert packages == {"python3", "python3-venv"}
    apt_cache = shutil.which("apt-cache")
    if apt_cache is None:
        pytest.skip("no apt-cache here to look the packages up")
    for package in sorted(packages):
        done = subprocess.run([apt_cache, "show", "--no-all-versions", package],
                              capture_output=True, text=True, check=False)  # fmt: skip
        if done.returncode != 0 and package == "python3":
            pytest.skip("apt-cache knows no packages (run apt-get update)")
        assert done.returncode == 0 and f"Package: {package}" in done.stdout, done.stderr


def test_what_it_copies_exists_or_is_the_documented_wheel() -> None:
    build, run = stages()
    names = {rest.split(" AS ")[1] for word, rest in (build[0], run[0]) if " AS " in rest}
    header = CONTAINERFILE.read_text().split("\nARG ")[0]
    for stage in (build, run):
        for word, rest in stage:
            if word != "COPY":
                continue
            *sources, _ = shlex.split(rest)
            if sources[0].startswith("--from="):
                assert sources[0].removeprefix("--from=") in names
                continue
            for source in sources:
                if source == "dist/":  # made by the build step the header documents
                    assert "python3 -m pip wheel --no-deps -w dist ." in header
                else:
                    assert (ROOT / source).exists(), source
    # The wheel the build installs is the one `pip wheel` names.
    (install,) = [rest for word, rest in build if word == "RUN" and "pip install" in rest]
    assert "/dist/speaker-*-py3-none-any.whl" in install


def test_the_commands_it_runs_work() -> None:
    (check,) = [rest for word, rest in instructions() if word == "RUN" and " check " in rest]
    argv = shlex.split(check.split("&& speaker check", 1)[1])
    assert main(["check", *argv]) == 0


def test_it_agrees_with_the_daemonset() -> None:
    spec = container()
    assert spec["image"] == f"registry.example.com/speaker:{speaker.__version__}"
    assert "-t registry.example.com/speaker:VERSION" in CONTAINERFILE.read_text()
    found = dict(instructions())
    assert json.loads(found["ENTRYPOINT"]) == spec["command"]
    assert json.loads(found["CMD"]) == spec["args"]
    ports = spec["ports"]
    assert isinstance(ports, list)
    assert sorted(found["EXPOSE"].split()) == sorted(
        f"{p['containerPort']}/{p['protocol'].lower()}" for p in ports
    )
    # `speaker` on the PATH: the readiness probe and the command name it so.
    runs = [rest for word, rest in stages()[-1] if word == "RUN"]
    assert any("ln -s /opt/speaker/bin/speaker /usr/local/bin/speaker" in run for run in runs)
    assert spec["readinessProbe"]["exec"]["command"][0] == "speaker"
    assert found["STOPSIGNAL"] == "SIGTERM"


def test_hadolint_if_installed() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (not packaged in Debian 12)")
    done = subprocess.run([hadolint, str(CONTAINERFILE)], capture_output=True, text=True,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
