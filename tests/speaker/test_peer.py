"""One peer: its task tree, its BFD guard on BGP, and its failures (virtual time).

BGP is a stand-in (FakeSession) so that what is tested is the coupling; BFD runs for
real between two endpoints on loopback (MockClock autojump)."""

from __future__ import annotations

import ipaddress
import itertools
import logging
import random
from collections import Counter
from typing import Any

import attrs
import pytest
import trio

from protocols.bfd import ControlPacket, Diag, State
from protocols.bgp import CeaseSubcode
from protocols.bgp import State as BgpState
from speaker import peer as peer_module
from speaker.bfd import net
from speaker.bfd.profile import BfdProfile
from speaker.bfd.runtime import BfdEndpoint, BfdSession, SessionKey
from speaker.bgp.config import BgpPeerConfig
from speaker.netlookup import RouteInfo
from speaker.netwatch import SPACING, NetWatch
from speaker.peer import BfdTarget, History, PeerPlan, PeerRunner

starts: Counter[str] = Counter()
start_times: dict[str, list[float]] = {}
sessions: list[FakeSession] = []
#: name -> runs that crash at once ("bad": the first two)
CRASHES: dict[str, set[int]] = {}
#: How long a FakeSession takes to reach Established.
ESTABLISH_AFTER = [0.01]

US = ipaddress.IPv4Address("127.0.0.1")
PORT_US, PORT_RTR = 24784, 34784
FAST = BfdProfile(name="fast", transmit_interval=50, receive_interval=50, detect_multiplier=3)


class FakeSession:
    """Stands in for BgpSession: records when it ran, what it was told, and when."""

    def __init__(self, config: BgpPeerConfig, *, routes: Any, restarting: bool = False) -> None:
        self.config = config
        self.restarting = restarting
        self.state = BgpState.CONNECT
        self.established_at: float | None = None
        self.cancelled_at = self.notification_written_at = self.closed_at = None
        self.ceased_at: float | None = None
        self.cancel_subcode: int | None = None
        self.connect_now_calls: list[float] = []
        self.stopped_for_restart = False
        self._scope = trio.CancelScope()
        self._stopped = trio.Event()
        self._crash = False
        sessions.append(self)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        name = self.config.name
        starts[name] += 1
        start_times.setdefault(name, []).append(trio.current_time())
        try:
            if starts[name] in CRASHES.get(name, set()):
                raise RuntimeError("boom: a bug in this peer")
            with self._scope:
                task_status.started()
                await trio.sleep(ESTABLISH_AFTER[0])
                self.state = BgpState.ESTABLISHED
                self.established_at = trio.current_time()
                await trio.sleep_forever()
            if self._crash:
                raise RuntimeError("boom: a bug after a long healthy run")
        finally:
            self.state = BgpState.IDLE
            self._stopped.set()

    def crash(self) -> None:
        self._crash = True
        self._scope.cancel()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def wait_synchronised(self) -> None:
        while self.state is not BgpState.ESTABLISHED:
            await trio.sleep(0.001)

    async def wait_established(self) -> None:
        await self.wait_synchronised()

    def cease_now(self, subcode: int, message: str | None = None) -> bool:
        self.ceased_at = trio.current_time()
        return True

    def cancel(self, subcode: int = 2, message: str | None = None) -> None:
        self.cancel_subcode = subcode
        self._scope.cancel()

    def stop_for_restart(self, message: str | None = None) -> None:
        self.stopped_for_restart = True
        self.cancel(4, message)

    def connect_now(self) -> None:
        self.connect_now_calls.append(trio.current_time())

    def statistics(self) -> Any:
        return None

    def set_routes(self, routes: Any) -> int:
        return 0


@pytest.fixture(autouse=True)
def fake_bgp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peer_module, "BgpSession", FakeSession)
    monkeypatch.setattr(peer_module, "_session_counters", lambda stats: Counter())
    starts.clear()
    start_times.clear()
    sessions.clear()
    CRASHES.clear()
    ESTABLISH_AFTER[0] = 0.01


