"""RFC 8326 graceful shutdown (drain): the attributes, the Adj-RIB-Out's switch, the
route table's service drain, the drain file, and the speaker's commands and stop path
(drain_time, timed with a MockClock) against an in-process BGP peer."""

from __future__ import annotations

import functools
import json
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from protocols.bgp import (
    IPV4_UNICAST,
    Communities,
    LocalPref,
    NextHop,
    NotificationReceived,
    Prefix,
    UpdateMessage,
    key_prefix,
    prefix_key,
)
from protocols.bgp.graceful_shutdown import GRACEFUL_SHUTDOWN
from speaker import commands
from speaker.allocate import StateFileError
from speaker.announce import RouteTable
from speaker.app import Speaker
from speaker.bgp import BgpSession, RouteAttributes
from speaker.bgp.rib import AdjRibOut, path_attributes
from speaker.config import loads_config
from speaker.drain import DrainState, drain_file, read_drain, write_drain
from speaker.plan import derive
from tests.helpers.bgp_peer import Peer, host_routes, our_config, peer_core, wait_for

NH = NextHop(address=IPv4Address("198.18.1.2"))


# ---- attributes -------------------------------------------------------------------------


def test_drained_attributes_carry_graceful_shutdown_and_local_pref_0_on_ibgp() -> None:
    plain = RouteAttributes(communities=[65000 << 16 | 1], local_pref=200)
    drained = plain.drained()
    assert drained.graceful_shutdown and drained.drained() is drained
    assert drained != plain and plain.drained() == drained  # a distinct UPDATE group
    ebgp = path_attributes(drained, local_asn=64513, internal=False, next_hop4=NH)
    ibgp = path_attributes(drained, local_asn=64513, internal=True, next_hop4=NH)
    comms = next(a for a in ebgp if isinstance(a, Communities))
    assert comms.values == (65000 << 16 | 1, GRACEFUL_SHUTDOWN)
    assert not any(isinstance(a, LocalPref) for a in ebgp)  # never to an external peer
    assert [a.value for a in ibgp if isinstance(a, LocalPref)] == [0]
    # Without the drain: as before.
    before = path_attributes(plain, local_asn=64513, internal=True, next_hop4=NH)
    assert [a.value for a in before if isinstance(a, LocalPref)] == [200]
    assert GRACEFUL_SHUTDOWN not in next(a for a in before if isinstance(a, Communities)).values
    # Merging keeps a drain.
    assert plain.merge(RouteAttributes(graceful_shutdown=True)).graceful_shutdown


# ---- the Adj-RIB-Out's switch -----------------------------------------------------------


def _sent(rib: AdjRibOut) -> dict[Any, RouteAttributes]:
    out: dict[Any, RouteAttributes] = {}
    while rib.pending:
        batch = rib.take(256)
        for attributes, prefixes in batch.announce.items():
            out.update(dict.fromkeys(prefixes, attributes))
    return out


def test_a_drained_session_sends_every_route_again_then_again_without() -> None:
    routes = host_routes(1000)
    rib = AdjRibOut(routes)
    rib.session_up([IPV4_UNICAST])
    assert len(_sent(rib)) == 1000 and rib.take_end_of_rib() == [IPV4_UNICAST]
    extra: dict[Prefix, RouteAttributes | None] = {IPv4Network("198.19.9.1/32"): RouteAttributes()}
    rib.update(extra)  # an overlay entry
    assert len(_sent(rib)) == 1
    rib.set_drained(True)
    assert rib.pending == 1001  # scheduled, nothing compared yet
    again = _sent(rib)
    assert len(again) == 1001 and all(a.graceful_shutdown for a in again.values())
    assert all(a.graceful_shutdown for a in rib.advertised.values())
    assert rib.take_end_of_rib() == []  # End-of-RIB only after a session comes up
    rib.set_drained(True)
    assert rib.pending == 0  # no change, nothing to send
    rib.set_drained(False)
    back = _sent(rib)
    assert len(back) == 1001 and not any(a.graceful_shutdown for a in back.values())


