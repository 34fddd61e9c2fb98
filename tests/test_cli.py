from __future__ import annotations

import subprocess
import sys

import pytest

import speaker
from speaker.cli import main


def test_version_flag_prints_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"speaker {speaker.__version__}"


def test_console_script_is_installed() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "speaker.cli", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0 and out.stdout.startswith("speaker ")


def test_no_command_is_a_usage_error() -> None:
    assert main([]) == 2


def test_the_daemon_does_not_load_test_tooling() -> None:
    """trio.testing imports pytest; the runtime must not pull it (or hypothesis) in."""
    code = (
        "import sys, speaker.cli, speaker.daemon, speaker.app, speaker.control, speaker.metrics;"
        "bad = [m for m in ('pytest', 'hypothesis', 'trio.testing') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