def plan(name: str, n: int, *, bfd: bool = False, strict: bool = False) -> PeerPlan:
    address = ipaddress.IPv4Address(f"127.0.0.{n + 1}" if bfd else f"198.18.9.{n}")
    return PeerPlan(
        name=name,
        bgp=BgpPeerConfig(name=name, peer_address=address, peer_asn=64512, local_asn=64513,
                          router_id="198.18.9.100"),
        bfd_target=BfdTarget(peer=address, source=US) if bfd else None,
        bfd_profile=FAST if bfd else None,
        bfd_strict=strict,
    )  # fmt: skip


async def endpoints(nursery: trio.Nursery) -> tuple[BfdEndpoint, BfdEndpoint]:
    """Ours, and the routers' (every router address on one endpoint)."""
    ours = BfdEndpoint(rng=random.Random(1), ports=(PORT_US, PORT_US + 1000),
                       peer_ports=(PORT_RTR, PORT_RTR + 1000), precise_timers=False)  # fmt: skip
    routers = BfdEndpoint(rng=random.Random(2), ports=(PORT_RTR, PORT_RTR + 1000),
                          peer_ports=(PORT_US, PORT_US + 1000), precise_timers=False)  # fmt: skip
    await nursery.start(ours.run)
    await nursery.start(routers.run)
    return ours, routers


async def router(routers: BfdEndpoint, n: int) -> BfdSession:
    key = SessionKey(peer=US, local=ipaddress.IPv4Address(f"127.0.0.{n + 1}"))
    return await routers.add_session(key, FAST)


async def wait_for(predicate: Any, timeout: float = 30.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.005)


async def bfd_up_peer(
    nursery: trio.Nursery,
) -> tuple[BfdEndpoint, BfdEndpoint, BfdSession, PeerRunner]:
    """Peer r1 with BFD, running, its BFD session Up: (ours, the routers' endpoint, the
    router's session, the runner)."""
    ours, routers = await endpoints(nursery)
    rtr = await router(routers, 1)
    runner = PeerRunner(plan("r1", 1, bfd=True), endpoint=ours, routes=lambda p: {})
    nursery.start_soon(runner.run)
    await wait_for(lambda: runner.bfd is not None and runner.bfd.state is State.UP)
    return ours, routers, rtr, runner


# ---- supervision --------------------------------------------------------------------------


async def test_a_crashing_peer_restarts_with_backoff_and_others_never_notice(
    autojump_clock: Any, nursery: trio.Nursery, caplog: Any
) -> None:
    CRASHES["bad"] = {1, 2}
    runners = [PeerRunner(plan(n, i), endpoint=None, routes=lambda p: {}) for i, n in
               enumerate(["good", "bad"], start=1)]  # fmt: skip
    with caplog.at_level(logging.ERROR, logger="speaker.peer"):
        for r in runners:
            nursery.start_soon(r.run)
        await trio.sleep(10)
    good, bad = runners
    assert starts["good"] == 1 and good.crashes == 0
    assert starts["bad"] == 3 and bad.crashes == 2
    gaps = [b - a for a, b in zip(start_times["bad"], start_times["bad"][1:], strict=False)]
    assert gaps == pytest.approx([1.0, 2.0])  # RESTART_BACKOFF
    messages = [r.getMessage() for r in caplog.records]
    assert any("peer bad crashed" in m for m in messages)
    assert not any("peer good" in m for m in messages)
    nursery.cancel_scope.cancel()


async def test_the_backoff_starts_afresh_after_a_healthy_run(
    autojump_clock: Any, nursery: trio.Nursery
) -> None:
    CRASHES["bad"] = {1, 2, 3}
    runner = PeerRunner(plan("bad", 1), endpoint=None, routes=lambda p: {})
    nursery.start_soon(runner.run)
    await wait_for(lambda: starts["bad"] == 4)
    t = start_times["bad"]
    assert [b - a for a, b in itertools.pairwise(t)] == pytest.approx([1.0, 2.0, 4.0])
    await trio.sleep(peer_module.HEALTHY_AFTER + 5)  # run 4 is healthy for a long time
    crashed = trio.current_time()
    sessions[-1].crash()  # ... then crashes: the backoff is 1 s again, not 8 s
    await wait_for(lambda: starts["bad"] == 5)
    assert t[4] - crashed == pytest.approx(1.0, abs=0.05)
    assert runner.crashes == 4
    nursery.cancel_scope.cancel()


