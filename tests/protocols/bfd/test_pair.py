"""Two sessions back to back on a simulated clock: protocol properties (Hypothesis)."""

from __future__ import annotations

import itertools
import os
import random

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.bfd import (
    SLOW_INTERVAL_US,
    AuthConfig,
    AuthType,
    Diag,
    DiscardReason,
    SessionConfig,
    State,
)
from protocols.bfd.timers import jitter_bounds, jittered_interval_us

from .sim import Endpoint, Link

INTERVALS = st.sampled_from([10_000, 20_000, 50_000, 100_000, 300_000])
# BFD_SIM_EXAMPLES raises the budget for a soak run; the default keeps the suite fast.
_EXAMPLES = int(os.environ.get("BFD_SIM_EXAMPLES", "40"))
SIM = settings(max_examples=_EXAMPLES, deadline=None)
SIM_SMALL = settings(max_examples=max(_EXAMPLES // 3, 10), deadline=None)


@st.composite
def configs(draw: st.DrawFn) -> SessionConfig:
    return SessionConfig(
        desired_min_tx_us=draw(INTERVALS),
        required_min_rx_us=draw(INTERVALS),
        detect_mult=draw(st.integers(1, 5)),
    )


SEEDS = st.integers(0, 2**16)
LATENCY = st.sampled_from([0.0, 0.0005, 0.002])


def up_link(a: SessionConfig, b: SessionConfig, seed: int, latency: float = 0.001) -> Link:
    link = Link(a, b, seed=seed, latency=latency)
    link.run_until(3.0)
    assert link.b is not None
    assert link.a.session.state is State.UP and link.b.session.state is State.UP
    assert not link.violations
    return link


def both(link: Link) -> tuple[Endpoint, Endpoint]:
    assert link.b is not None
    return link.a, link.b


def assert_negotiated(x: Endpoint, y: Endpoint) -> None:
    """The steady-state values of §6.8.2-§6.8.4 for x, given peer y."""
    xc, yc = x.session.config, y.session.config
    assert x.session.tx_interval_us == max(xc.desired_min_tx_us, yc.required_min_rx_us)
    assert x.session.detection_time_us == yc.detect_mult * max(
        xc.required_min_rx_us, yc.desired_min_tx_us
    )


# ---------------------------------------------------------------- bring-up


@SIM
@given(
    a=configs(),
    b=configs(),
    seed=SEEDS,
    latency=LATENCY,
    b_start=st.floats(0, 2),
    passive=st.sampled_from("-ab"),
)
def test_both_sides_come_up(
    *,
    a: SessionConfig,
    b: SessionConfig,
    seed: int,
    latency: float,
    b_start: float,
    passive: str,
) -> None:
    a = attrs.evolve(a, passive=passive == "a")
    b = attrs.evolve(b, passive=passive == "b")
    link = Link(a, b, seed=seed, latency=latency, b_starts_at=b_start)
    link.run_until(b_start + 3.0)
    x, y = both(link)
    for ep in (x, y):
        up_at = ep.first_up()
        assert up_at is not None and up_at - b_start < 3.0
    link.run_until(b_start + 5.0)
    assert not link.violations
    for ep in (x, y):
        assert ep.session.state is State.UP
        assert ep.session.counters.down_transitions == 0
        assert not ep.session.poll_active
    assert_negotiated(x, y)
    assert_negotiated(y, x)


def test_nothing_comes_up_without_packets() -> None:
    cfg = SessionConfig()
    link = Link(cfg, cfg, drop=lambda sender, kind, now: True)
    link.run_until(10.0)
    x, y = both(link)
    assert x.session.state is State.DOWN and y.session.state is State.DOWN
    assert x.state_changes() == [] and y.state_changes() == []


def test_slow_start_while_not_up() -> None:
    cfg = SessionConfig(desired_min_tx_us=10_000, required_min_rx_us=10_000)
    link = Link(cfg, cfg, drop=lambda sender, kind, now: sender == "b")
    link.run_until(10.0)
    x, _ = both(link)
    times = [t for t, _ in x.sent]
    assert all(p.desired_min_tx_us == SLOW_INTERVAL_US for _, p in x.sent)
    assert all(b - a >= 0.75 for a, b in itertools.pairwise(times))


@SIM_SMALL
@given(
    a=configs(),
    b=configs(),
    seed=SEEDS,
    loss=st.floats(0, 0.4),
    lossy_for=st.floats(0.5, 3.0),
    reorder=st.sampled_from([0, 0.005]),
)
def test_lossy_link_never_breaks_invariants(
    *,
    a: SessionConfig,
    b: SessionConfig,
    seed: int,
    loss: float,
    lossy_for: float,
    reorder: float,
) -> None:
    """Random loss (and reordering) for a while, then a clean link: invariants hold
    throughout, and the session converges (Up, no Poll outstanding) once packets flow."""
    chance = random.Random(seed)

    def drop(sender: str, kind: str, now: float) -> bool:
        return now < lossy_for and chance.random() < loss

    link = Link(a, b, seed=seed, drop=drop, latency_jitter=reorder, jitter_until=lossy_for)
    link.run_until(lossy_for + 8.0)
    x, y = both(link)
    assert not link.violations
    for ep in (x, y):
        assert ep.session.state is State.UP
        assert not ep.session.poll_active


def assert_spaced(ep: Endpoint) -> None:
    """§6.8.7: apart from Finals, no three packets in a row within 75 % of the
    transmit interval (a periodic one plus at most one out of schedule)."""
    sends = [
        (t, interval)
        for (t, p), interval in zip(ep.sent, ep.sent_interval_us, strict=True)
        if not p.final
    ]
    for (t0, i0), (_t1, i1), (t2, i2) in zip(sends, sends[1:], sends[2:], strict=False):
        bound = 0.75 * min(i0, i1, i2) / 1e6
        assert t2 - t0 >= bound - 1e-9, f"{ep.name}: 3 packets in {t2 - t0:.6f}s at {t0}"


@SIM_SMALL
@given(
    a=configs(),
    b=configs(),
    seed=SEEDS,
    loss=st.floats(0, 0.3),
    duplicate=st.floats(0, 0.6),
    duplicate_delay=st.sampled_from([0.0, 0.002, 0.05, 0.3]),
    reorder=st.sampled_from([0, 0.005, 0.05]),
    bad_for=st.floats(0.5, 4.0),
)
def test_duplicating_reordering_link_cannot_make_a_storm(
    *,
    a: SessionConfig,
    b: SessionConfig,
    seed: int,
    loss: float,
    duplicate: float,
    duplicate_delay: float,
    reorder: float,
    bad_for: float,
) -> None:
    """Stale and duplicated packets in flight: a session that answered every state
    change at once would answer each of them, the peer likewise, and the two would
    flap as fast as the link carries packets (the FRR storm of issue 11). Sends stay
    spaced whatever arrives, and the pair settles Up once the link is clean."""
    chance = random.Random(seed)

    def drop(sender: str, kind: str, now: float) -> bool:
        return now < bad_for and chance.random() < loss

    link = Link(
        a,
        b,
        seed=seed,
        drop=drop,
        latency_jitter=reorder,
        jitter_until=bad_for,
        duplicate=duplicate,
        duplicate_delay=duplicate_delay,
        duplicate_until=bad_for,
    )
    link.run_until(bad_for + 8.0, max_steps=200_000)
    x, y = both(link)
    assert not link.violations
    for ep in (x, y):
        assert_spaced(ep)
        assert ep.session.state is State.UP
        assert not ep.session.poll_active


@pytest.mark.parametrize("seed", range(5))
def test_delayed_duplicates_do_not_feed_a_flap_storm(seed: int) -> None:
    """The storm itself, at 50 ms: every packet has a 50 % chance of one more copy
    up to 200 ms late. Answering each state change at once, the two sessions flapped
    some 30,000 times a second; spaced, there are at most 2 packets per 37.5 ms
    and the state settles."""
    cfg = SessionConfig(desired_min_tx_us=50_000, required_min_rx_us=50_000, detect_mult=3)
    link = Link(
        cfg, cfg, seed=seed, latency=0.0002, duplicate=0.5, duplicate_delay=0.2,
        duplicate_until=10.0,
    )  # fmt: skip
    link.run_until(15.0, max_steps=100_000)
    for ep in both(link):
        assert_spaced(ep)
        assert len([p for _, p in ep.sent if not p.final]) <= 2 * 15.0 / 0.0375
        assert len(ep.state_changes()) <= 100
        assert ep.session.state is State.UP


# ---------------------------------------------------------------- failure detection


@SIM
@given(configs(), configs(), SEEDS, st.floats(0, 0.5))
def test_one_way_drop_detected_within_detection_time(
    a: SessionConfig, b: SessionConfig, seed: int, offset: float
) -> None:
    cut = 3.0 + offset
    link = Link(a, b, seed=seed, drop=lambda sender, kind, now: sender == "a" and now >= cut)
    link.run_until(cut)
    x, y = both(link)
    assert y.session.state is State.UP
    detection = y.session.detection_time_us
    interval = x.session.tx_interval_us
    assert detection is not None
    link.run_until(cut + (detection + interval) / 1e6 + 0.01)
    downs = [e for e in y.state_changes() if e.new is State.DOWN]
    assert downs, "receiver never went Down"
    assert downs[0].diag is Diag.CONTROL_DETECTION_TIME_EXPIRED
    assert downs[0].path_failure
    assert downs[0].at - cut <= (detection + interval) / 1e6 + 1e-9
    # The sender learns it from the receiver's Down packets (diag 3, a real failure).
    x_down = [e for e in x.state_changes() if e.new is State.DOWN]
    assert x_down and x_down[0].diag is Diag.NEIGHBOR_SIGNALED_SESSION_DOWN
    assert x_down[0].path_failure
    assert not link.violations


@SIM
@given(configs(), configs(), SEEDS)
def test_admin_down_is_not_a_failure(a: SessionConfig, b: SessionConfig, seed: int) -> None:
    link = up_link(a, b, seed)
    x, y = both(link)
    x.session.admin_down(link.now)
    link.flush()
    link.run_until(link.now + 2.0)
    assert x.session.state is State.ADMIN_DOWN
    assert y.session.state is State.DOWN
    [down] = [e for e in y.state_changes() if e.new is State.DOWN]
    assert down.diag is Diag.NEIGHBOR_SIGNALED_SESSION_DOWN
    assert down.remote_admin_down and not down.path_failure
    x.session.admin_up(link.now)
    link.flush()
    link.run_until(link.now + 3.0)
    assert x.session.state is State.UP and y.session.state is State.UP
    assert not link.violations


# ---------------------------------------------------------------- timer changes


@SIM
@given(configs(), configs(), configs(), SEEDS, st.floats(0, 0.3))
def test_set_profile_keeps_session_up(
    a: SessionConfig, b: SessionConfig, new: SessionConfig, seed: int, offset: float
) -> None:
    link = up_link(a, b, seed)
    x, y = both(link)
    link.run_until(link.now + offset)
    x.session.set_profile(new, link.now)
    link.flush()
    link.run_until(link.now + 3.0)
    assert not link.violations
    for ep in (x, y):
        assert ep.session.state is State.UP
        assert ep.session.counters.down_transitions == 0
        assert not ep.session.poll_active  # the Poll Sequence terminated
    assert_negotiated(x, y)
    assert_negotiated(y, x)


@SIM
@given(configs(), configs(), SEEDS, st.integers(0, 2))
def test_jitter_bounds_in_steady_state(
    a: SessionConfig, b: SessionConfig, seed: int, mult_one: int
) -> None:
    if mult_one == 0:
        a = attrs.evolve(a, detect_mult=1)
    link = up_link(a, b, seed)
    x, _ = both(link)
    start = link.now
    link.run_until(start + 2.0)
    low, high = jitter_bounds(a.detect_mult)
    interval = x.session.tx_interval_us / 1e6
    times = [t for t, p in x.sent if t >= start and not p.final]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert gaps
    for gap in gaps:
        assert low * interval - 1e-9 <= gap <= high * interval + 1e-9


def test_jitter_function_bounds() -> None:
    rng = random.Random(1)
    for mult, (low, high) in ((1, (0.75, 0.9)), (3, (0.75, 1.0))):
        samples = [jittered_interval_us(1_000_000, mult, rng) / 1e6 for _ in range(20_000)]
        assert low <= min(samples) and max(samples) < high
        # The whole band is used, not a corner of it.
        assert min(samples) < low + 0.01 and max(samples) > high - 0.01


# ---------------------------------------------------------------- authentication


def _auth(auth_type: AuthType, keys: dict[int, bytes], send: int) -> AuthConfig:
    return AuthConfig(type=auth_type, keys=keys, send_key_id=send)


ALL_TYPES = [
    AuthType.SIMPLE_PASSWORD,
    AuthType.KEYED_MD5,
    AuthType.METICULOUS_KEYED_MD5,
    AuthType.KEYED_SHA1,
    AuthType.METICULOUS_KEYED_SHA1,
]


@pytest.mark.parametrize("auth_type", ALL_TYPES)
def test_matching_keys_come_up(auth_type: AuthType) -> None:
    base = SessionConfig(desired_min_tx_us=20_000, required_min_rx_us=20_000)
    # Different send keys, each known to the other side: a rollover in progress.
    a = attrs.evolve(base, auth=_auth(auth_type, {1: b"old-key", 2: b"new-key"}, 1))
    b = attrs.evolve(base, auth=_auth(auth_type, {1: b"old-key", 2: b"new-key"}, 2))
    link = up_link(a, b, seed=7)
    link.run_until(6.0)
    x, y = both(link)
    for ep in (x, y):
        assert ep.session.state is State.UP
        assert ep.session.counters.discards == {}


@pytest.mark.parametrize(
    ("b_auth", "reason"),
    [
        (_auth(AuthType.KEYED_SHA1, {1: b"other"}, 1), DiscardReason.AUTH_BAD_DIGEST),
        (_auth(AuthType.KEYED_SHA1, {9: b"secret"}, 9), DiscardReason.AUTH_KEY_UNKNOWN),
        (_auth(AuthType.KEYED_MD5, {1: b"secret"}, 1), DiscardReason.AUTH_TYPE_MISMATCH),
        (
            _auth(AuthType.METICULOUS_KEYED_SHA1, {1: b"secret"}, 1),
            DiscardReason.AUTH_TYPE_MISMATCH,
        ),
        (None, DiscardReason.AUTH_MISSING),
    ],
)
def test_mismatched_auth_stays_down(b_auth: AuthConfig | None, reason: DiscardReason) -> None:
    a = SessionConfig(auth=_auth(AuthType.KEYED_SHA1, {1: b"secret"}, 1))
    b = SessionConfig(auth=b_auth)
    link = Link(a, b, seed=3)
    link.run_until(5.0)
    x, y = both(link)
    assert x.session.state is State.DOWN and y.session.state is State.DOWN
    assert x.state_changes() == []
    assert x.session.counters.discards[reason] >= 4
    assert y.session.counters.control_rx == 0


def test_simple_password_mismatch() -> None:
    a = SessionConfig(auth=_auth(AuthType.SIMPLE_PASSWORD, {1: b"hunter2"}, 1))
    b = SessionConfig(auth=_auth(AuthType.SIMPLE_PASSWORD, {1: b"hunter3"}, 1))
    link = Link(a, b, seed=3)
    link.run_until(5.0)
    x, _ = both(link)
    assert x.session.state is State.DOWN
    assert x.session.counters.discards[DiscardReason.AUTH_BAD_PASSWORD] >= 4


@pytest.mark.parametrize(
    ("auth_type", "replay_ok"),
    [(AuthType.METICULOUS_KEYED_MD5, False), (AuthType.METICULOUS_KEYED_SHA1, False)],
)
def test_meticulous_replay_rejected(auth_type: AuthType, replay_ok: bool) -> None:
    cfg = SessionConfig(desired_min_tx_us=20_000, auth=_auth(auth_type, {1: b"secret"}, 1))
    link = up_link(cfg, cfg, seed=5)
    x, y = both(link)
    replay = x.sent_raw[-1]
    link.run_until(link.now + 0.5)
    assert y.session.receive_packet(replay, link.now) is DiscardReason.AUTH_SEQUENCE_OUT_OF_WINDOW
    old = x.sent_raw[0]
    assert y.session.receive_packet(old, link.now) is DiscardReason.AUTH_SEQUENCE_OUT_OF_WINDOW
    assert y.session.state is State.UP


# ---------------------------------------------------------------- echo


ECHO = SessionConfig(
    desired_min_tx_us=50_000,
    required_min_rx_us=50_000,
    detect_mult=3,
    echo_mode=True,
    echo_interval_us=20_000,
)


def test_echo_flows_and_relaxes_control() -> None:
    link = up_link(ECHO, ECHO, seed=11)
    link.run_until(6.0)
    x, y = both(link)
    for ep in (x, y):
        s = ep.session
        assert s.state is State.UP and s.echo_active
        assert s.echo_tx_interval_us == 20_000
        assert s.required_min_rx_us == SLOW_INTERVAL_US
        assert s.counters.echo_rx > 100
        # The peer now sends Control packets at 1 s: detection is the echo's job.
        assert s.tx_interval_us == SLOW_INTERVAL_US
    assert not link.violations


@SIM_SMALL
@given(SEEDS, st.floats(0, 0.5))
def test_echo_loss_detected(seed: int, offset: float) -> None:
    cut = 3.0 + offset
    link = Link(ECHO, ECHO, seed=seed, drop=lambda sender, kind, now: kind == "echo" and now >= cut)
    link.run_until(cut + 0.2)
    x, y = both(link)
    for ep in (x, y):
        # Control still flows, so the session comes back and fails again: flapping.
        down = next(e for e in ep.state_changes() if e.new is State.DOWN)
        assert down.diag is Diag.ECHO_FUNCTION_FAILED or (
            down.diag is Diag.NEIGHBOR_SIGNALED_SESSION_DOWN
        )
        assert down.path_failure
    first = min(
        (e for ep in (x, y) for e in ep.state_changes() if e.new is State.DOWN), key=lambda e: e.at
    )
    assert first.diag is Diag.ECHO_FUNCTION_FAILED
    # Three echo intervals (20 ms) after the last echo that made it back.
    assert first.at - cut <= 3 * 0.02 + 0.01
