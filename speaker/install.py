"""``speaker install-systemd``: the systemd unit, for the ``speaker`` installed here.

The unit ships in the package (``speaker/speaker.service``, a link to
``conf/speaker.service`` in the source tree). Installing it writes
``ROOT/etc/systemd/system/speaker.service`` (mode 0644, atomically) with
``ExecStart=``/``ExecReload=`` naming this installation's ``speaker`` script and the
configuration file given, after checking that the service will be able to run it:
the unit's ``ProtectHome=yes`` and ``PrivateTmp=yes`` hide ``/home``, ``/root``,
``/run/user``, ``/tmp`` and ``/var/tmp`` from it, so a script (or the Python it runs
on, such as a pyenv under ``/root``) there would fail with status 203/EXEC at start.
An existing, different unit is kept unless ``--force`` (local changes belong in a
drop-in: ``systemctl edit speaker``). It runs no ``systemctl``: it prints what to run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import sys
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from speaker.files import write_atomically

__all__ = [
    "UNIT_NAME",
    "InstallError",
    "add_parser",
    "hidden_paths",
    "main",
    "unit_text",
]

UNIT_NAME = "speaker.service"
UNIT_DIR = Path("etc/systemd/system")
# What the packaged unit says, replaced by this installation's paths.
PACKAGED_EXEC = "/usr/local/bin/speaker"
PACKAGED_CONFIG = "/etc/speaker/speaker.toml"
# Directories the service does not see, by the directive that hides them.
_HIDDEN_BY = {
    ("ProtectHome", "yes"): ("/home", "/root", "/run/user"),
    ("ProtectHome", "tmpfs"): ("/home", "/root", "/run/user"),
    ("ProtectHome", "read-only"): (),
    ("PrivateTmp", "yes"): ("/tmp", "/var/tmp"),
}
EXIT_OK, EXIT_ERROR = 0, 1


class InstallError(Exception):
    """The unit cannot be installed as asked; the message says why and what to do."""


def packaged_unit() -> str:
    return resources.files("speaker").joinpath(UNIT_NAME).read_text(encoding="utf-8")


def unit_text(executable: str, config: str, template: str | None = None) -> str:
    """The packaged unit with ``executable`` and ``config`` in its command lines."""
    text = packaged_unit() if template is None else template
    if f"ExecStart={PACKAGED_EXEC} run -c {PACKAGED_CONFIG}" not in text:
        raise InstallError(f"the packaged unit has no ExecStart={PACKAGED_EXEC} run -c ...")

    def rewrite(line: str) -> str:
        if line.startswith(("ExecStart=", "ExecReload=", "ExecStop=")):
            return line.replace(PACKAGED_EXEC, executable).replace(PACKAGED_CONFIG, config)
        return line

    return "".join(rewrite(line) for line in text.splitlines(keepends=True))


def _directives(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def hidden_paths(text: str) -> dict[str, str]:
    """The directories the unit ``text`` hides from its service, each with the
    directive that hides it (``"/root": "ProtectHome=yes"``)."""
    directives = _directives(text)
    hidden: dict[str, str] = {}
    for (key, value), paths in _HIDDEN_BY.items():
        if directives.get(key) == value:
            hidden |= dict.fromkeys(paths, f"{key}={value}")
    return hidden


def _under(path: str, directories: Iterable[str]) -> str | None:
    for directory in directories:
        if path == directory or path.startswith(directory.rstrip("/") + "/"):
            return directory
    return None


def interpreter(script: Path) -> str | None:
    """The ``#!`` interpreter of ``script`` (a console script pip wrote), if any."""
    try:
        with script.open("rb") as file:
            first = file.readline(4096)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode("utf-8", "replace").split()
    return words[0] if words else None


def this_script() -> Path | None:
    """The ``speaker`` console script running now (or of this Python's environment)."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "speaker" and argv0.is_file():
        return Path(os.path.abspath(argv0))
    beside = Path(sys.executable).parent / "speaker"  # python -m speaker.cli in a venv
    if beside.is_file():
        return beside
    found = shutil.which("speaker")
    return Path(found) if found else None


def check_executable(executable: Path, hidden: dict[str, str]) -> tuple[list[str], list[str]]:
    """(problems, warnings) of running ``executable`` as the unit's service."""
    problems: list[str] = []
    warnings: list[str] = []
    if not executable.is_absolute():
        return [f"{executable}: not an absolute path"], []
    if not executable.is_file() or not os.access(executable, os.X_OK):
        return [f"{executable}: not an executable file"], []
    paths = {"the speaker script": executable}
    real = executable.resolve()
    if real != executable:
        paths["the speaker script (the link's target)"] = real
    python = interpreter(real)
    if python is not None:
        paths[f"its interpreter ({python})"] = Path(python)
        if Path(python).resolve() != Path(python):
            paths["its interpreter's target"] = Path(python).resolve()
    for what, path in paths.items():
        directory = _under(str(path), hidden)
        if directory is not None:
            problems.append(
                f"{what} is {path}, under {directory}, which the unit's {hidden[directory]}"
                " hides from the service: it would fail with status 203/EXEC"
            )
        elif not _others_can_reach(path):
            warnings.append(
                f"{what}, {path}, is not readable by other users: the service's user"
                " (User=speaker) may not run it"
            )
    return problems, warnings


