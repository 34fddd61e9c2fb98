"""Installing on a node: the sdist and wheel build, the wheel installs into a fresh
virtualenv and its ``speaker`` runs, and ``speaker install-systemd`` installs the unit.

Offline: the build backend (setuptools>=77, in the ``test`` extra) is the one of the
running environment (``--no-build-isolation``, as it were); without it, it is fetched
once with pip into a temporary directory (skipped when that fails, outside CI). The
wheel's dependencies come from the running environment too: each installed
distribution the wheel requires is packed back into a wheel (its RECORD's files), so
that ``pip install --no-index --find-links`` runs pip's real resolver on the wheel's
``Requires-Dist`` without a package index.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import speaker
from speaker import install
from tests.helpers import IN_CI

ROOT = Path(__file__).parent.parent
CONF = ROOT / "conf"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SOURCES = ["pyproject.toml", "README.md", "MANIFEST.in", "Containerfile", "speaker",
           "protocols", "conf", "docs"]  # fmt: skip
BACKEND = "setuptools>=77"
TIMEOUT = 300


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL"))}
    return env | {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": "1"} | extra


def sh(*argv: str | Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("env", clean_env())
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=TIMEOUT, check=False, **kwargs)  # fmt: skip
    return done


def unavailable(reason: str) -> NoReturn:
    if IN_CI:
        pytest.fail(f"CI=true: {reason}")
    pytest.skip(reason)


# ---- building ----------------------------------------------------------------------------------


def backend_path(tmp: Path) -> str:
    """A PYTHONPATH under which ``setuptools.build_meta`` is setuptools>=77 ("" if this
    environment has it)."""
    try:
        if Version(importlib.metadata.version("setuptools")) >= Version("77"):
            return ""
    except importlib.metadata.PackageNotFoundError:
        pass
    target = tmp / "backend"
    done = sh(sys.executable, "-m", "pip", "install", "-q", "--target", target, BACKEND)
    if done.returncode != 0:
        unavailable(f"no {BACKEND} here and pip could not fetch it: {done.stderr[-500:]}")
    return str(target)


def build(source: Path, out: Path, backend: str, *, sdist: bool) -> Path:
    what = "build_sdist" if sdist else "build_wheel"
    code = f"import setuptools.build_meta as b; print(b.{what}({str(out)!r}))"
    env = clean_env(PYTHONPATH=backend) if backend else clean_env()
    done = sh(sys.executable, "-c", code, cwd=source, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return out / done.stdout.strip().splitlines()[-1]


class Built:
    def __init__(self, tmp: Path) -> None:
        self.tree = tmp / "tree"
        self.tree.mkdir()
        for name in SOURCES:
            path = ROOT / name
            if path.is_dir():
                shutil.copytree(path, self.tree / name, symlinks=True,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))  # fmt: skip
            elif path.exists():
                shutil.copy2(path, self.tree / name)
        backend = backend_path(tmp)
        dist = tmp / "dist"
        self.sdist = build(self.tree, dist, backend, sdist=True)
        self.wheel = build(self.tree, dist, backend, sdist=False)
        # pipx install speaker-X.tar.gz: the wheel built from the unpacked sdist.
        with tarfile.open(self.sdist) as tar:
            tar.extractall(tmp / "unpacked", filter="data")
        unpacked = tmp / "unpacked" / self.sdist.name.removesuffix(".tar.gz")
        self.sdist_wheel = build(unpacked, tmp / "from-sdist", backend, sdist=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return Built(tmp_path_factory.mktemp("build"))


def names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        return sorted(z.namelist())


def metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        return z.read(name).decode()


def test_the_wheel_has_the_packages_the_unit_and_the_console_script(built: Built) -> None:
    files = names(built.wheel)
    sources = sorted(
        str(p.relative_to(ROOT))
        for package in ("speaker", "protocols")
        for p in (ROOT / package).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".pyc")
    )
    dist_info = f"speaker-{speaker.__version__}.dist-info/"
    assert [f for f in files if not f.startswith(dist_info)] == sources
    with zipfile.ZipFile(built.wheel) as z:
        # The unit is the file, not the link (and the same as conf/speaker.service).
        assert z.read("speaker/speaker.service") == (CONF / "speaker.service").read_bytes()
        entry_points = z.read(dist_info + "entry_points.txt").decode()
    assert "[console_scripts]\nspeaker = speaker.cli:main" in entry_points
    meta = metadata(built.wheel)
    assert f"\nVersion: {speaker.__version__}\n" in meta
    assert "\nRequires-Python: >=3.11\n" in meta
    required = [r for r in re.findall(r"^Requires-Dist: (.*)$", meta, re.M) if "extra ==" not in r]
    # As requirements: the metadata writes a specifier set in its own order.
    assert [Requirement(r) for r in required] == [
        Requirement(r) for r in PYPROJECT["project"]["dependencies"]
    ]


def test_the_sdist_builds_the_same_wheel_and_has_the_deployment_files(built: Built) -> None:
    assert names(built.sdist_wheel) == names(built.wheel)
    with tarfile.open(built.sdist) as tar:
        top = built.sdist.name.removesuffix(".tar.gz")
        members = {m.name.removeprefix(top + "/"): m for m in tar.getmembers()}
    for name in ["pyproject.toml", "README.md", "Containerfile", "docs/install.md",
                 "conf/speaker.service", "conf/kubernetes/daemonset.yaml",
                 *(str(p.relative_to(ROOT)) for p in CONF.glob("*.toml"))]:  # fmt: skip
        assert name in members, name
    assert members["speaker/speaker.service"].isfile()  # not a link into conf/
    assert not [n for n in members if n.startswith(("tests/", "bench/", "lab/", ".venv"))]


# ---- a fresh virtualenv -------------------------------------------------------------------


def requirements_closure(wheel: Path) -> list[importlib.metadata.Distribution]:
    """The installed distributions that the wheel's Requires-Dist needs, recursively."""
    todo = [Requirement(r) for r in re.findall(r"^Requires-Dist: (.*)$", metadata(wheel), re.M)]
    found: dict[str, importlib.metadata.Distribution] = {}
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(req.name)
        if name in found:
            continue
        dist = importlib.metadata.distribution(req.name)
        assert req.specifier.contains(dist.version, prereleases=True), (req, dist.version)
        found[name] = dist
        todo += [Requirement(r) for r in dist.requires or ()]
    return list(found.values())