def test_history_is_bounded_and_counts_everything() -> None:
    history: History[int] = History(maxlen=3)
    for i in range(5):
        history.append(i)
    assert list(history) == [2, 3, 4] and history.total == 5
    assert history.since(3) == [3, 4]
    assert history.since(0) == [2, 3, 4]  # what fell out is gone, the rest is there
    assert history.since(5) == []


# ---- run-time resolution --------------------------------------------------------------------


async def test_a_peer_without_a_route_logs_one_line_and_retries_while_others_run(
    autojump_clock: Any, nursery: trio.Nursery, caplog: Any
) -> None:
    ours, routers = await endpoints(nursery)
    await router(routers, 1)
    good = PeerRunner(plan("good", 1, bfd=True), endpoint=ours, routes=lambda p: {})
    lost_address = ipaddress.IPv4Address("198.18.200.1")  # nothing routes here in the tests
    lost_plan = PeerPlan(
        name="lost", bgp=plan("lost", 2).bgp,
        bfd_target=BfdTarget(peer=lost_address), bfd_profile=FAST,
    )  # fmt: skip
    typo_plan = PeerPlan(
        name="typo", bgp=plan("typo", 3).bgp,
        bfd_target=BfdTarget(peer=ipaddress.IPv4Address("127.0.0.4"), source=US,
                             interface="no-such-if0"),
        bfd_profile=FAST,
    )  # fmt: skip
    lost = PeerRunner(lost_plan, endpoint=ours, routes=lambda p: {})
    typo = PeerRunner(typo_plan, endpoint=ours, routes=lambda p: {})
    with caplog.at_level(logging.INFO, logger="speaker.peer"):
        for r in (good, lost, typo):
            nursery.start_soon(r.run)
        await trio.sleep(8)
    assert good.bfd is not None and good.bfd.state is State.UP and good.crashes == 0
    assert typo.setup_failures >= 3 and typo.crashes == 0 and starts["typo"] == 0
    assert "interface 'no-such-if0' does not exist" in (typo.last_error or "")
    lines = [r for r in caplog.records if r.getMessage().startswith("peer typo")]
    assert lines and all(r.exc_info is None for r in lines)  # one line each, no traceback
    assert lines[0].getMessage().startswith("peer typo: cannot start: interface")
    # Without a route the lookup fails (ENETUNREACH) or finds one (a default route on
    # this host): either way the peer does not take the others down.
    if lost.setup_failures:
        assert "no local address towards 198.18.200.1" in (lost.last_error or "")
    nursery.cancel_scope.cancel()


# ---- isolation ---------------------------------------------------------------------------


async def test_an_exception_in_one_bfd_session_restarts_that_peer_only(
    autojump_clock: Any, nursery: trio.Nursery
) -> None:
    ours, routers = await endpoints(nursery)
    await router(routers, 1)
    await router(routers, 2)
    good = PeerRunner(plan("good", 1, bfd=True), endpoint=ours, routes=lambda p: {})
    bad = PeerRunner(plan("bad", 2, bfd=True), endpoint=ours, routes=lambda p: {})
    nursery.start_soon(good.run)
    nursery.start_soon(bad.run)
    await wait_for(lambda: all(r.bfd is not None and r.bfd.state is State.UP for r in (good, bad)))
    good_bfd, good_bgp, bad_bfd = good.bfd, good.bgp, bad.bfd
    assert bad_bfd is not None and isinstance(good_bgp, FakeSession)

    def broken(now: float) -> None:
        raise RuntimeError("a bug in one BFD session")

    bad_bfd.core.handle_timer = broken  # the fault under test
    bad_bfd.kick()
    await wait_for(lambda: bad.crashes == 1)
    await wait_for(lambda: bad.bfd is not None and bad.bfd.state is State.UP)
    assert bad.bfd is not bad_bfd  # a new session for the restarted peer
    assert good.bfd is good_bfd and good_bfd is not None and good_bfd.state is State.UP
    assert good.bgp is good_bgp and good_bgp.cancel_subcode is None and good.crashes == 0
    assert ours.running
    nursery.cancel_scope.cancel()


