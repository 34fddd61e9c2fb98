"""Graceful restart in the runtime (RFC 4724, RFC 8538): our OPEN's capability, End-of-RIB,
and how a session ends on the restart path and on the stop path, against an in-process
router made of the same sans-IO core (the loopback peer of test_bgp_session)."""

from __future__ import annotations

import trio
import trio.testing

from protocols.bgp import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    CeaseSubcode,
    EndOfRib,
    GracefulRestartCapability,
    NotificationReceived,
    OpenReceived,
    State,
    StateChanged,
    graceful_restart_capability,
    is_hard_reset,
)
from speaker.bgp import BgpSession
from tests.helpers.bgp_peer import Peer, host_routes, our_config, peer_core, wait_for

FAMILIES = (IPV4_UNICAST, IPV6_UNICAST)


def gr_router(*, notification: bool = True) -> Peer:
    """A router with graceful restart (helper: restart time 120, no families of its
    own, as FRR's default helper mode), with or without the RFC 8538 N bit."""
    cap = graceful_restart_capability(restart_time=120, families=(), notification=notification)
    return Peer(peer_core(graceful_restart=cap))


async def start(
    nursery: trio.Nursery, peer: Peer, *, restarting: bool = False, **config: object
) -> BgpSession:
    port = await nursery.start(peer.serve)
    session = BgpSession(
        our_config(port, families=FAMILIES, **config),
        routes=host_routes(10),
        restarting=restarting,
    )
    await nursery.start(session.run)
    await session.wait_synchronised()
    await wait_for(lambda: peer.of(EndOfRib))
    return session


def our_capability(peer: Peer) -> GracefulRestartCapability | None:
    (opened,) = peer.of(OpenReceived)
    assert isinstance(opened, OpenReceived)
    caps = [c for c in opened.open.capabilities if isinstance(c, GracefulRestartCapability)]
    assert len(caps) <= 1
    return caps[0] if caps else None


async def test_open_carries_restart_time_n_and_f_per_family_and_end_of_rib_follows(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    peer = gr_router()
    session = await start(nursery, peer, graceful_restart=True, graceful_restart_time=90)
    cap = our_capability(peer)
    assert cap is not None
    assert cap.restart_time == 90
    assert cap.notification and not cap.restart_state
    assert {(f.afi, f.safi) for f in cap.families} == set(FAMILIES)
    assert all(f.forwarding_preserved for f in cap.families)
    # End-of-RIB for each negotiated family after the initial announcement.
    eors = {(e.afi, e.safi) for e in peer.of(EndOfRib) if isinstance(e, EndOfRib)}
    assert eors == set(FAMILIES)
    assert session.retained_families() == sorted(FAMILIES)
    neg = session.negotiated
    assert neg is not None and neg.graceful_restart_negotiation.notification


async def test_restarting_sets_r_and_unconfigured_sends_no_capability(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    restarted = gr_router()
    await start(nursery, restarted, restarting=True, graceful_restart=True)
    cap = our_capability(restarted)
    assert cap is not None and cap.restart_state

    plain = gr_router()
    session = await start(nursery, plain, restarting=True)  # graceful_restart off
    assert our_capability(plain) is None
    assert not session.restarting
    assert session.retained_families() == []


async def _ended(peer: Peer, session: BgpSession) -> list[NotificationReceived]:
    await session.wait_stopped()
    await wait_for(peer.closed.is_set)
    assert session.state is State.IDLE
    return [n for n in peer.of(NotificationReceived) if isinstance(n, NotificationReceived)]


async def test_restart_path_with_n_is_a_plain_administrative_reset(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """RFC 8538 §4: a NOTIFICATION other than Hard Reset keeps graceful restart at the
    router (FRR: NSF wait, routes kept as stale)."""
    peer = gr_router()
    session = await start(nursery, peer, graceful_restart=True)
    negotiated = peer.core.negotiated
    assert negotiated is not None
    session.stop_for_restart("speaker restarting")
    (notification,) = await _ended(peer, session)
    assert (notification.code, notification.subcode) == (6, CeaseSubcode.ADMINISTRATIVE_RESET)
    assert notification.shutdown_message == "speaker restarting"
    # The router's side: N on both sides, not a Hard Reset, and we listed both
    # families with F set: it keeps both (RFC 8538 §4, RFC 4724 §4.2).
    gr = negotiated.graceful_restart_negotiation
    assert gr.notification and not is_hard_reset(notification.message)
    assert gr.peer_forwarding_preserved == frozenset(FAMILIES)


async def test_stop_path_with_n_is_a_hard_reset(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    peer = gr_router()
    session = await start(nursery, peer, graceful_restart=True)
    session.cancel(CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, "speaker shutting down")
    (notification,) = await _ended(peer, session)
    assert (notification.code, notification.subcode) == (6, CeaseSubcode.HARD_RESET)
    cause = notification.hard_reset_cause
    assert cause is not None and cause.subcode == CeaseSubcode.ADMINISTRATIVE_SHUTDOWN


async def test_restart_path_without_n_only_closes_tcp(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """RFC 4724 §4: without N any NOTIFICATION ends graceful restart, so the restart
    path sends none; the router sees the connection close."""
    peer = gr_router(notification=False)
    session = await start(nursery, peer, graceful_restart=True)
    session.stop_for_restart("speaker restarting")
    assert await _ended(peer, session) == []
    downs = [e for e in peer.of(StateChanged) if isinstance(e, StateChanged)]
    assert downs[-1].old is State.ESTABLISHED
    assert session.statistics().notification_written_at is None


async def test_restart_path_without_graceful_restart_still_sends_a_cease(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    peer = gr_router()
    session = await start(nursery, peer)  # not configured on our side
    session.stop_for_restart("speaker restarting")
    (notification,) = await _ended(peer, session)
    assert (notification.code, notification.subcode) == (6, CeaseSubcode.ADMINISTRATIVE_RESET)
