"""Unnumbered peers: the configuration rules, the RA messages, which router is chosen,
the session's configuration and next hops. The lab test against FRR is
tests/interop/test_unnumbered.py."""

from __future__ import annotations

import ipaddress
import struct
from collections import Counter
from pathlib import Path

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from protocols.bgp import IPV4_UNICAST, IPV4_UNICAST_IPV6_NEXT_HOP, IPV6_UNICAST
from speaker import peer as peer_module
from speaker.addresses import is_unnumbered_address, unnumbered_address
from speaker.bgp import net
from speaker.bgp.config import BgpConfigError, BgpPeerConfig
from speaker.bgp.unnumbered import (
    RouterChoice,
    parse_router_advertisement,
    router_advertisement,
    router_solicitation,
    scoped,
)
from speaker.config import ConfigError, loads_config
from speaker.peer import PeerPlan, PeerRunner
from speaker.plan import plans_for

SPEAKER = """
[speaker]
my_asn = 64512
node_name = "lb-1"
router_id = "198.18.0.1"

[[bfd_profiles]]
name = "basic"

[[bfd_profiles]]
name = "echo"
transmit_interval = 50
receive_interval = 50
echo_mode = true
"""


def unnumbered(**keys: object) -> str:
    lines = ["[[peers]]", 'name = "tor"', "peer_asn = 65000"]
    for key, value in keys.items():
        text = f'"{value}"' if isinstance(value, str) else str(value).lower()
        lines.append(f"{key} = {text}")
    return "\n" + "\n".join(lines) + "\n"


