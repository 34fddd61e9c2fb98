"""``speaker check -c FILE``: exit codes and output."""

from __future__ import annotations

from pathlib import Path

import pytest

from speaker.cli import main

DATA = Path(__file__).parent.parent / "data"
MISTAKES = DATA / "common-mistakes.toml"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], list[str]]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out.splitlines(), err.splitlines()


def test_common_mistakes_one_clear_message_each(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "check", "-c", str(MISTAKES))
    f = str(MISTAKES)
    assert status == 2
    assert out == []
    assert err == [
        f"{f}: bfd_profiles[1].detect_multiplier: 1 is below the minimum of 2",
        f'{f}: peers[0].bfd_profile: no BFD profile named "my-bfd-profile" (defined:'
        " production-bfd, too-eager)",
        f"{f}: peers[1].keepalive_time: 2m is above the hold time of 1m30s",
        f'{f}: services[0].address: 203.0.113.99 is outside its pool "web" (203.0.113.0/28)',
        f"warning: {f}: bfd_profiles[0].transmit_interval: 10 ms is the floor; timers this short"
        " cause false positives under load (CPU starvation, busy links)",
        f"warning: {f}: bfd_profiles[0].receive_interval: 10 ms is the floor; timers this short"
        " cause false positives under load (CPU starvation, busy links)",
        f"{f}: 4 errors",
    ]


def test_valid_file_prints_warnings_and_summary(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The common mistakes, fixed: only the warnings about the 10 ms floor remain.
    text = (
        MISTAKES.read_text()
        .replace('bfd_profile = "my-bfd-profile"', 'bfd_profile = "production-bfd"')
        .replace("detect_multiplier = 1 ", "detect_multiplier = 3 ")
        .replace('keepalive_time = "2m"', 'keepalive_time = "30s"')
        .replace('address = "203.0.113.99"', 'address = "203.0.113.9"')
    )
    file = tmp_path / "fixed.toml"
    file.write_text(text)
    status, out, err = run(capsys, "check", "--host-checks", "off", "-c", str(file))
    assert status == 0
    assert out[0] == "ok: 2 peers, 1 pool, 1 service"
    assert out[1].startswith("router ID: ") and len(out) == 2  # this host's: no source_address
    assert [line.split(": ", 2)[:2] for line in err] == [
        ["warning", str(file)],
        ["warning", str(file)],
    ]


def test_toml_syntax_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    file = tmp_path / "broken.toml"
    file.write_text('[speaker]\nmy_asn = 64512\nnode_name = "x\n')
    status, _, err = run(capsys, "check", "-c", str(file))
    assert status == 2
    assert err == [
        f"{file}: line 3, column 15: TOML syntax error: Illegal character '\\n'",
        f"{file}: 1 error",
    ]


def test_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    file = tmp_path / "nope.toml"
    status, _, err = run(capsys, "check", "-c", str(file))
    assert status == 2
    assert err[0] == f"{file}: cannot read the file: No such file or directory"


def test_config_option_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["check"])
    assert info.value.code == 2


def test_version_still_works(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("speaker ")
