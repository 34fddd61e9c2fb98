"""``graceful_restart`` / ``graceful_restart_time`` per peer: parsed, checked with their
TOML paths, and carried to the BGP session's OPEN."""

from __future__ import annotations

from datetime import timedelta

import pytest

from protocols.bgp import GracefulRestartCapability
from speaker.config import ConfigError, loads_config
from speaker.plan import derive

BASE = """
[speaker]
my_asn = 64512
router_id = "192.0.2.10"

[[peers]]
name = "tor"
peer_address = "192.0.2.1"
peer_asn = 65000
"""


def test_defaults_off_and_120s() -> None:
    (peer,) = loads_config(BASE).peers
    assert peer.graceful_restart is False
    assert peer.graceful_restart_time == timedelta(seconds=120)
    (plan,) = derive(loads_config(BASE)).plans
    assert plan.bgp.session_config().graceful_restart is None


def test_set_values_reach_the_open() -> None:
    config = loads_config(BASE + 'graceful_restart = true\ngraceful_restart_time = "90s"\n')
    (peer,) = config.peers
    assert peer.graceful_restart and peer.graceful_restart_time == timedelta(seconds=90)
    (plan,) = derive(config).plans
    cap = plan.bgp.session_config().graceful_restart
    assert isinstance(cap, GracefulRestartCapability)
    assert cap.restart_time == 90 and cap.notification and not cap.restart_state
    assert cap.families and all(f.forwarding_preserved for f in cap.families)
    restarted = plan.bgp.session_config(restarting=True).graceful_restart
    assert restarted is not None and restarted.restart_state
    assert loads_config(BASE + 'graceful_restart_time = "0s"\n').peers[0].graceful_restart_time == (
        timedelta(0)
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"4096s"', "1h8m16s is outside 0s..4095s (RFC 4724: 12 bits of seconds)"),
        ('"1500ms"', "1.5s is not a whole number of seconds"),
    ],
)
def test_restart_time_out_of_range_names_the_key(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        loads_config(BASE + f"graceful_restart_time = {value}\n")
    errors = [str(e) for e in info.value.errors]
    assert len(errors) == 1, errors
    assert errors[0].startswith("peers[0].graceful_restart_time:"), errors
    assert message in errors[0], errors
