"""Reading the running speaker for FRR's commands: ``show bgp summary`` (its
``ipv4Unicast`` / ``ipv6Unicast`` objects), ``show bgp neighbors [X]``, ``show bgp
ipv4|ipv6 unicast neighbors X advertised-routes``, ``show bfd peer X``, and the
actions ``clear bgp X [soft out]``. Called in the speaker's Trio loop; whatever
grows with routes is read in slices.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import Counter
from typing import Any

import trio

from protocols.bgp import CeaseSubcode, key_is_v6, key_prefix
from protocols.bgp import State as BgpState
from speaker.app import Speaker
from speaker.log import fields
from speaker.looplag import Slicer
from speaker.peer import PeerRunner
from speaker.view import frr
from speaker.view.errors import RequestError
from speaker.view.live import _router_id, bfd_record, find_runner
from speaker.view.records import remote_as

__all__ = [
    "advertised_routes",
    "bfd_peer",
    "bgp_neighbors",
    "clear_bgp",
    "frr_summary",
    "peer_view",
]

log = logging.getLogger("speaker.control")

_FAMILY_WORDS = {"ipv4": (1, 1), "ipv6": (2, 1)}


async def _sent_by_family(runner: PeerRunner, slicer: Slicer) -> dict[tuple[int, int], int]:
    """Prefixes advertised to the peer, by family (counted in slices: 65,536 routes)."""
    bgp = runner.bgp
    if bgp is None or bgp.state is not BgpState.ESTABLISHED:
        return {}
    families = runner.plan.bgp.families
    advertised = bgp.rib_out.sent  # by route key
    if len(families) <= 1:
        return {families[0]: len(advertised)} if families else {}
    counts: Counter[tuple[int, int]] = Counter()
    for n, route in enumerate(await slicer.keys(advertised)):
        counts[(2, 1) if key_is_v6(route) else (1, 1)] += 1
        if n % 1024 == 0:
            await slicer.tick()
    return dict(counts)


async def peer_view(runner: PeerRunner, slicer: Slicer) -> frr.BgpPeerView:
    config, bgp, now = runner.plan.bgp, runner.bgp, trio.current_time()
    sent = await _sent_by_family(runner, slicer)
    bfd, changed_ago = None, None
    if runner.bfd is not None:
        bfd = bfd_record(runner, runner.bfd)
        last = runner.bfd.statistics().last_change
        changed_ago = None if last is None else max(0.0, now - last)
    return frr.BgpPeerView(
        name=runner.name,
        address=str(config.peer_address),
        remote_as=remote_as(
            config.peer_asn, config.dynamic_asn, bgp.negotiated if bgp is not None else None
        ),
        local_as=config.local_asn,
        router_id=str(config.router_id),
        families=tuple(config.families),
        stats=bgp.statistics() if bgp is not None else None,
        negotiated=bgp.negotiated if bgp is not None else None,
        totals=runner.totals(),
        down_at=runner.bgp_down_at,
        sent=sent,
        configured_hold_time=config.hold_time,
        configured_keepalive=config.keepalive_time,
        connect_retry=config.connect_retry,
        multihop=config.ebgp_multihop,
        bfd=bfd,
        bfd_changed_ago=changed_ago,
        previous=runner.last_session,
    )


def _epoch() -> float:
    return time.time()


async def frr_summary(speaker: Speaker) -> dict[str, Any]:
    """FRR's ``show bgp summary json``: ``ipv4Unicast`` / ``ipv6Unicast`` (a peer per
    slice: 1,000 peers are 7 ms of work)."""
    slicer = Slicer()
    by_family: dict[tuple[int, int], dict[str, Any]] = {f: {} for f in frr.FAMILIES}
    rib: Counter[tuple[int, int]] = Counter()
    asns = set()
    epoch = _epoch()
    for runner in list(speaker.peers.values()):
        await slicer.tick()
        view = await peer_view(runner, slicer)
        asns.add(view.local_as)
        for family in view.families:
            if family in by_family:
                by_family[family][view.address] = frr.summary_peer(
                    view, family, now=trio.current_time(), epoch=epoch
                )
                rib[family] += view.sent.get(family, 0)
    ordered = sorted(asns)
    asn: Any = ordered[0] if len(ordered) == 1 else ordered
    router_id = _router_id(speaker)
    return {
        frr.family_key(family): frr.summary_family(
            peers, router_id=router_id, asn=asn, rib_count=rib[family]
        )
        for family, peers in by_family.items()
        if peers
    }


async def bgp_neighbors(speaker: Speaker, name: str | None) -> dict[str, Any]:
    """FRR's ``show bgp neighbors [X] json``: ``{"<address>": {...}}``."""
    runners = list(speaker.peers.values()) if name is None else [find_runner(speaker, name)]
    slicer = Slicer()
    out: dict[str, Any] = {}
    for runner in runners:
        await slicer.tick()
        view = await peer_view(runner, slicer)
        out[view.address] = frr.bgp_neighbor(view, now=trio.current_time(), epoch=_epoch())
    return out