async def test_an_exception_handling_one_sessions_packet_restarts_that_peer_only(
    autojump_clock: Any, nursery: trio.Nursery
) -> None:
    """The endpoint's receive loop serves every session: an error in one session's
    deliver() ends that session's task (its peer restarts), not the loop."""
    ours, routers = await endpoints(nursery)
    await router(routers, 1)
    await router(routers, 2)
    good = PeerRunner(plan("good", 1, bfd=True), endpoint=ours, routes=lambda p: {})
    bad = PeerRunner(plan("bad", 2, bfd=True), endpoint=ours, routes=lambda p: {})
    nursery.start_soon(good.run)
    nursery.start_soon(bad.run)
    await wait_for(lambda: all(r.bfd is not None and r.bfd.state is State.UP for r in (good, bad)))
    good_bfd, bad_bfd = good.bfd, bad.bfd
    assert good_bfd is not None and bad_bfd is not None

    def broken(
        packet: ControlPacket, datagram: net.Datagram, now: float, arrived: float | None = None
    ) -> None:
        raise RuntimeError("a bug in handling one session's packet")

    bad_bfd.deliver = broken  # type: ignore[method-assign]  # the fault under test
    await wait_for(lambda: bad.crashes == 1)
    await wait_for(lambda: bad.bfd is not None and bad.bfd.state is State.UP)
    received = good_bfd.statistics().control_rx
    await trio.sleep(2)  # the receive loop still serves the good session
    assert good.bfd is good_bfd and good_bfd.state is State.UP
    assert good_bfd.statistics().control_rx > received and good.crashes == 0
    nursery.cancel_scope.cancel()


# ---- BGP at once, BFD guarding it -------------------------------------------------------------


async def test_bgp_starts_at_once_and_a_bfd_failure_writes_the_cease_in_the_same_step(
    autojump_clock: Any, nursery: trio.Nursery
) -> None:
    ours, routers = await endpoints(nursery)
    runner = PeerRunner(plan("r1", 1, bfd=True), endpoint=ours, routes=lambda p: {},
                        hold_down=1.0)  # fmt: skip
    nursery.start_soon(runner.run)
    await wait_for(lambda: runner.bgp is not None)
    # BGP did not wait; BFD is held AdminDown until it is Established
    assert runner.bfd is not None and runner.bfd.state is State.ADMIN_DOWN
    rtr = await router(routers, 1)  # the router's BFD only now
    first = runner.bgp
    assert isinstance(first, FakeSession)
    await wait_for(lambda: runner.bfd is not None and runner.bfd.state is State.UP)
    await trio.sleep(3)
    changes = runner.bfd.subscribe()
    rtr._scope.cancel()  # the router goes silent: detection expires
    await wait_for(lambda: first.cancel_subcode is not None)
    change = changes.receive_nowait()
    assert change.path_failure and change.diag is Diag.CONTROL_DETECTION_TIME_EXPIRED
    assert first.ceased_at == change.at  # the Cease in the detection step
    assert first.cancel_subcode == CeaseSubcode.BFD_DOWN
    assert [f.diag for f in runner.failovers] == ["CONTROL_DETECTION_TIME_EXPIRED"]
    # The next session waits for BFD Up + the hold-down, then connects at once.
    assert runner.bgp is None or runner.bgp is first
    back = await router(routers, 1)
    await wait_for(lambda: runner.bgp is not None and runner.bgp is not first)
    assert runner.bfd.statistics().up_since is not None
    second = runner.bgp
    assert isinstance(second, FakeSession)
    up_since = runner.bfd.statistics().up_since
    assert up_since is not None and trio.current_time() - up_since >= 1.0
    # A new session's run() connects at once (tests/protocols/bgp/test_connect_retry.py):
    # no connect_now() on top of it, which would only throw its first socket away.
    assert second.connect_now_calls == []
    await wait_for(lambda: len(runner.reannounce_delays) == 1)
    del back
    nursery.cancel_scope.cancel()