def repack(dist: importlib.metadata.Distribution, out: Path) -> Path:
    """An installed distribution as a wheel again: the files its RECORD lists (less
    scripts and bytecode), with its own WHEEL tags and a new RECORD."""
    files = [f for f in dist.files or () if not str(f).startswith("..") and
             "__pycache__" not in f.parts and not str(f).endswith(".pyc")]  # fmt: skip
    info = next(f for f in files if f.name == "METADATA").parent
    wheel_file = next(f for f in files if f.parent == info and f.name == "WHEEL")
    tags = re.findall(r"^Tag: (.*)$", wheel_file.read_text(), re.M) or ["py3-none-any"]
    parts = [sorted({tag.split("-")[i] for tag in tags}) for i in range(3)]
    name = f"{str(info).removesuffix('.dist-info')}-{'-'.join('.'.join(p) for p in parts)}.whl"
    rows: list[list[str]] = []
    path = out / name
    with zipfile.ZipFile(path, "w") as z:
        for f in files:
            if f.parent == info and f.name in (
                "RECORD",
                "INSTALLER",
                "REQUESTED",
                "direct_url.json",
            ):
                continue
            data = Path(str(f.locate())).read_bytes()
            z.writestr(str(f), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            rows.append([str(f), f"sha256={digest.decode()}", str(len(data))])
        record = io.StringIO()
        csv.writer(record, lineterminator="\n").writerows([*rows, [f"{info}/RECORD", "", ""]])
        z.writestr(f"{info}/RECORD", record.getvalue())
    return path


class Venv:
    def __init__(self, path: Path, wheel: Path, wheelhouse: Path) -> None:
        self.path = path
        done = sh(sys.executable, "-m", "venv", "--without-pip", path)
        assert done.returncode == 0, done.stderr
        done = sh(sys.executable, "-m", "pip", "--python", self.python, "install", "-q",
                  "--no-index", "--find-links", wheelhouse, wheel)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def speaker(self) -> Path:
        return self.path / "bin" / "speaker"

    def run(self, *argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return sh(self.speaker, *argv, cwd=cwd or self.path)


@pytest.fixture(scope="module")
def wheelhouse(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel's dependencies, as wheels, from this environment."""
    out = tmp_path_factory.mktemp("wheelhouse")
    for dist in requirements_closure(built.sdist_wheel):
        repack(dist, out)
    return out


@pytest.fixture(scope="module")
def venv(built: Built, wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    return Venv(tmp_path_factory.mktemp("venv") / "fresh", built.sdist_wheel, wheelhouse)


def test_the_installed_speaker_runs_from_its_own_environment(venv: Venv) -> None:
    done = venv.run("--version")
    assert (done.returncode, done.stdout) == (0, f"speaker {speaker.__version__}\n"), done.stderr
    where = sh(venv.python, "-c", "import speaker, sys; print(speaker.__file__, sys.prefix)",
               cwd=venv.path)  # fmt: skip
    module, prefix = where.stdout.split()
    assert Path(prefix) == venv.path and Path(module).is_relative_to(venv.path), where.stdout
    done = sh(venv.python, "-m", "pip", "--version")
    assert done.returncode != 0  # no pip there: only the wheel and its dependencies


def test_pipx_installs_the_wheel(built: Built, wheelhouse: Path, tmp_path: Path) -> None:
    """docs/install.md's command, with the index replaced by the wheelhouse."""
    pipx = shutil.which("pipx")
    if pipx is None:
        unavailable("pipx is not installed (apt-get install pipx)")
    home, bin_dir = tmp_path / "pipx", tmp_path / "bin"
    # PIP_NO_INDEX: pipx also upgrades its shared pip; offline, that fails at once.
    env = clean_env(PIPX_HOME=str(home), PIPX_BIN_DIR=str(bin_dir), USE_EMOJI="0", PIP_NO_INDEX="1")
    done = sh(pipx, "install", "--pip-args", f"--no-index --find-links {wheelhouse}",
              built.wheel, env=env)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    script = bin_dir / "speaker"
    assert script.is_symlink() and script.resolve() == (home / "venvs/speaker/bin/speaker")
    done = sh(script, "--version")
    assert done.stdout == f"speaker {speaker.__version__}\n", done.stderr
    done = sh(script, "check", "--host-checks", "off", "-c", CONF / "speaker.toml")
    assert done.returncode == 0 and done.stdout.startswith("ok: 2 peers"), done.stderr


def examples() -> Iterator[Path]:
    yield from sorted(CONF.glob("*.toml"))


@pytest.mark.parametrize("example", list(examples()), ids=lambda p: p.name)
def test_the_installed_speaker_checks_every_example(venv: Venv, example: Path) -> None:
    # --host-checks off: the examples' interfaces and routes are other hosts'.
    done = venv.run("check", "--host-checks", "off", "-c", example)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: ") and done.stderr == ""


def test_every_conf_file_is_checked() -> None:
    # conf/ holds the TOML examples and the deployment files, each tested somewhere.
    others = {"speaker.service", "kubernetes"}
    assert {p.name for p in CONF.iterdir()} == {p.name for p in examples()} | others


# ---- the systemd unit ----------------------------------------------------------------------


def test_install_systemd_from_the_installed_wheel(venv: Venv, tmp_path: Path) -> None:
    root = tmp_path / "root"
    unit = root / "etc" / "systemd" / "system" / "speaker.service"
    # The venv is under /tmp, which the unit's PrivateTmp=yes hides: refused.
    done = venv.run("install-systemd", "--root", root)
    assert done.returncode == 1 and not unit.exists()
    assert f"the speaker script is {venv.speaker}, under /tmp, which the unit's PrivateTmp=yes" \
        in done.stderr  # fmt: skip
    done = venv.run("install-systemd", "--root", root, "--force", "-c", "/etc/speaker/r1.toml")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"installed: {unit} (ExecStart={venv.speaker} run -c")
    assert "systemctl daemon-reload && systemctl enable --now speaker" in done.stdout
    assert oct(unit.stat().st_mode & 0o777) == "0o644"
    text = unit.read_text()
    expected = (CONF / "speaker.service").read_text()
    for command in ("run", "check"):
        packaged = f"/usr/local/bin/speaker {command} -c /etc/speaker/speaker.toml"
        expected = expected.replace(packaged, f"{venv.speaker} {command} -c /etc/speaker/r1.toml")
    # ExecStop, the restart/stop hook (speaker/shutdown_mode.py), names this speaker too.
    hook = "speaker systemd-stop --unit %n $MAINPID"
    expected = expected.replace(f"/usr/local/bin/{hook}", f"{venv.speaker.parent}/{hook}")
    assert f"ExecStop={venv.speaker} systemd-stop --unit %n $MAINPID\n" in text
    assert text == expected and text != (CONF / "speaker.service").read_text()
    # Again: unchanged. Changed by hand: kept unless --force.
    again = venv.run("install-systemd", "--root", root, "--force", "-c", "/etc/speaker/r1.toml")
    assert again.stdout.startswith(f"unchanged: {unit}")
    unit.write_text(text.replace("RestartSec=2s", "RestartSec=5s"))
    done = venv.run("install-systemd", "--exec", venv.speaker, "--root", root,
                    "-c", "/etc/speaker/r1.toml")  # fmt: skip
    assert done.returncode == 1 and "RestartSec=5s" in unit.read_text()
    assert "under /tmp" in done.stderr
    verify(unit)


def verify(unit: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        unavailable("systemd-analyze is not installed (apt-get install systemd)")
    done = sh(analyze, "verify", unit)
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 0, output
    assert not [line for line in output.splitlines() if "speaker.service" in line], output


def test_install_systemd_print_and_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from speaker.cli import main

    script = tmp_path / "speaker"
    script.write_text("#!/root/.pyenv/versions/3.11.7/bin/python3.11\n")
    script.chmod(0o755)
    assert main(["install-systemd", "--print", "--exec", str(script)]) == 0
    out, err = capsys.readouterr()
    assert f"ExecStart={script} run -c /etc/speaker/speaker.toml\n" in out
    assert "its interpreter (/root/.pyenv/versions/3.11.7/bin/python3.11) is" in err
    assert "under /root, which the unit's ProtectHome=yes hides" in err
    assert main(["install-systemd", "--exec", str(tmp_path / "nope"), "--root", str(tmp_path)]) == 1
    assert "nope: not an executable file" in capsys.readouterr().err
    assert main(["install-systemd", "-c", "speaker.toml", "--root", str(tmp_path)]) == 1
    assert "--config speaker.toml: not an absolute path" in capsys.readouterr().err


def test_hidden_paths_follow_the_unit() -> None:
    text = (CONF / "speaker.service").read_text()
    assert install.hidden_paths(text) == {
        "/home": "ProtectHome=yes", "/root": "ProtectHome=yes", "/run/user": "ProtectHome=yes",
        "/tmp": "PrivateTmp=yes", "/var/tmp": "PrivateTmp=yes",
    }  # fmt: skip
    assert install.hidden_paths(text.replace("PrivateTmp=yes", "PrivateTmp=no")).keys() == {
        "/home",
        "/root",
        "/run/user",
    }
    problems, warnings = install.check_executable(Path("/usr/bin/env"), install.hidden_paths(text))
    assert (problems, warnings) == ([], [])
    with pytest.raises(install.InstallError, match="no ExecStart=/usr/local/bin/speaker"):
        install.unit_text("/x", "/y", template=text.replace("/usr/local/bin/speaker run", "run"))