#: Routes per slice check while building advertised-routes.
_ROUTES_PER_TICK = 128


async def advertised_routes(speaker: Speaker, family: str, name: str) -> dict[str, Any]:
    """FRR's ``show bgp ipv4|ipv6 unicast neighbors X advertised-routes json``: the
    routes the peer has been sent (the Adj-RIB-Out's advertised set). ``family``:
    ipv4 or ipv6, as the command table checks it."""
    wanted = _FAMILY_WORDS[family]
    runner = find_runner(speaker, name)
    config, bgp = runner.plan.bgp, runner.bgp
    slicer = Slicer()
    routes: dict[str, Any] = {}
    if bgp is not None and bgp.state is BgpState.ESTABLISHED:
        table = bgp.rib_out.sent  # by route key: a network only for the family asked
        v6 = wanted != (1, 1)
        for n, route in enumerate(await slicer.keys(table)):
            attributes = table.get(route)
            if attributes is not None and key_is_v6(route) == v6:
                prefix = key_prefix(route)
                routes[str(prefix)] = frr.advertised_route(prefix, attributes)
            if n % _ROUTES_PER_TICK == 0:
                await slicer.tick()
    return frr.advertised_routes(routes, router_id=str(config.router_id),
                                 local_as=config.local_asn, total=len(routes))  # fmt: skip


def bfd_peer(speaker: Speaker, name: str) -> dict[str, Any]:
    """FRR's ``show bfd peer X json``: the BFD session of the peer named (or at the
    address) ``name``."""
    runner = _bfd_runner(speaker, name)
    if runner.bfd is None:
        raise RequestError(f'peer "{runner.name}" has no BFD session running')
    return bfd_record(runner, runner.bfd)


def _bfd_runner(speaker: Speaker, name: str) -> PeerRunner:
    try:
        return find_runner(speaker, name)
    except RequestError:
        pass
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        address = None
    for runner in speaker.peers.values():
        if runner.bfd is not None and runner.bfd.key.peer == address:
            return runner
    raise RequestError(f'no BFD peer "{name}" on this node (peers: '
                       f"{', '.join(speaker.peers) or 'none'})")  # fmt: skip


def clear_bgp(speaker: Speaker, name: str, *, soft_out: bool) -> dict[str, Any]:
    """``clear bgp X``: reset the session (Cease/Administrative Reset, then the peer
    connects again as after any reset); ``clear bgp X soft out``: send the whole
    Adj-RIB-Out again, the session stays up."""
    runner = find_runner(speaker, name)
    bgp = runner.bgp
    extra = fields(peer=runner.name, protocol="bgp")
    if soft_out:
        if bgp is None or bgp.state is not BgpState.ESTABLISHED:
            raise RequestError(f'peer "{runner.name}" is not Established: nothing to re-send')
        families = bgp.resend_all()
        log.info("bgp %s: clear soft out: re-sending the Adj-RIB-Out", runner.name, extra=extra)
        return {"peer": runner.name, "cleared": "soft out", "families": families}
    if bgp is None:
        raise RequestError(f'peer "{runner.name}" has no BGP session to reset (it waits'
                           " for BFD)")  # fmt: skip
    log.info("bgp %s: clear: resetting the session (operator)", runner.name, extra=extra)
    bgp.cancel(CeaseSubcode.ADMINISTRATIVE_RESET, "clear bgp")
    return {"peer": runner.name, "cleared": "reset", "families": []}
