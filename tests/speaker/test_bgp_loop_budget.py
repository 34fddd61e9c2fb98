"""The loop budget of the BGP route path: no task step of a BgpSession near the BFD
detection time, whatever the table size or the peer sends (docs/architecture.md,
Latency budget). Steps are measured by a Trio Instrument in thread CPU time; the
bound is generous (5x the 2 ms budget) so that it fails only on real regressions."""

from __future__ import annotations

import contextlib
import gc
import logging
import struct
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from bench.common import LongestStep
from protocols.bgp import State
from protocols.bgp.update import MAX_NOTES
from speaker.bgp import BgpSession
from speaker.bgp import link as link_module
from speaker.bgp.link import InputBudget
from speaker.bgp.session import NOTE_LOG_INTERVAL
from speaker.config import loads_config
from speaker.looplag import LoopDuty
from speaker.plan import Derived, derive_in_slices
from tests.helpers.bgp_peer import Peer, host_routes, our_config, peer_core, wait_for

BOUND = 0.010


@pytest.fixture
async def steps() -> AsyncIterator[LongestStep]:
    instrument = LongestStep("BgpSession")
    trio.lowlevel.add_instrument(instrument)
    yield instrument
    trio.lowlevel.remove_instrument(instrument)


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Without automatic garbage collection, so a step measures the code and not a
    collection walking the test peer's copies of 65,536 routes, which may start in any
    task (the process-wide GC policy is not this module's: docs/architecture.md)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def test_65536_routes_come_up_in_short_steps(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, steps: LongestStep
) -> None:
    peer = Peer(peer_core())
    port = await nursery.start(peer.serve)
    routes = host_routes(65_536)
    shifted = dict(list(host_routes(70_000).items())[4_464:])
    with no_gc():
        session = BgpSession(our_config(port), routes=routes)
        await nursery.start(session.run)
        await session.wait_synchronised()
        await wait_for(lambda: len(peer.announced()) == 65_536)
        assert steps.longest < BOUND, f"{steps.task}: {steps.longest * 1000:.1f} ms"
        # A replacement of the table (4,464 out, 4,464 new) is diffed in short steps.
        session.set_routes(shifted)
        await session.wait_synchronised()
        await wait_for(lambda: len(peer.announced()) == 65_536)
        assert steps.longest < BOUND, f"{steps.task}: {steps.longest * 1000:.1f} ms"


def hostile_update() -> bytes:
    """4,096 octets: ORIGIN, AS_PATH, NEXT_HOP, one /32, and 1,353 repeats of a
    zero-length ORIGIN (RFC 7606 §3 g: each repeat is discarded)."""
    good = b"\x40\x01\x01\x00" + b"\x40\x02\x00" + b"\x40\x03\x04\xc6\x12\x00\x01"
    nlri = b"\x20\xc6\x12\x01\x01"
    repeats = (4096 - 19 - 4 - len(good) - len(nlri)) // 3
    attributes = good + b"\x40\x01\x00" * repeats
    body = b"\x00\x00" + struct.pack("!H", len(attributes)) + attributes + nlri
    return b"\xff" * 16 + struct.pack("!HB", 19 + len(body), 2) + body


async def test_hostile_updates_cost_short_steps_and_few_log_lines(
    autojump_clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    steps: LongestStep,
    caplog: pytest.LogCaptureFixture,
) -> None:
    peer = Peer(peer_core())
    port = await nursery.start(peer.serve)
    session = BgpSession(our_config(port), routes=host_routes(10))
    await nursery.start(session.run)
    await session.wait_synchronised()
    message = hostile_update()
    assert len(message) <= 4096
    repeats = (len(message) - 19 - 4 - 14 - 5) // 3
    caplog.set_level(logging.WARNING, "speaker.bgp")
    rounds = 3
    for _ in range(rounds):
        for _ in range(4):
            peer.send(message * 16)  # 64 KiB each
        await wait_for(lambda: session.updates_in % 64 == 0 and session.updates_in > 0)
        await trio.sleep(NOTE_LOG_INTERVAL / 2)
    await wait_for(lambda: session.updates_in == rounds * 64)
    assert session.state is State.ESTABLISHED
    assert steps.longest < BOUND, f"{steps.task}: {steps.longest * 1000:.1f} ms"
    lines = [r for r in caplog.records if "RFC 7606" in r.getMessage()]
    # The first at once, then one summary per NOTE_LOG_INTERVAL at most.
    assert 1 <= len(lines) <= 2, [r.getMessage() for r in lines]
    stats = session.statistics()
    assert stats.rfc7606_notes == {"attribute-discard": rounds * 64 * repeats}
    assert stats.treated_as_withdraw == 0