async def test_after_a_bfd_teardown_the_router_gets_the_cease_before_our_down(
    autojump_clock: Any, nursery: trio.Nursery
) -> None:
    # BIRD 2 arms its 60 s error wait when its BFD reports our Down before its BGP
    # has read our Cease (docs/bfd.md): our Down waits CEASE_FIRST, and is not lost.
    ours, _routers, rtr, runner = await bfd_up_peer(nursery)
    await trio.sleep(3)
    bgp = runner.bgp
    assert isinstance(bgp, FakeSession)
    theirs = rtr.subscribe()
    ours.dispatch = lambda *args: None  # one-way cut
    await wait_for(lambda: bgp.ceased_at is not None)
    with trio.fail_after(1):
        change = await theirs.receive()
    assert change.new is State.DOWN and change.diag is Diag.NEIGHBOR_SIGNALED_SESSION_DOWN
    assert bgp.ceased_at is not None
    waited = change.at - bgp.ceased_at
    assert peer_module.CEASE_FIRST - 1e-9 <= waited <= peer_module.CEASE_FIRST + 0.002
    nursery.cancel_scope.cancel()


async def test_bfd_is_held_admin_down_until_bgp_is_first_established(
    autojump_clock: Any, nursery: trio.Nursery
) -> None:
    # FRR 8.4 re-creates its `neighbor X bfd` session right after Established; had
    # its old session been Up, its bgpd would Cease (docs/bfd.md). Held AdminDown,
    # ours never lets the router's session come Up before BGP is Established.
    ESTABLISH_AFTER[0] = 2.0  # the router connects late (FRR `timers connect 1`)
    ours, routers = await endpoints(nursery)
    rtr = await router(routers, 1)
    runner = PeerRunner(plan("r1", 1, bfd=True), endpoint=ours, routes=lambda p: {})
    nursery.start_soon(runner.run)
    await wait_for(lambda: runner.bgp is not None and runner.bgp.state is BgpState.ESTABLISHED)
    bgp = runner.bgp
    assert isinstance(bgp, FakeSession) and bgp.established_at is not None
    assert runner.bfd is not None and runner.bfd.state is State.ADMIN_DOWN and runner.bfd_held
    assert rtr.statistics().up_events == 0 and rtr.core.remote_state is State.ADMIN_DOWN
    await wait_for(lambda: runner.bfd is not None and runner.bfd.state is State.UP)
    up_since = runner.bfd.statistics().up_since
    assert up_since is not None
    assert up_since - bgp.established_at >= peer_module.BFD_RELEASE_DELAY
    assert not runner.bfd_held and bgp.cancel_subcode is None
    nursery.cancel_scope.cancel()


async def test_bfd_up_makes_a_session_not_yet_established_connect_at_once(
    autojump_clock: Any, nursery: trio.Nursery
) -> None:
    # BFD held AdminDown is enabled BFD_HOLD_MAX after the start at the latest.
    ESTABLISH_AFTER[0] = 3600  # the router refuses us for now
    _ours, _routers, _, runner = await bfd_up_peer(nursery)
    bgp = runner.bgp
    assert isinstance(bgp, FakeSession) and bgp.connect_now_calls
    assert bgp.connect_now_calls[0] == runner.bfd.statistics().up_since
    nursery.cancel_scope.cancel()


async def test_bfd_strict_waits_for_bfd_before_the_first_session(
    autojump_clock: Any, nursery: trio.Nursery
) -> None:
    ours, routers = await endpoints(nursery)
    await router(routers, 1)
    runner = PeerRunner(plan("r1", 1, bfd=True, strict=True), endpoint=ours,
                        routes=lambda p: {}, hold_down=1.0)  # fmt: skip
    nursery.start_soon(runner.run)
    await wait_for(lambda: runner.bgp is not None)
    assert runner.bfd is not None
    up_since = runner.bfd.statistics().up_since
    assert up_since is not None and start_times["r1"][0] - up_since >= 1.0
    nursery.cancel_scope.cancel()


