"""Coalescing the periodic packet with a received one (``tx_window`` /
``transmit_early``): RFC 5880 §6.8.7's jitter bounds hold whatever the peer does,
and a runtime that answers each received packet wakes once per packet pair.

The simulation is a runtime's view: each side wakes for its timer or for an arriving
packet; on an arrival a coalescing side calls ``transmit_early``. Every wake is
counted, as the runtime's loop would pay for it.
"""

from __future__ import annotations

import heapq
import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.bfd import SLOW_INTERVAL_US, ControlPacket, Session, SessionConfig, State


class Side:
    def __init__(self, name: str, cfg: SessionConfig, seed: int, *, coalesce: bool) -> None:
        self.name = name
        self.coalesce = coalesce
        self.core = Session(cfg, rng=random.Random(seed), now=0.0, coalesce=coalesce)
        self.sent: list[tuple[float, ControlPacket]] = []
        self.wakes = 0
        self.downs = 0


def run(
    a_cfg: SessionConfig,
    b_cfg: SessionConfig,
    *,
    a_coalesce: bool,
    b_coalesce: bool,
    seconds: float,
    seed: int,
    latency: float = 0.0005,
    latency_jitter: float = 0.0003,
    loss: float = 0.0,
) -> tuple[Side, Side]:
    rng = random.Random(seed)
    a = Side("a", a_cfg, seed * 2 + 1, coalesce=a_coalesce)
    b = Side("b", b_cfg, seed * 2 + 2, coalesce=b_coalesce)
    peer = {"a": b, "b": a}
    arrivals: list[tuple[float, int, str, bytes]] = []
    seq = 0
    last_arrival = {"a": 0.0, "b": 0.0}  # a link does not reorder

    def flush(side: Side, now: float) -> None:
        nonlocal seq
        for data in side.core.datagrams_to_send():
            side.sent.append((now, ControlPacket.decode(data)))
            if rng.random() < loss:
                continue
            seq += 1
            to = peer[side.name].name
            at = max(now + latency + latency_jitter * rng.random(), last_arrival[to])
            last_arrival[to] = at
            heapq.heappush(arrivals, (at, seq, to, data))
        while (event := side.core.next_event()) is not None:
            if getattr(event, "old", None) is State.UP:
                side.downs += 1

    now = 0.0
    while now < seconds:
        timers = [(t, s) for s in (a, b) if (t := s.core.get_timer()) is not None]
        t_timer, side = min(timers, key=lambda x: x[0])
        if arrivals and arrivals[0][0] <= t_timer:
            now, _, name, data = heapq.heappop(arrivals)
            target = a if name == "a" else b
            target.wakes += 1
            target.core.receive_packet(data, now)
            if target.coalesce:
                target.core.transmit_early(now)
            flush(target, now)
        else:
            now = max(now, t_timer)
            side.wakes += 1
            side.core.handle_timer(now)
            flush(side, now)
    return a, b


def periodic_gaps(side: Side, interval_us: int, after: float) -> list[float]:
    """Gaps (in units of the interval) between consecutive packets without P or F
    once steady (the change/Final exemptions of §6.8.7 do not apply to them)."""
    packets = [(t, p) for t, p in side.sent if t >= after]
    gaps = []
    for (t0, p0), (t1, p1) in itertools.pairwise(packets):
        if p0.poll or p0.final or p1.poll or p1.final or p1.state is not State.UP:
            continue
        gaps.append((t1 - t0) * 1e6 / interval_us)
    return gaps