def test_the_drain_outlives_the_session_and_applies_to_changes() -> None:
    rib = AdjRibOut(host_routes(10))
    rib.set_drained(True)  # before the session: only recorded
    assert rib.pending == 0
    rib.session_up([IPV4_UNICAST])
    first = _sent(rib)
    assert len(first) == 10 and all(a.graceful_shutdown for a in first.values())
    rib.announce(IPv4Network("198.19.9.9/32"), RouteAttributes(med=5))
    (new,) = _sent(rib).values()
    assert new.graceful_shutdown and new.med == 5
    rib.session_down()
    rib.session_up([IPV4_UNICAST])
    assert all(a.graceful_shutdown for a in _sent(rib).values())


def test_the_overlay_is_scanned_live_while_it_grows() -> None:
    """set_drained does not copy the overlay (2.5 ms at 65,536): its scan goes on past
    what it took when the overlay grows under it, and misses nothing."""
    rib = AdjRibOut({})
    rib.session_up([IPV4_UNICAST])
    rib.update(host_routes(600))  # all in the overlay
    _sent(rib)
    rib.set_drained(True)
    rib.take(100)
    extra: dict[Prefix, RouteAttributes | None] = {
        IPv4Network((int(IPv4Address("198.19.200.0")) + i, 32)): RouteAttributes()
        for i in range(50)
    }
    rib.update(extra)  # the overlay grows during the scan
    _sent(rib)
    assert len(rib.advertised) == 650
    assert all(a.graceful_shutdown for a in rib.advertised.values())


# ---- the route table: one service's routes ----------------------------------------------


def _config(tmp_path: Path, *, services: int = 3, port: int = 179, extra: str = "") -> str:
    body = "".join(
        f'[[services]]\nname = "s{i}"\naddress = "198.19.0.{i}"\n' for i in range(1, services + 1)
    )
    return (
        f'[speaker]\nmy_asn = 64513\nrouter_id = "198.18.0.1"\nnode_name = "n"\n'
        f'state_file = "{tmp_path}/state.json"\n{extra}'
        f'[[peers]]\nname = "r"\npeer_address = "127.0.0.1"\npeer_port = {port}\n'
        'peer_asn = 64512\nconnect_retry = "1s"\n'
        '[[pools]]\nname = "vips"\naddresses = ["198.19.0.0/24"]\n'
        '[[advertisements]]\nname = "hosts"\ncommunities = ["65000:7"]\n' + body
    )


def test_a_drained_service_costs_its_routes_only(tmp_path: Path) -> None:
    config = loads_config(_config(tmp_path))
    derived = derive(config)
    table = derived.routes.table
    names = set(derived.services)
    table.set_announced(names, withdrawn={"s3"})
    changes = table.set_drained("s1", True)
    assert list(changes["r"]) == [prefix_key(IPv4Network("198.19.0.1/32"))]
    (attributes,) = changes["r"].values()
    assert attributes is not None and attributes.graceful_shutdown
    assert attributes.communities == (65000 << 16 | 7,)
    assert table.set_drained("s1", True) == {}
    # A drained service that is not announced: nothing now, drained once it is.
    assert table.set_drained("s3", True) == {}
    (s3,) = table.set_announced(names)["r"].values()
    assert s3 is not None and s3.graceful_shutdown
    assert table.drained == {"s1", "s3"}
    (s1,) = table.set_drained("s1", False)["r"].values()
    assert s1 is not None and not s1.graceful_shutdown
    routes = table.routes("r")
    assert {str(p) for p, a in routes.items() if a.graceful_shutdown} == {"198.19.0.3/32"}


def test_a_table_built_with_drained_services() -> None:
    config = loads_config(_config(Path("/nonexistent")))
    from speaker.slices import run_at_once

    table = run_at_once(RouteTable.build(config, {}, drained={"s2"}))
    drained = {str(p) for p, a in table.routes("r").items() if a.graceful_shutdown}
    assert drained == {"198.19.0.2/32"}


# ---- the file -------------------------------------------------------------------------