async def frr_replaces_its_session(
    ours: BfdEndpoint, routers: BfdEndpoint, rtr: BfdSession, diag: Diag
) -> BfdSession:
    """What FRR bfdd does when bgpd re-registers with its real local address: the old
    session sends one Down (``diag``) and is freed; a new one (new discriminator)
    starts Down. ``ours`` receives the old one's last packet as from the wire."""
    (mine,) = ours.sessions.values()
    last = ControlPacket(
        state=State.DOWN, diag=diag, detect_mult=3,
        my_discriminator=rtr.core.local_discriminator,
        your_discriminator=mine.core.local_discriminator,
        desired_min_tx_us=50_000, required_min_rx_us=50_000,
    )  # fmt: skip
    rtr._scope.cancel()  # freed without a word more
    datagram = net.Datagram(data=last.encode(), source=rtr.key.local, source_port=49152,
                            destination=US, ttl=255, ifindex=None)  # fmt: skip
    ours.dispatch(datagram, False, trio.current_time())
    while rtr.key in routers.sessions:  # its task ends (no time passes)
        await trio.sleep(0)
    return await routers.add_session(rtr.key, FAST)


async def test_a_router_replacing_its_bfd_session_after_established_keeps_bgp(
    autojump_clock: Any, nursery: trio.Nursery
) -> None:
    ours, routers, rtr, runner = await bfd_up_peer(nursery)
    await wait_for(lambda: runner.bgp is not None and runner.bgp.state is BgpState.ESTABLISHED)
    bgp = runner.bgp
    assert isinstance(bgp, FakeSession)
    # Established "just now" as far as the window is concerned:
    bgp.established_at = trio.current_time() - 0.0016
    await frr_replaces_its_session(ours, routers, rtr, Diag.NEIGHBOR_SIGNALED_SESSION_DOWN)
    assert runner.bfd is not None and runner.bfd.state in (State.DOWN, State.INIT)
    await wait_for(lambda: runner.bfd is not None and runner.bfd.state is State.UP, 5)
    await trio.sleep(peer_module.RESET_RECOVERY + 1)
    assert runner.bgp is bgp and bgp.cancel_subcode is None and bgp.ceased_at is None
    assert not runner.failovers and runner.session_resets_kept == 1
    nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("late", "diag"),
    [(True, Diag.NEIGHBOR_SIGNALED_SESSION_DOWN), (False, Diag.CONTROL_DETECTION_TIME_EXPIRED)],
)
async def test_a_real_down_right_after_established_still_tears_down_at_once(
    autojump_clock: Any, nursery: trio.Nursery, late: bool, diag: Diag
) -> None:
    # late: the same packet long after Established; else the router's detection expired.
    ours, routers, rtr, runner = await bfd_up_peer(nursery)
    bgp = runner.bgp
    assert isinstance(bgp, FakeSession)
    if late:
        await trio.sleep(peer_module.RESET_WINDOW + 1)
    else:
        bgp.established_at = trio.current_time() - 0.0016
    detected = trio.current_time()
    await frr_replaces_its_session(ours, routers, rtr, diag)
    assert bgp.ceased_at == detected and bgp.cancel_subcode == CeaseSubcode.BFD_DOWN
    nursery.cancel_scope.cancel()


async def test_a_reset_after_which_bfd_stays_down_tears_down_after_the_recovery_time(
    autojump_clock: Any, nursery: trio.Nursery
) -> None:
    ours, routers, rtr, runner = await bfd_up_peer(nursery)
    bgp = runner.bgp
    assert isinstance(bgp, FakeSession)
    bgp.established_at = trio.current_time() - 0.0016
    start = trio.current_time()
    new = await frr_replaces_its_session(ours, routers, rtr, Diag.NEIGHBOR_SIGNALED_SESSION_DOWN)
    new._scope.cancel()  # ... and the new one never speaks
    await wait_for(lambda: bgp.cancel_subcode is not None, 10)
    assert bgp.ceased_at == pytest.approx(start + peer_module.RESET_RECOVERY, abs=0.01)
    assert len(runner.failovers) == 1
    nursery.cancel_scope.cancel()