async def test_input_budget_keeps_input_to_its_share(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100 ms of input work at a 50 % share: after the burst's credit (10 ms of work)
    each millisecond of work costs a 2 ms sleep, so it is spread over 180 ms. (The
    loop duty, which this test's real CPU time would charge against the MockClock's
    time, is out of the way: test_looplag tests it.)"""
    monkeypatch.setattr(link_module, "DUTY", LoopDuty(limit=1e9))
    budget = InputBudget(share=0.5, burst=0.02)
    t0 = trio.current_time()
    for _ in range(100):
        await budget.spend(0.001)
    assert trio.current_time() - t0 == pytest.approx((0.100 - 0.010) / 0.5)
    assert budget.waits == 90
    await trio.sleep(1)  # idle: the credit is back, but no more than the burst's
    t1 = trio.current_time()
    for _ in range(10):
        await budget.spend(0.001)
    assert trio.current_time() == t1
    await budget.spend(0.001)
    assert trio.current_time() - t1 == pytest.approx(0.002)
    t2 = trio.current_time()
    await budget.spend(1.0)  # one long step (or a GC): one short sleep, never a silence
    assert trio.current_time() - t2 == pytest.approx(link_module.MAX_WAIT)


async def test_a_flooding_peer_is_read_at_the_input_share(
    autojump_clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reader charges what delivering each read took and sleeps when the credit is
    spent: a peer's 256 KiB of UPDATEs are read with sleeps between the reads, and the
    session stays up."""
    budget = InputBudget(share=0.5, burst=0.0001)
    monkeypatch.setattr(link_module, "INPUT", budget)
    peer = Peer(peer_core())
    port = await nursery.start(peer.serve)
    session = BgpSession(our_config(port), routes=host_routes(10))
    await nursery.start(session.run)
    await session.wait_synchronised()
    t0 = trio.current_time()
    message = hostile_update()
    for _ in range(4):
        peer.send(message * 16)
    await wait_for(lambda: session.updates_in >= 64)
    assert budget.waits >= 16, budget.waits
    assert trio.current_time() - t0 >= budget.waited * 0.9
    assert session.state is State.ESTABLISHED


def test_notes_are_capped_per_update() -> None:
    from protocols.bgp.context import CodecContext
    from protocols.bgp.update import ErrorAction, decode_update

    decoded = decode_update(hostile_update()[19:], CodecContext(asn4=True))
    repeats = (4096 - 19 - 4 - 14 - 5) // 3
    assert len(decoded.notes) == MAX_NOTES
    assert decoded.note_counts == {ErrorAction.ATTRIBUTE_DISCARD: repeats}
    assert not decoded.treat_as_withdraw and len(decoded.update.nlri) == 1


async def test_derive_of_10000_services_in_short_steps(tmp_path: Path) -> None:
    """Allocation, state file and route table of a reload, on the loop (a health check
    each, half of them healthy, two advertisements)."""
    services = "".join(
        f'[[services]]\nname = "svc-{i}"\npool = "big"\n'
        f'health = {{ tcp = "127.0.0.1:{1 + i % 60000}" }}\n'
        for i in range(10_000)
    )
    config = loads_config(
        f'[speaker]\nmy_asn = 64513\nnode_name = "n"\nstate_file = "{tmp_path}/state.json"\n'
        'allocation = "node-local"\n'
        '[[peers]]\nname = "p"\npeer_address = "198.18.0.2"\npeer_asn = 64512\n'
        'source_address = "198.18.0.1"\n'
        '[[pools]]\nname = "big"\naddresses = ["198.19.0.0/16"]\n'
        '[[advertisements]]\nname = "hosts"\n'
        '[[advertisements]]\nname = "agg"\naggregation_length = 24\ncommunities = ["1:1"]\n'
        + services
    )
    healthy = frozenset(f"svc-{i}" for i in range(0, 10_000, 2))
    results: list[Derived] = []

    async def derive() -> None:
        results.append(await derive_in_slices(config, healthy=healthy))

    instrument = LongestStep("slices-under-test")
    for _ in range(2):  # the first writes the state file, the second reads it back
        with no_gc():
            trio.lowlevel.add_instrument(instrument)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(derive, name="slices-under-test")
            finally:
                trio.lowlevel.remove_instrument(instrument)
    first, second = results
    assert len(first.addresses) == 10_000 and second.addresses == first.addresses
    routes = second.routes.snapshot("p")
    assert len(routes) == 5_000 + 40  # host routes and the /24s holding them
    assert instrument.longest < BOUND, f"{instrument.longest * 1000:.1f} ms"
