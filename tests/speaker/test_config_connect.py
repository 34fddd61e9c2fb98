"""The connection keys of a peer: listen, connect_retry, connect_retry_max."""

from __future__ import annotations

from datetime import timedelta

from speaker.config import loads_config
from speaker.plan import plans_for
from tests.helpers.configs import BASE_CONFIG, config_errors

PEER = "peer_asn = 65000\n"


def with_peer_keys(lines: str) -> str:
    return BASE_CONFIG.replace(PEER, PEER + lines, 1)


def test_defaults_listen_and_retry_quickly() -> None:
    (peer,) = loads_config(BASE_CONFIG).peers
    assert peer.listen is True
    assert peer.connect_retry == timedelta(seconds=1)
    assert peer.connect_retry_max == timedelta(seconds=60)
    assert peer.connect_time == timedelta(seconds=10)


def test_keys_reach_the_bgp_session() -> None:
    config = loads_config(
        with_peer_keys('listen = false\nconnect_retry = "250ms"\nconnect_retry_max = "5s"\n')
    )
    address = config.service("www").address
    assert address is not None
    (plan,) = plans_for(config, {"www": address})
    assert plan.bgp.listen is False
    assert (plan.bgp.connect_retry, plan.bgp.connect_retry_max) == (0.25, 5.0)
    session = plan.bgp.session_config()
    assert (session.connect_retry_time, session.connect_retry_max) == (0.25, 5.0)
    assert session.connect_time == 10.0


def test_passive_without_listen_and_a_cap_below_the_start_are_errors() -> None:
    assert config_errors(with_peer_keys("passive = true\nlisten = false\n")) == [
        "peers[0].listen: false with passive = true: nothing would connect"
    ]
    (message,) = config_errors(with_peer_keys('connect_retry = "10s"\nconnect_retry_max = "5s"\n'))
    assert message.startswith("peers[0].connect_retry_max: 5s is below connect_retry (10s)")