def issues(*parts: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        loads_config(SPEAKER + "".join(parts))
    return [str(i) for i in info.value.errors]


# ---- configuration ----------------------------------------------------------------------


def test_interface_without_peer_address_is_an_unnumbered_peer() -> None:
    config = loads_config(SPEAKER + unnumbered(interface="swp1", bfd_profile="basic"))
    (peer,) = config.peers
    assert peer.unnumbered
    assert peer.peer_address == ipaddress.IPv6Address("fe80::%swp1")
    (plan,) = plans_for(config, {})
    assert plan.bgp.unnumbered and plan.bgp.interface == "swp1"
    # both families by default (FRR's interface neighbours too), RFC 8950 offered
    assert plan.bgp.families == (IPV4_UNICAST, IPV6_UNICAST)
    assert plan.bgp.session_config().extended_next_hop == (IPV4_UNICAST_IPV6_NEXT_HOP,)


def test_a_numbered_peer_is_not_unnumbered_and_offers_no_extended_next_hop() -> None:
    config = loads_config(SPEAKER + unnumbered(peer_address="2001:2::1", interface="eth0"))
    (peer,) = config.peers
    assert not peer.unnumbered
    (plan,) = plans_for(config, {})
    assert not plan.bgp.unnumbered
    assert plan.bgp.session_config().extended_next_hop == ()


def test_neither_peer_address_nor_interface() -> None:
    message = (
        "peers[0].peer_address: required key is missing (or set interface, without"
        " peer_address, for an unnumbered peer: the router on that interface, its IPv6"
        " link-local address learnt there)"
    )
    assert issues(unnumbered()) == [message]
    # also beside another error that stops the peer from loading
    assert issues(unnumbered().replace("peer_asn = 65000", "")) == [
        "peers[0].peer_asn: required key is missing",
        message,
    ]


def test_unnumbered_with_a_source_address() -> None:
    assert issues(unnumbered(interface="swp1", source_address="2001:2::2")) == [
        'peers[0].source_address: not with an unnumbered peer (interface "swp1", no'
        " peer_address): the session runs from our IPv6 link-local address on that interface"
    ]


@pytest.mark.parametrize("hops", [True, 2])
def test_unnumbered_with_multihop(hops: object) -> None:
    assert issues(unnumbered(interface="swp1", ebgp_multihop=hops)) == [
        'peers[0].ebgp_multihop: not with an unnumbered peer (interface "swp1", no'
        " peer_address): the router is directly on that link"
    ]


def test_unnumbered_with_echo() -> None:
    assert issues(unnumbered(interface="swp1", bfd_profile="echo")) == [
        'peers[0].bfd_profile: profile "echo" has echo_mode, which is IPv4 only, but this peer'
        ' is unnumbered (an IPv6 link-local session on "swp1")'
    ]


def test_two_unnumbered_peers_on_one_interface() -> None:
    second = unnumbered(interface="swp1").replace('name = "tor"', 'name = "tor2"')
    assert issues(unnumbered(interface="swp1"), second) == [
        'peers[1].interface: peer "tor" is also the unnumbered peer on "swp1" on this node (one'
        " router per interface)"
    ]


def test_two_unnumbered_peers_on_two_interfaces() -> None:
    second = unnumbered(interface="swp2").replace('name = "tor"', 'name = "tor2"')
    config = loads_config(SPEAKER + unnumbered(interface="swp1") + second)
    assert [p.peer_address for p in config.peers] == [
        unnumbered_address("swp1"),
        unnumbered_address("swp2"),
    ]


def test_bgp_config_needs_the_interface() -> None:
    with pytest.raises(BgpConfigError, match="unnumbered peer needs its interface"):
        BgpPeerConfig(name="x", peer_address="fe80::", peer_asn=1, local_asn=2,
                      router_id="198.18.0.1", unnumbered=True)  # fmt: skip


def test_placeholder_and_scoped() -> None:
    assert is_unnumbered_address(unnumbered_address("eth0"))
    assert not is_unnumbered_address(ipaddress.IPv6Address("fe80::"))  # no scope
    assert not is_unnumbered_address(ipaddress.IPv6Address("fe80::1%eth0"))
    assert not is_unnumbered_address(ipaddress.IPv4Address("198.18.0.1"))
    address = scoped(ipaddress.IPv6Address("fe80::1%other"), "eth0")
    assert str(address) == "fe80::1%eth0"
    # what the listener builds from accept(): the same key
    assert address == ipaddress.ip_address("fe80::1%eth0")


# ---- Router Advertisements (RFC 4861 §4.2) -----------------------------------------------


def test_our_router_advertisement() -> None:
    mac = bytes.fromhex("020000000001")
    ra = router_advertisement(mac=mac)
    kind, code, checksum, hops, flags, lifetime, reachable, retrans = struct.unpack_from(
        "!BBHBBHII", ra
    )
    assert (kind, code, checksum, hops, flags, lifetime, reachable, retrans) == (
        134, 0, 0, 0, 0, 0, 0, 0
    )  # fmt: skip
    assert ra[16:] == b"\x01\x01" + mac  # Source Link-Layer Address
    assert parse_router_advertisement(ra) == 0
    assert parse_router_advertisement(router_advertisement(lifetime=1800)) == 1800
    rs = router_solicitation(mac=mac)
    assert rs[0] == 133 and len(rs) == 16
    assert parse_router_advertisement(rs) is None


def test_malformed_router_advertisements() -> None:
    ra = router_advertisement()
    assert parse_router_advertisement(ra[:15]) is None
    assert parse_router_advertisement(b"\x86\x01" + ra[2:]) is None  # code 1
    assert parse_router_advertisement(ra + b"\x01\x00" + bytes(6)) is None  # option length 0
    assert parse_router_advertisement(ra + b"\x01\x02" + bytes(6)) is None  # overruns
    assert parse_router_advertisement(ra + b"\x01\x01" + bytes(6)) == 0


@given(st.binary(max_size=80))
def test_parse_never_raises(data: bytes) -> None:
    result = parse_router_advertisement(data)
    assert result is None or 0 <= result <= 0xFFFF


# ---- which router ------------------------------------------------------------------------

A = ipaddress.IPv6Address("fe80::a")
B = ipaddress.IPv6Address("fe80::b")


def test_the_first_router_heard_is_taken() -> None:
    choice = RouterChoice(default_interval=10.0)
    assert choice.heard(A, 0.0) and choice.router == A
    assert not choice.heard(A, 10.0)
    # scope ids do not make another router
    assert not choice.heard(ipaddress.IPv6Address("fe80::a%eth0"), 11.0)


def test_two_routers_taking_turns_do_not_flap() -> None:
    choice = RouterChoice(default_interval=10.0)
    choice.heard(A, 0.0)
    for t in range(1, 20):
        choice.heard(A, 10.0 * t)
        assert not choice.heard(B, 10.0 * t + 5.0)
    assert choice.router == A and choice.changes == 1


def test_a_new_address_replaces_a_silent_router() -> None:
    choice = RouterChoice(default_interval=10.0)
    choice.heard(A, 0.0)
    choice.heard(A, 1.0)  # it sends every second
    assert not choice.heard(B, 2.0)  # A was heard a second ago
    assert choice.heard(B, 2.6)  # A missed its RA (1.6 s > 1.5 x 1 s)
    assert choice.router == B and choice.changes == 2


# ---- next hops of an unnumbered session ---------------------------------------------------


def test_next_hops_prefer_the_static_global_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [
        # SLAAC (dynamic, flags 0) listed first by the kernel, then the static one
        "20010002000000010000000000000abc 05 40 00 00 swp1",
        "20010002000000010000000000000002 05 40 00 80 swp1",
        "fe800000000000000000000000000002 05 40 20 80 swp1",
        "fe800000000000000000000000000003 05 40 20 c0 swp1",  # tentative
        "20010002000000020000000000000002 06 40 00 80 swp2",
    ]
    proc = tmp_path / "if_inet6"
    proc.write_text("\n".join(rows) + "\n")
    monkeypatch.setattr(net, "IF_INET6", proc)
    config = BgpPeerConfig(name="tor", peer_address=unnumbered_address("swp1"), peer_asn=1,
                           local_asn=2, router_id="198.18.0.1", interface="swp1",
                           unnumbered=True)  # fmt: skip
    hops = net.unnumbered_next_hops(config)
    assert hops.ipv4 is None  # IPv4 routes go with the IPv6 next hops (RFC 8950)
    assert hops.ipv6 == ipaddress.IPv6Address("2001:2:0:1::2")
    assert hops.ipv6_link_local == ipaddress.IPv6Address("fe80::2")
    proc.write_text(rows[2] + "\n")  # no global address: the link-local one alone
    hops = net.unnumbered_next_hops(config)
    assert (hops.ipv6, hops.ipv6_link_local) == (ipaddress.IPv6Address("fe80::2"), None)


# ---- the peer runner follows the router ---------------------------------------------------


class FakeWatch:
    """Stands in for RouterWatch: the test says which router is on the link."""

    def __init__(self, interface: str, *, name: str) -> None:
        self.interface = interface
        self.router: ipaddress.IPv6Address | None = None
        self.last_error: str | None = None
        self._changed = trio.Event()
        WATCHES.append(self)

    def set(self, router: str) -> None:
        self.router = ipaddress.IPv6Address(router)
        self._changed.set()
        self._changed = trio.Event()

    async def run(self) -> None:
        await trio.sleep_forever()

    async def wait_router(self) -> ipaddress.IPv6Address:
        while self.router is None:
            await self._changed.wait()
        return self.router

    async def wait_change(self, current: ipaddress.IPv6Address) -> ipaddress.IPv6Address:
        while self.router is None or self.router == current:
            await self._changed.wait()
        return self.router


class FakeSession:
    def __init__(self, config: BgpPeerConfig, *, routes: object, restarting: bool = False) -> None:
        self.config = config
        self.stopped = trio.Event()
        SESSIONS.append(self)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            task_status.started()
            await trio.sleep_forever()
        finally:
            self.stopped.set()

    async def wait_stopped(self) -> None:
        await self.stopped.wait()

    def statistics(self) -> None:
        return None


WATCHES: list[FakeWatch] = []
SESSIONS: list[FakeSession] = []


async def test_the_runner_waits_for_the_router_then_follows_its_address(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: object
) -> None:
    monkeypatch.setattr(peer_module, "RouterWatch", FakeWatch)
    monkeypatch.setattr(peer_module, "BgpSession", FakeSession)
    monkeypatch.setattr(peer_module, "_session_counters", lambda stats: Counter())
    WATCHES.clear()
    SESSIONS.clear()
    config = BgpPeerConfig(name="tor", peer_address=unnumbered_address("swp1"), peer_asn=1,
                           local_asn=2, router_id="198.18.0.1", interface="swp1",
                           unnumbered=True)  # fmt: skip
    runner = PeerRunner(PeerPlan(name="tor", bgp=config), endpoint=None, routes=lambda n: {})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(runner.run)
        await trio.sleep(peer_module.ROUTER_WAIT + 0.5)
        (watch,) = WATCHES
        assert not SESSIONS and runner.setup_failures == 1
        assert (
            runner.last_error is not None and "no Router Advertisement on swp1" in runner.last_error
        )
        watch.set("fe80::a")
        await trio.sleep(2.0)  # the backoff after the failed start
        (first,) = SESSIONS
        assert str(first.config.peer_address) == "fe80::a%swp1"
        assert runner.plan.bgp.peer_address == unnumbered_address("swp1")  # show's name
        watch.set("fe80::b")
        await trio.sleep(0.1)
        assert first.stopped.is_set()
        assert [str(s.config.peer_address) for s in SESSIONS] == ["fe80::a%swp1", "fe80::b%swp1"]
        assert runner.setup_failures == 1  # a new router is no failure: no backoff
        nursery.cancel_scope.cancel()
