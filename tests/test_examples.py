"""Every example in conf/ passes ``speaker check`` (the file; its hosts are elsewhere)."""

from __future__ import annotations

from pathlib import Path

import pytest

from speaker.cli import main

CONF = Path(__file__).parent.parent / "conf"
EXAMPLES = sorted(CONF.glob("*.toml"))


def test_examples_exist() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"speaker.toml", "bfd-profiles.toml", "two-routers.toml"} <= names


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_passes_check(example: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["check", "--host-checks", "off", "-c", str(example)])  # for other hosts
    out, err = capsys.readouterr()
    assert status == 0, err
    assert out.startswith("ok: ")
    assert err == ""  # the examples are clean: no warnings either


def test_bfd_profiles_example_has_the_four_usual_profiles() -> None:
    from speaker.config import load_config

    profiles = {p.name: p for p in load_config(CONF / "bfd-profiles.toml").bfd_profiles}
    timers = {
        name: (p.transmit_interval, p.receive_interval, p.detect_multiplier)
        for name, p in profiles.items()
    }
    assert timers == {
        "basic": (300, 300, 3),
        "aggressive": (50, 50, 3),
        "conservative": (1000, 1000, 5),
        "production": (200, 200, 3),
    }
    assert profiles["aggressive"].echo_mode and profiles["aggressive"].minimum_ttl == 254


def test_two_routers_example() -> None:
    from speaker.config import load_config

    config = load_config(CONF / "two-routers.toml")
    tor, edge = config.peer("tor"), config.peer("edge")
    assert tor.bfd_profile is not None and tor.bfd_profile.name == "aggressive"
    assert not tor.multihop and tor.interface == "eth0"
    assert edge.bfd_profile is not None and edge.bfd_profile.name == "conservative"
    assert edge.multihop
