"""A failed ``speaker import-metallb`` leaves no file that ``speaker check`` accepts.

``speaker import-metallb x.yaml > f; speaker check -c f`` used to print ``ok: 0
peers``: the import wrote nothing (the shell made ``f`` empty) and an empty file is
valid TOML. Now ``check`` refuses a file without peers, or without a peer for this
node, unless ``--allow-empty`` (as ``speaker reload``); and ``import-metallb -o FILE``
writes FILE only on success, atomically.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from speaker.cli import EXIT_CONFIG, EXIT_ERROR, EXIT_OK, main

DATA = Path(__file__).parent.parent / "data" / "metallb"
EXAMPLES = [str(DATA / n) for n in ("bfd-profiles.yaml", "peers.yaml", "pools.yaml",
                                     "advertisements.yaml")]  # fmt: skip
POOLS = str(DATA / "pools.yaml")  # valid on its own: no peers, so check refuses it
BAD = str(DATA / "invalid" / "hold-time.yaml")


def good(tmp_path: Path) -> list[str]:
    """import-metallb's arguments for the four examples (as tests/speaker/test_metallb.py)."""
    (tmp_path / "secrets" / "tor-b-password").mkdir(parents=True)
    (tmp_path / "secrets" / "tor-b-password" / "password").write_text("from-the-secret\n")
    return [*EXAMPLES, "--interface", "tor-a=eth1", "--secrets-dir", str(tmp_path / "secrets")]


PEER = """
[[peers]]
name = "r1"
peer_address = "198.18.0.1"
peer_asn = 65000
my_asn = 65001
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def check(capsys: pytest.CaptureFixture[str], file: Path, *extra: str) -> tuple[int, str, str]:
    return run(capsys, "check", "--host-checks", "off", "-c", str(file), *extra)


@pytest.mark.parametrize("text", ["", "\n# truncated\n", "[speaker]\nmy_asn = 64512\n"])
def test_check_refuses_a_file_without_peers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    file = tmp_path / "speaker.toml"
    file.write_text(text)
    status, out, err = check(capsys, file)
    assert (status, out) == (EXIT_CONFIG, "")
    assert err.splitlines() == [
        f"{file}: peers: the file has no [[peers]]: the speaker would open no BGP session"
        " and announce nothing (accept it with --allow-empty)",
        f"{file}: 1 error",
    ]
    status, out, err = check(capsys, file, "--allow-empty")
    # (the next line says which router ID the host gives)
    assert (status, out.splitlines()[0], err) == (EXIT_OK, "ok: 0 peers, 0 pools, 0 services", "")


def test_check_refuses_a_file_with_no_peer_for_this_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "speaker.toml"
    elsewhere = PEER + 'node_selectors = [{ match_labels = { rack = "r9" } }]\n'
    file.write_text('[speaker]\nlabels = { rack = "r1" }\n' + elsewhere)
    status, _, err = check(capsys, file)
    assert status == EXIT_CONFIG
    assert (
        f"{file}: peers: no peer applies to this node (node_selectors select none of the 1"
        " peers for [speaker] labels {rack=r1}): the speaker would open no BGP session"
        " (accept it with --allow-empty)"
    ) in err.splitlines()
    assert check(capsys, file, "--allow-empty")[0] == EXIT_OK
    file.write_text('[speaker]\nlabels = { rack = "r9" }\n' + elsewhere)
    status, out, _ = check(capsys, file)
    assert (status, out.splitlines()[0]) == (EXIT_OK, "ok: 1 peer, 0 pools, 0 services")


def test_the_idle_error_comes_with_the_other_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "speaker.toml"
    file.write_text('[[peers]]\nname = "r1"\n')  # invalid: the file's errors, not "no peers"
    status, _, err = check(capsys, file)
    assert status == EXIT_CONFIG and "no [[peers]]" not in err
    assert f"{file}: peers[0].peer_address: required key is missing" in err


def test_a_failed_import_redirected_to_a_file_does_not_pass_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "import-metallb", BAD)
    assert status == EXIT_CONFIG and out == ""  # nothing on stdout
    assert "import-metallb: 1 error" in err
    file = tmp_path / "speaker.toml"
    file.write_text(out)  # what `> file` leaves
    status, out, err = check(capsys, file)
    assert status == EXIT_CONFIG and out == "" and "no [[peers]]" in err


def test_import_output_file_is_written_only_on_success(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = good(tmp_path)
    file = tmp_path / "speaker.toml"
    # Failure: no file made.
    status, out, _ = run(capsys, "import-metallb", "-o", str(file), BAD)
    assert (status, out) == (EXIT_CONFIG, "") and not file.exists()
    # Success: the TOML goes to the file, not stdout; a new file is 0600.
    status, out, err = run(capsys, "import-metallb", "-o", str(file), *args)
    assert (status, out) == (EXIT_OK, ""), err
    written = file.read_text()
    assert "[[peers]]" in written
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert check(capsys, file)[0] == EXIT_OK
    # Failure again: the existing file is left exactly as it was.
    os.chmod(file, 0o640)
    status, out, _ = run(capsys, "import-metallb", "-o", str(file), BAD)
    assert status == EXIT_CONFIG and file.read_text() == written
    # Success over an existing file keeps its mode; no temporary file is left.
    status, _, err = run(capsys, "import-metallb", "-o", str(file), POOLS)
    assert status == EXIT_OK, err
    assert "[[peers]]" not in file.read_text() and "[[pools]]" in file.read_text()
    assert stat.S_IMODE(file.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secrets", "speaker.toml"]
    # A successful import without peers: check says so.
    assert "no [[peers]]" in check(capsys, file)[2]


def test_import_output_to_an_unwritable_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "missing-dir" / "speaker.toml"
    status, out, err = run(capsys, "import-metallb", "-o", str(target), POOLS)
    assert (status, out) == (EXIT_ERROR, "")
    assert f"import-metallb: cannot write {target}: No such file or directory" in err