async def test_restart_path_closes_bgp_first_then_bfd_says_admin_down(
    autojump_clock: Any, nursery: trio.Nursery
) -> None:
    # The router must be in graceful restart (BGP closed, routes stale) before it hears
    # from BFD: FRR 8.4 without check-control-plane-failure tears an Established session
    # down on the BFD Down our AdminDown causes (docs/operations.md, Restart and stop).
    ours, routers = await endpoints(nursery)
    rtr = await router(routers, 1)
    runner = PeerRunner(plan("r1", 1, bfd=True), endpoint=ours, routes=lambda p: {})
    nursery.start_soon(runner.run)
    await wait_for(lambda: runner.bfd is not None and runner.bfd.state is State.UP)
    await trio.sleep(3)
    bgp = runner.bgp
    assert isinstance(bgp, FakeSession)
    theirs = rtr.subscribe()
    stopped: list[float] = []

    async def stop() -> None:
        await runner.stop("speaker restarting", restart=True)
        stopped.append(trio.current_time())

    started = trio.current_time()
    nursery.start_soon(stop)
    with trio.fail_after(2):
        change = await theirs.receive()
    assert change.new is State.DOWN and change.diag is Diag.NEIGHBOR_SIGNALED_SESSION_DOWN
    assert rtr.core.remote_state is State.ADMIN_DOWN  # AdminDown: no path failure
    assert bgp.stopped_for_restart and bgp.cancel_subcode == 4
    assert change.at - started >= peer_module.RESTART_BFD_AFTER - 1e-9
    await wait_for(lambda: stopped)


# ---- VRF and the route to the peer -------------------------------------------------------


def vrf_plan(name: str, n: int, vrf: str) -> PeerPlan:
    base = plan(name, n)
    return attrs.evolve(base, bgp=attrs.evolve(base.bgp, vrf=vrf))


async def test_a_missing_vrf_costs_that_peer_one_line_and_retries(
    autojump_clock: Any, nursery: trio.Nursery, caplog: Any
) -> None:
    good = PeerRunner(plan("good", 1), endpoint=None, routes=lambda p: {})
    missing = PeerRunner(vrf_plan("red-tor", 2, "nosuchvrf0"), endpoint=None, routes=lambda p: {})
    not_vrf = PeerRunner(vrf_plan("lo-tor", 3, "lo"), endpoint=None, routes=lambda p: {})
    with caplog.at_level(logging.INFO, logger="speaker.peer"):
        for r in (good, missing, not_vrf):
            nursery.start_soon(r.run)
        await trio.sleep(8)
    assert starts["good"] == 1 and starts["red-tor"] == 0 and starts["lo-tor"] == 0
    assert missing.setup_failures >= 3 and missing.crashes == 0
    assert missing.last_error == (
        "no VRF device 'nosuchvrf0' on this host (ip link add nosuchvrf0 type vrf table N)"
    )
    assert not_vrf.last_error == "device 'lo' is not a VRF (its kind is none)"
    lines = [r for r in caplog.records if r.getMessage().startswith("peer red-tor")]
    assert lines and all(r.exc_info is None for r in lines)
    assert lines[0].getMessage() == (
        "peer red-tor: cannot start: no VRF device 'nosuchvrf0' on this host (ip link add"
        " nosuchvrf0 type vrf table N); retrying in 1 s"
    )
    nursery.cancel_scope.cancel()