def _others_can_reach(path: Path) -> bool:
    """Whether a user other than the owner (and not in its group) can read ``path``
    and every directory above it."""
    try:
        if not path.stat().st_mode & stat.S_IROTH:
            return False
        return all(parent.stat().st_mode & stat.S_IXOTH for parent in path.parents)
    except OSError:
        return False


def install(
    root: Path, executable: Path, config: str, *, force: bool = False
) -> tuple[Path, str, list[str]]:
    """Write the unit under ``root``: returns (its path, what was done, warnings).

    Raises:
        InstallError: the executable would not run under the unit, or a different
            unit is there (without ``force``), or the file cannot be written.
    """
    text = unit_text(str(executable), config)
    problems, warnings = check_executable(executable, hidden_paths(text))
    if problems and not force:
        raise InstallError(
            "\n".join(problems)
            + "\ninstall speaker where the service can see it, e.g. system-wide with pipx:"
            " sudo PIPX_HOME=/opt/pipx PIPX_BIN_DIR=/usr/local/bin pipx install"
            " speaker-VERSION-py3-none-any.whl (and a Python outside /root and /home);"
            " or --force"
        )
    warnings = problems + warnings
    target = root / UNIT_DIR / UNIT_NAME
    try:
        old: str | None = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        old = None
    except OSError as exc:
        raise InstallError(f"cannot read {target}: {exc.strerror or exc}") from None
    if old == text:
        return target, "unchanged", warnings
    if old is not None and not force:
        raise InstallError(
            f"{target} exists and differs from the unit this speaker would install: kept."
            " Local changes belong in a drop-in (systemctl edit speaker); --force replaces"
            " the file"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, text, mode=0o644)
    except OSError as exc:
        raise InstallError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target, "replaced" if old is not None else "installed", warnings


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub = commands.add_parser(
        "install-systemd",
        help="install the systemd unit for this speaker (ROOT/etc/systemd/system)",
        description="Write /etc/systemd/system/speaker.service (under --root) with"
        " ExecStart naming this installation's speaker script, after checking the service"
        " can run it. Prints the commands that remain (user, configuration, systemctl)."
        " See docs/install.md.",
    )
    sub.add_argument("--root", default="/", metavar="DIR",
                     help="install under DIR instead of / (packaging, tests)")  # fmt: skip
    sub.add_argument(
        "--exec",
        dest="executable",
        metavar="PATH",
        help="the speaker script for ExecStart (default: the one running this command)",
    )
    sub.add_argument(
        "-c",
        "--config",
        default=PACKAGED_CONFIG,
        metavar="FILE",
        help=f"the configuration file the unit runs with ({PACKAGED_CONFIG})",
    )
    sub.add_argument(
        "--force",
        action="store_true",
        help="replace a different unit already there; install even if the service"
        " would not see the script",
    )
    sub.add_argument("--print", dest="print_only", action="store_true",
                     help="print the unit on stdout instead of installing it")  # fmt: skip


def main(args: argparse.Namespace) -> int:
    """``speaker install-systemd``: the exit status."""
    found = Path(args.executable) if args.executable else this_script()
    if found is None:
        print("install-systemd: cannot find the speaker script; pass --exec PATH",
              file=sys.stderr)  # fmt: skip
        return EXIT_ERROR
    executable = Path(os.path.abspath(found))
    config = args.config
    if not Path(config).is_absolute():
        print(f"install-systemd: --config {config}: not an absolute path", file=sys.stderr)
        return EXIT_ERROR
    try:
        if args.print_only:
            text = unit_text(str(executable), config)
            problems, warnings = check_executable(executable, hidden_paths(text))
            for line in problems + warnings:
                print(f"warning: {line}", file=sys.stderr)
            sys.stdout.write(text)
            return EXIT_OK
        target, done, warnings = install(Path(args.root), executable, config, force=args.force)
    except InstallError as exc:
        for line in str(exc).splitlines():
            print(f"install-systemd: {line}", file=sys.stderr)
        return EXIT_ERROR
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    print(f"{done}: {target} (ExecStart={executable} run -c {config})")
    config_dir = str(Path(config).parent)
    print(
        "then, as root (docs/install.md):\n"
        "  id speaker || useradd --system --home-dir /var/lib/speaker"
        " --shell /usr/sbin/nologin speaker\n"
        f"  install -d -m 0750 -g speaker {config_dir}\n"
        f"  install -m 0640 -g speaker speaker.toml {config}\n"
        f"  {executable} check -c {config}\n"
        "  systemctl daemon-reload && systemctl enable --now speaker"
    )
    return EXIT_OK