def test_the_drain_file_round_trip(tmp_path: Path) -> None:
    path = drain_file(tmp_path / "state.json")
    assert path == tmp_path / "state.drain.json"
    assert read_drain(path) == DrainState()  # no file: nothing drained
    state = DrainState(node=True, peers={"r"}, services={"b", "a"})
    write_drain(path, state)
    assert read_drain(path) == state
    assert json.loads(path.read_text())["services"] == ["a", "b"]
    write_drain(path, DrainState())
    assert not path.exists()
    for bad in ("{", '{"version": 7}', '{"version": 1, "peers": [1]}', '{"version": 1, "node": 1}'):
        path.write_text(bad)
        with pytest.raises(StateFileError):
            read_drain(path)


# ---- the speaker ----------------------------------------------------------------------


def _gshut(update: UpdateMessage) -> bool:
    comms = update.get(Communities)
    return comms is not None and GRACEFUL_SHUTDOWN in comms.values


def _drained_prefixes(peer: Peer) -> set[str]:
    return {str(p) for p, u in peer.announced().items() if _gshut(u)}


async def _start(
    nursery: trio.Nursery, tmp_path: Path, *, services: int = 3, extra: str = ""
) -> tuple[Peer, Speaker]:
    peer = Peer(peer_core())
    port = await nursery.start(peer.serve)
    config = loads_config(_config(tmp_path, services=services, port=port, extra=extra))
    speaker = Speaker(attrs.evolve(derive(config), health={}))
    await nursery.start(functools.partial(speaker.run, handle_signals=False))
    await wait_for(lambda: len(peer.announced()) == services)
    return peer, speaker


async def _request(speaker: Speaker, command: str, **args: Any) -> Any:
    reply = await commands.dispatch(speaker, {"command": command, **args})
    assert reply["ok"], reply
    return reply["data"]


async def test_drain_and_undrain_the_node_a_peer_and_a_service(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, tmp_path: Path
) -> None:
    peer, speaker = await _start(nursery, tmp_path)
    assert _drained_prefixes(peer) == set()
    every = {"198.19.0.1/32", "198.19.0.2/32", "198.19.0.3/32"}

    data = await _request(speaker, "drain", service="s2")
    assert data["drain"] == {"node": False, "peers": [], "services": ["s2"]}
    await wait_for(lambda: _drained_prefixes(peer) == {"198.19.0.2/32"})

    data = await _request(speaker, "drain", peer="127.0.0.1")  # by address
    assert data["changed"] == "peer r" and data["drain"]["peers"] == ["r"]
    await wait_for(lambda: _drained_prefixes(peer) == every)
    assert speaker.peers["r"].drained

    await _request(speaker, "drain")  # the node as well
    await _request(speaker, "undrain", peer="r")
    await trio.sleep(1)
    assert _drained_prefixes(peer) == every  # the node's drain still covers the peer

    routes = await _request(speaker, "show routes")
    row = routes["peers"][0]
    records = json.loads("[" + ",".join(row["announced"].runs) + "]")
    assert row["draining"] and len(records) == 3 and all(r["gracefulShutdown"] for r in records)
    assert {s["service"]: s["drained"] for s in routes["services"]} == {
        "s1": False, "s2": True, "s3": False,
    }  # fmt: skip
    status = await _request(speaker, "status")
    assert status["drain"] == {"node": True, "peers": [], "services": ["s2"], "stopping": False}
    from speaker.metrics import SpeakerCollector

    scrape = (await SpeakerCollector(speaker).scrape()).decode()
    assert 'speaker_peer_draining{peer="127.0.0.1"} 1.0' in scrape
    assert 'speaker_services{state="drained"} 1.0' in scrape
    neighbor = await _request(speaker, "show bgp neighbor", name="r")
    assert neighbor["draining"] is True
    from speaker import show

    assert "Drain (RFC 8326): the whole node, service s2\n" in show.format_status(status)
    assert "  Draining (RFC 8326): every route sent with GRACEFUL_SHUTDOWN 65535:0\n" in (
        show.format_bgp_neighbor(neighbor)
    )
    text = show.format_routes({**routes, "peers": [{**row, "announced": records}]})
    assert "Peer r (127.0.0.1): BGP Established, BFD -, draining\n" in text
    assert text.count("graceful-shutdown") == 3 and "(drained)" in text

    await _request(speaker, "undrain")
    await wait_for(lambda: _drained_prefixes(peer) == {"198.19.0.2/32"})
    data = await _request(speaker, "undrain", all=True)
    assert data["drain"] == {"node": False, "peers": [], "services": []}
    await wait_for(lambda: _drained_prefixes(peer) == set())
    assert not drain_file(tmp_path / "state.json").exists()

    for bad, message in (
        ({"service": "nope"}, 'no service named "nope"'),
        ({"peer": "nope"}, 'no peer named "nope"'),
        ({"peer": "r", "service": "s1"}, "not both"),
    ):
        reply = await commands.dispatch(speaker, {"command": "drain", **bad})
        assert not reply["ok"] and message in reply["error"], reply