async def test_a_vrf_deleted_while_the_peer_runs_restarts_that_peer(
    autojump_clock: Any, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socket bound to a deleted VRF device hears nothing, even once a VRF of that
    name is created again (a new ifindex): the peer starts afresh, after its backoff."""
    index = [42]
    monkeypatch.setattr(peer_module, "vrf_problem", lambda name: None)
    monkeypatch.setattr(peer_module, "vrf_index", lambda name: index[0])
    runner = PeerRunner(vrf_plan("red-tor", 2, "red"), endpoint=None, routes=lambda p: {})
    nursery.start_soon(runner.run)
    await trio.sleep(10)
    assert starts["red-tor"] == 1 and runner.setup_failures == 0
    index[0] = 43  # deleted and created again
    await trio.sleep(peer_module.ROUTE_RECHECK + 0.1)
    assert runner.last_error == "VRF 'red' went away (deleted or created again)"
    assert runner.crashes == 0 and runner.setup_failures == 1
    await trio.sleep(2)
    assert starts["red-tor"] == 2  # started again in the new VRF device
    nursery.cancel_scope.cancel()


async def test_bfd_without_interface_takes_the_routes_and_follows_it(
    autojump_clock: Any, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """Single-hop BFD with no ``interface``: the route's interface when the peer starts,
    then every ROUTE_RECHECK the route is asked again and the session moves with it
    (no BGP restart, no new BFD session)."""
    route = [RouteInfo(oif=1, interface="lo", source=None, gateway=None, table=254)]
    monkeypatch.setattr(peer_module, "route_to", lambda peer, vrf=None: route[0])
    moves: list[str] = []
    monkeypatch.setattr(BfdSession, "move_to", lambda self, name: moves.append(name))
    ours, routers = await endpoints(nursery)
    await router(routers, 1)
    runner = PeerRunner(plan("tor", 1, bfd=True), endpoint=ours, routes=lambda p: {})
    with caplog.at_level(logging.INFO, logger="speaker.peer"):
        nursery.start_soon(runner.run)
        await wait_for(lambda: runner.bfd is not None and runner.bfd.state is State.UP)
        assert runner.bfd is not None and runner.bfd.key.interface == "lo"
        await trio.sleep(3 * peer_module.ROUTE_RECHECK)
        assert moves == []  # the route did not move
        route[0] = attrs.evolve(route[0], oif=9, interface="to-rtr1b")
        await trio.sleep(peer_module.ROUTE_RECHECK + 0.1)
    assert moves == ["to-rtr1b"]
    assert starts["tor"] == 1 and runner.setup_failures == runner.crashes == 0
    assert any("the route to 127.0.0.2 moved from lo to to-rtr1b: BFD follows" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    nursery.cancel_scope.cancel()


async def test_with_change_notifications_the_route_is_asked_after_each_change_only(
    autojump_clock: Any, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the host's change notifications (speaker.netwatch) an idle peer asks for
    its route only when the kernel announced a change (and every
    ROUTE_RECHECK_WATCHED): no wake-up every ROUTE_RECHECK; the move is followed
    within SPACING of the change."""
    route = [RouteInfo(oif=1, interface="lo", source=None, gateway=None, table=254)]
    asked: list[float] = []

    def route_to(peer: object, vrf: object = None) -> RouteInfo:
        asked.append(trio.current_time())
        return route[0]

    monkeypatch.setattr(peer_module, "route_to", route_to)
    moves: list[str] = []
    monkeypatch.setattr(BfdSession, "move_to", lambda self, name: moves.append(name))
    watch = NetWatch()
    watch.available = True  # as if subscribed; the test announces the changes
    ours, routers = await endpoints(nursery)
    await router(routers, 1)
    runner = PeerRunner(plan("tor", 1, bfd=True), endpoint=ours, routes=lambda p: {},
                        netwatch=watch)  # fmt: skip
    nursery.start_soon(runner.run)
    await wait_for(lambda: runner.bfd is not None and runner.bfd.state is State.UP)
    started = len(asked)
    await trio.sleep(10 * peer_module.ROUTE_RECHECK)
    assert len(asked) == started  # nothing changed: not asked again
    route[0] = attrs.evolve(route[0], oif=9, interface="to-rtr1b")
    changed = trio.current_time()
    watch.notify()
    await trio.sleep(SPACING + 0.01)
    assert moves == ["to-rtr1b"] and asked[-1] - changed <= SPACING
    await trio.sleep(peer_module.ROUTE_RECHECK_WATCHED + 1)
    assert len(asked) == started + 2  # and once more after ROUTE_RECHECK_WATCHED
    nursery.cancel_scope.cancel()


async def test_a_configured_interface_is_not_followed(
    autojump_clock: Any, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[object] = []
    monkeypatch.setattr(peer_module, "route_to", lambda peer, vrf=None: asked.append(peer))
    ours, routers = await endpoints(nursery)
    await router(routers, 1)
    base = plan("tor", 1, bfd=True)
    assert base.bfd_target is not None
    fixed = attrs.evolve(base, bfd_target=attrs.evolve(base.bfd_target, interface="lo"))
    runner = PeerRunner(fixed, endpoint=ours, routes=lambda p: {})
    nursery.start_soon(runner.run)
    await wait_for(lambda: runner.bfd is not None and runner.bfd.state is State.UP)
    await trio.sleep(5 * peer_module.ROUTE_RECHECK)
    assert asked == []  # no lookups at all for it
    nursery.cancel_scope.cancel()