FAST = SessionConfig(desired_min_tx_us=50_000, required_min_rx_us=50_000, detect_mult=3)


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    a_tx=st.sampled_from([50_000, 100_000, 300_000]),
    b_tx=st.sampled_from([50_000, 100_000, 300_000]),
    mult=st.sampled_from([1, 3]),
    b_coalesce=st.booleans(),
    loss=st.sampled_from([0.0, 0.05]),
)
def test_coalesced_intervals_stay_in_the_jitter_window(  # noqa: PLR0917 (given's draws)
    seed: int, a_tx: int, b_tx: int, mult: int, b_coalesce: bool, loss: float
) -> None:
    """§6.8.7: every periodic interval is 75-100 % (75-90 % with DetectMult 1) of the
    transmit interval, whether the packet was sent early, on the drawn deadline or
    at the window's end waiting for the peer's packet (lost 5 % of the time)."""
    if mult == 1:
        loss = 0.0  # one lost packet is a Down at DetectMult 1: nothing left to measure
    a_cfg = SessionConfig(desired_min_tx_us=a_tx, required_min_rx_us=a_tx, detect_mult=mult)
    b_cfg = SessionConfig(desired_min_tx_us=b_tx, required_min_rx_us=b_tx, detect_mult=mult)
    a, b = run(a_cfg, b_cfg, a_coalesce=True, b_coalesce=b_coalesce, seconds=20.0,
               seed=seed, loss=loss)  # fmt: skip
    high = 0.9 if mult == 1 else 1.0
    for side in (a, b):
        interval = side.core.tx_interval_us
        assert interval == max(a_tx, b_tx)  # negotiated
        gaps = periodic_gaps(side, interval, after=10.0)
        assert gaps
        assert min(gaps) >= 0.75 - 1e-9, side.name
        assert max(gaps) <= high + 1e-9, side.name
    if loss == 0.0 and mult == 3:
        assert a.downs == b.downs == 0


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 10_000), b_coalesce=st.booleans())
def test_answering_the_peer_halves_the_wake_ups(seed: int, b_coalesce: bool) -> None:
    """Against a plain peer sending at the same rate, the coalescing side sends
    nearly all its packets in the wake-up of a received one: about one wake-up per
    packet pair instead of two (without coalescing each side pays two)."""
    a, b = run(FAST, FAST, a_coalesce=True, b_coalesce=b_coalesce, seconds=30.0, seed=seed)
    plain_a, plain_b = run(FAST, FAST, a_coalesce=False, b_coalesce=False, seconds=30.0,
                           seed=seed)  # fmt: skip
    pairs = len(a.sent)
    assert a.downs == b.downs == 0
    if b_coalesce:
        # Two coalescing sides: at any time one draws its intervals (two wake-ups per
        # pair: its timer, the answer) and the other answers (one): 3 per pair, not 4.
        assert (a.wakes + b.wakes) / pairs < 3.3
    else:
        # It answers the plain peer: about one per pair (1.27 the worst of seeds 0-299,
        # where a lost answer window falls back to a random draw; 2.0 without).
        assert a.wakes / len(a.sent) < 1.35
    assert plain_a.wakes / len(plain_a.sent) > 1.8 and plain_b.wakes / len(plain_b.sent) > 1.8
    # The same packet rate, within what the jitter allows (no faster than 75 %).
    assert len(plain_a.sent) * 0.85 <= pairs <= len(plain_a.sent) * 1.2


def test_tx_window_is_the_jitter_window_and_early_send_restarts_it() -> None:
    a, _b = run(FAST, FAST, a_coalesce=False, b_coalesce=False, seconds=5.0, seed=7)
    core = a.core
    window = core.tx_window()
    assert window is not None
    earliest, latest = window
    last = a.sent[-1][0]
    assert earliest == last + 0.75 * 0.050
    assert earliest <= latest <= last + 0.050
    timer = core.get_timer()
    assert timer is not None and timer <= latest
    assert not core.transmit_early(earliest - 1e-6)  # closed: nothing sent
    assert not core.datagrams_to_send()
    assert core.transmit_early(earliest)
    assert len(core.datagrams_to_send()) == 1
    window = core.tx_window()
    assert window is not None and window[0] == earliest + 0.75 * 0.050


def test_a_session_that_is_not_up_still_draws_its_slow_intervals() -> None:
    """Before Up (1 s slow start) the window's-end rule does not apply: the peer's
    packets are not yet at the negotiated rate."""
    cfg = SessionConfig(desired_min_tx_us=SLOW_INTERVAL_US, required_min_rx_us=50_000)
    core = Session(cfg, rng=random.Random(1), now=0.0, coalesce=True)
    core.handle_timer(0.0)
    assert len(core.datagrams_to_send()) == 1
    window = core.tx_window()
    assert window is not None and 0.75 <= window[1] < 1.0