async def test_the_drain_survives_a_reload_and_a_restart(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with trio.open_nursery() as nursery:
        peer, speaker = await _start(nursery, tmp_path)
        await _request(speaker, "drain", service="s1")
        await wait_for(lambda: _drained_prefixes(peer) == {"198.19.0.1/32"})
        # A reload with a fourth service: s1 stays drained, s4 is not.
        config = loads_config(_config(tmp_path, services=4, port=peer.port))
        result = await speaker.reload(attrs.evolve(derive(config), health={}))
        assert result.ok
        await wait_for(lambda: len(peer.announced()) == 4)
        await trio.sleep(1)
        assert _drained_prefixes(peer) == {"198.19.0.1/32"}
        await _request(speaker, "drain", peer="r")
        await wait_for(lambda: len(_drained_prefixes(peer)) == 4)
        await speaker.shutdown()
    assert read_drain(drain_file(tmp_path / "state.json")) == DrainState(
        peers={"r"}, services={"s1"}
    )
    # A new process with the same state file: drained from its first UPDATE on.
    async with trio.open_nursery() as nursery:
        peer, speaker = await _start(nursery, tmp_path)
        assert all(_gshut(u) for _, u in peer.updates if u.announced)
        assert len(_drained_prefixes(peer)) == 3
        nursery.cancel_scope.cancel()


async def test_drain_time_holds_the_cease_and_is_not_kept(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """SIGTERM's path with drain_time = 5s: every route goes out again with
    GRACEFUL_SHUTDOWN at once, and the Cease follows 5 s after they were sent."""
    async with trio.open_nursery() as nursery:
        peer, speaker = await _start(nursery, tmp_path, extra='drain_time = "5s"\n')
        assert speaker.config.speaker.drain_time.total_seconds() == 5
        started = trio.current_time()
        nursery.start_soon(speaker.shutdown)
        await wait_for(lambda: len(_drained_prefixes(peer)) == 3)
        drained_at = max(t for t, u in peer.updates if _gshut(u))  # as the peer read it
        assert drained_at - started < 0.1
        status = await _request(speaker, "status")
        assert status["drain"]["stopping"] and status["stopping"]
        await wait_for(lambda: peer.of(NotificationReceived))
    ceased_at = next(t for t, e in peer.events if isinstance(e, NotificationReceived))
    assert 5.0 <= ceased_at - drained_at < 5.2, ceased_at - drained_at
    # The stop's drain is not the operator's: the next start is not drained.
    assert not drain_file(tmp_path / "state.json").exists()


async def test_without_drain_time_the_cease_comes_at_once(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with trio.open_nursery() as nursery:
        peer, speaker = await _start(nursery, tmp_path)
        started = trio.current_time()
        nursery.start_soon(speaker.shutdown)
        await wait_for(lambda: peer.of(NotificationReceived))
    ceased_at = next(t for t, e in peer.events if isinstance(e, NotificationReceived))
    assert ceased_at - started < 0.1
    assert not any(_gshut(u) for _, u in peer.updates)


async def test_a_second_signal_ends_the_drain(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with trio.open_nursery() as nursery:
        peer, speaker = await _start(nursery, tmp_path, extra='drain_time = "60s"\n')
        nursery.start_soon(speaker.shutdown)
        await wait_for(lambda: len(_drained_prefixes(peer)) == 3)
        cut_at = trio.current_time()
        assert speaker._stop_drain_scope is not None
        speaker._stop_drain_scope.cancel()  # what _signals does on the second one
        await wait_for(lambda: peer.of(NotificationReceived))
    ceased_at = next(t for t, e in peer.events if isinstance(e, NotificationReceived))
    assert ceased_at - cut_at < 0.1


def test_drain_time_extends_systemds_stop_timeout(tmp_path: Path) -> None:
    from speaker.daemon import drain_stop_notice

    plain = Speaker(derive(loads_config(_config(tmp_path))))
    assert drain_stop_notice(plain) == ""
    draining = Speaker(derive(loads_config(_config(tmp_path, extra='drain_time = "30s"\n'))))
    notice = drain_stop_notice(draining)
    assert "EXTEND_TIMEOUT_USEC=65000000" in notice.split("\n")


def test_drain_time_is_validated(tmp_path: Path) -> None:
    from speaker.config import ConfigError

    with pytest.raises(ConfigError, match="drain_time"):
        loads_config(_config(tmp_path, extra='drain_time = "11m"\n'))


# ---- the loop budget at 65,536 routes ---------------------------------------------------


async def test_draining_65536_routes_costs_short_steps(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """The drain of a session is an O(1) switch; the 65,536 routes then go out again
    a batch per step (half of them in the overlay, scanned live, not copied)."""
    import time

    from bench.common import LongestStep
    from tests.speaker.test_bgp_loop_budget import BOUND, no_gc

    steps = LongestStep("BgpSession")
    trio.lowlevel.add_instrument(steps)
    try:
        peer = Peer(peer_core())
        port = await nursery.start(peer.serve)
        routes = host_routes(65_536)
        half = dict(list(routes.items())[:32_768])
        with no_gc():
            session = BgpSession(our_config(port), routes=half)
            await nursery.start(session.run)
            await session.wait_synchronised()
            session.update_routes(dict(list(routes.items())[32_768:]))  # the overlay
            await session.wait_synchronised()
            await wait_for(lambda: len(peer.announced()) == 65_536)
            print(f"bring-up: longest BgpSession step {steps.longest * 1000:.2f} ms")
            steps.longest = 0.0
            for drained in (True, False):
                started = time.thread_time()
                session.set_drained(drained)
                switch = time.thread_time() - started
                assert switch < 0.0005, f"set_drained took {switch * 1000:.2f} ms"
                await session.wait_synchronised()
                want = 65_536 if drained else 0
                await wait_for(lambda w=want: len(_drained_prefixes(peer)) == w)  # type: ignore[misc]
                assert steps.longest < BOUND, f"{steps.task}: {steps.longest * 1000:.1f} ms"
        print(f"drain + undrain: longest BgpSession step {steps.longest * 1000:.2f} ms")
    finally:
        trio.lowlevel.remove_instrument(steps)


# ---- the CLI, through the control socket --------------------------------------------------


async def test_speaker_drain_and_undrain_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.helpers.running import running_speaker

    async with running_speaker(tmp_path) as spk:
        sock = str(spk.path)
        assert await spk.cli("drain", "web", "-s", sock) == 0
        assert capsys.readouterr().out == "service web: drained\ndrained now: service web\n"
        assert await spk.cli("drain", "--peer", "r1", "-s", sock) == 0
        assert "drained now: peer r1, service web" in capsys.readouterr().out
        assert spk.speaker.peers["r1"].drained and not spk.speaker.peers["r2"].drained
        assert await spk.cli("undrain", "--all", "--json", "-s", sock) == 0
        data = json.loads(capsys.readouterr().out)
        assert data == {"drain": {"node": False, "peers": [], "services": []}, "changed": "all"}
        assert await spk.cli("drain", "nope", "-s", sock) == 1
        assert 'no service named "nope"' in capsys.readouterr().err
        assert await spk.cli("drain", "--peer", "elsewhere", "-s", sock) == 1  # not this node's
        assert 'no peer named "elsewhere"' in capsys.readouterr().err
        assert await spk.cli("show", "status", "-s", sock) == 0
        assert "Drain (RFC 8326): nothing drained" in capsys.readouterr().out


async def test_drain_time_without_an_established_session_stops_at_once(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """No router holds our routes: nothing to drain, no wait."""
    from tests.helpers.running import free_port

    config = loads_config(_config(tmp_path, port=free_port(), extra='drain_time = "60s"\n'))
    speaker = Speaker(attrs.evolve(derive(config), health={}))
    async with trio.open_nursery() as nursery:
        await nursery.start(functools.partial(speaker.run, handle_signals=False))
        await trio.sleep(3)
        started = trio.current_time()
        await speaker.shutdown()
    assert trio.current_time() - started < 2


async def test_services_drained_one_by_one_are_bounded(
    autojump_clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import speaker.app

    monkeypatch.setattr(speaker.app, "MAX_DRAINED_SERVICES", 2)
    _, spk = await _start(nursery, tmp_path)
    await _request(spk, "drain", service="s1")
    await _request(spk, "drain", service="s2")
    reply = await commands.dispatch(spk, {"command": "drain", "service": "s3"})
    assert not reply["ok"] and "drain the node" in reply["error"], reply
    await _request(spk, "drain", service="s2")  # already drained: fine
    await _request(spk, "drain")  # the node: always
    assert spk.drain == DrainState(node=True, services={"s1", "s2"})


# ---- the Adj-RIB-Out's drain under any interleaving ---------------------------------------

from hypothesis import example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.speaker.test_bgp_rib_property import changes, routes  # noqa: E402

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("update"), changes),
        st.tuples(st.just("replace"), routes),
        st.tuples(st.just("take"), st.integers(1, 4)),
        st.tuples(st.just("resend"), st.just(IPV4_UNICAST)),
        st.tuples(st.just("drain"), st.booleans()),
    ),
    max_size=40,
)


@settings(max_examples=400, deadline=None)
@given(initial=st.just({}) | routes, ops=_ops)
# An overlay-only route, sent, then the drain: only the overlay's scan finds it.
@example(initial={}, ops=[("update", {IPv4Network("198.18.0.1/32"): RouteAttributes()}),
                          ("take", 4), ("drain", True)])  # fmt: skip
def test_a_session_drained_and_undrained_while_up_converges(
    initial: dict[Any, RouteAttributes], ops: list[tuple[str, Any]]
) -> None:
    """Drains, undrains, changes and sliced takes in any order, the session up all
    along (the live overlay scan included): once nothing is pending the peer holds the
    desired routes, drained exactly when the session is."""
    from speaker.bgp.rib import AdjRibOut as Rib

    rib = Rib(initial)
    model = dict(initial)
    peer: dict[Any, RouteAttributes] = {}
    families = [IPV4_UNICAST, (2, 1)]
    rib.session_up(families)

    def take(limit: int) -> None:
        batch = rib.take(limit)  # route keys
        for route in batch.withdraw:
            del peer[key_prefix(route)]
        for attributes, keys in batch.announce.items():
            peer.update(dict.fromkeys(map(key_prefix, keys), attributes))

    for op, arg in ops:
        if op == "update":
            rib.update(arg)
            for prefix, attributes in arg.items():
                if attributes is None:
                    model.pop(prefix, None)
                else:
                    model[prefix] = attributes
        elif op == "replace":
            rib.replace(dict(arg))
            model = dict(arg)
        elif op == "take":
            take(arg)
        elif op == "resend":
            rib.resend(arg)
        else:
            rib.set_drained(arg)
    while rib.pending:
        take(3)
    want = {p: (a.drained() if rib.drained else a) for p, a in model.items()}
    assert peer == want == rib.advertised
