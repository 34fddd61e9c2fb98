"""Lab pieces several benchmarks share: the speaker side (our TOML, FRR's lines for the
same job) and the router side (gobgpd, with FRR bfdd at the same address).

Every benchmark compares implementations doing the same job, so the job is written
once here: announce the VIP(s) of one pool to each router, BFD at ``ms``/``ms``/``mult``
when asked, a 1 s connect retry so a restart is not measured as backoff.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import attrs

from lab.frr import FRR, bfd_peer_block, bfdd_config, bgpd_config
from lab.gobgp import GoBGP, neighbor_toml
from lab.netns import Host

SPEAKER_AS, ROUTER_AS = 64513, 64512


@attrs.frozen
class Peer:
    """One router as our speaker's TOML names it."""

    name: str
    peer_address: str
    source_address: str
    interface: str
    peer_asn: int = ROUTER_AS
    bfd: bool = True  # use the BFD profile (when speaker_toml has one)

    @classmethod
    def between(cls, speaker: Host, router: Host) -> Peer:
        """The peer over the direct link ``speaker`` <-> ``router`` of a lab."""
        return cls(
            name=router.name,
            peer_address=str(router.addr4(speaker.name)),
            source_address=str(speaker.addr4(router.name)),
            interface=f"to-{router.name}",
        )


def speaker_toml(
    *,
    router_id: str,
    state_file: object,
    peers: Sequence[Peer],
    bfd_ms: int | None,
    mult: int = 3,
    hold_time: int | None = None,
    pool: str = "198.19.0.0/24",
    services: Sequence[tuple[str, str]] = (("web", "198.19.0.10"),),
    advertise_to: Sequence[str] = (),
    realtime_priority: int = 0,
) -> str:
    """Our speaker's config: ``services`` (name, address) from ``pool`` to every peer
    (or to the peers named in ``advertise_to``)."""
    out = [
        f'[speaker]\nrouter_id = "{router_id}"\nmy_asn = {SPEAKER_AS}\nhold_down = "1s"\n'
        f'state_file = "{state_file}"\n'
        + (f"realtime_priority = {realtime_priority}\n" if realtime_priority else "")
    ]
    if bfd_ms is not None:
        out.append(
            f'[[bfd_profiles]]\nname = "bench"\ntransmit_interval = {bfd_ms}\n'
            f"receive_interval = {bfd_ms}\ndetect_multiplier = {mult}\n"
        )
    for p in peers:
        lines = [
            f'[[peers]]\nname = "{p.name}"\npeer_address = "{p.peer_address}"',
            f'peer_asn = {p.peer_asn}\nsource_address = "{p.source_address}"',
            f'interface = "{p.interface}"\nconnect_time = "1s"',
        ]
        if bfd_ms is not None and p.bfd:
            lines.append('bfd_profile = "bench"')
        if hold_time is not None:
            lines.append(f'hold_time = "{hold_time}s"')
        out.append("\n".join(lines) + "\n")
    out.append(f'[[pools]]\nname = "vips"\naddresses = ["{pool}"]\n')
    only = f"peers = {json.dumps(list(advertise_to))}\n" if advertise_to else ""
    out.append(f'[[advertisements]]\nname = "to-routers"\n{only}')
    out += [f'[[services]]\nname = "{name}"\naddress = "{addr}"\n' for name, addr in services]
    return "\n".join(out)


def frr_bfd_profile(ms: int, mult: int = 3) -> str:
    """bfdd.conf with the profile ``bench`` that :func:`frr_neighbor_lines` refers to."""
    return (
        f"bfd\n profile bench\n  transmit-interval {ms}\n  receive-interval {ms}\n"
        f"  detect-multiplier {mult}\n !\n!\n"
    )


def frr_neighbor_lines(
    peer: str, *, bfd: bool, hold_time: int | None = None, remote_as: int = ROUTER_AS
) -> list[str]:
    """FRR bgpd lines for one neighbor: the same job as :func:`speaker_toml` (or, with
    ``remote_as=SPEAKER_AS``, a router's view of a speaker)."""
    lines = [f"neighbor {peer} remote-as {remote_as}", f"neighbor {peer} timers connect 1"]
    if hold_time is not None:
        lines.append(f"neighbor {peer} timers {max(1, hold_time // 3)} {hold_time}")
    if bfd:
        lines += [f"neighbor {peer} bfd", f"neighbor {peer} bfd profile bench"]
    return lines


def start_router(
    router: Host,
    speaker: Host,
    *,
    bfd_ms: int | None,
    mult: int = 3,
    hold_time: int | None = None,
) -> tuple[GoBGP, FRR | None]:
    """The router side of the link to ``speaker``: gobgpd (passive) and, with
    ``bfd_ms``, FRR bfdd at the same address as the BFD peer."""
    r_addr, s_addr = str(router.addr4(speaker.name)), str(speaker.addr4(router.name))
    keepalive = None if hold_time is None else max(1, hold_time // 3)
    gobgp = GoBGP(
        router,
        asn=ROUTER_AS,
        router_id=r_addr,
        neighbors=neighbor_toml(s_addr, SPEAKER_AS, hold_time=hold_time, keepalive=keepalive),
    ).start()
    bfd = None
    if bfd_ms is not None:
        block = bfd_peer_block(s_addr, local=r_addr, interface=f"to-{speaker.name}",
                               tx=bfd_ms, rx=bfd_ms, mult=mult)  # fmt: skip
        bfd = FRR(router, bfdd=bfdd_config([block]), name="rtrbfd").start()
    return gobgp, bfd


class FrrRouter:
    """The router as operators configure FRR: bgpd with ``neighbor S bfd`` (BFD coupled
    to BGP, bfdd creating the session when bgpd asks), connecting to the speaker as
    well as accepting it, zebra installing what it learns. Offers what the benchmarks
    read from :class:`lab.gobgp.GoBGP`: the routes held and the resets seen."""

    def __init__(self, frr: FRR, speaker_address: str) -> None:
        self.frr = frr
        self.speaker_address = speaker_address

    def rib_count(self, family: str = "ipv4") -> int:
        """Prefixes received from the speaker in ``family``."""
        summary = self.frr.vtysh_json("bgpd", f"show bgp {family} unicast summary json")
        peer = summary.get("peers", {}).get(self.speaker_address, {})
        return int(peer.get("pfxRcd", 0))

    def resets(self, address: str) -> tuple[int, int]:
        """(sessions dropped, OPENs received) for the neighbor, as GoBGP's ``resets``."""
        n = self.frr.bgp_neighbor(address)
        opens = n.get("messageStats", {}).get("opensRecv", 0)
        return int(n.get("connectionsDropped", 0)), int(opens)


def start_field_router(
    router: Host, speaker: Host, *, bfd_ms: int, mult: int = 3
) -> tuple[FrrRouter, FRR]:
    """FRR 8.4 on ``router`` as a ToR is configured: ``neighbor S remote-as ...``,
    ``neighbor S bfd``, ``neighbor S bfd profile bench`` (``bfd_ms``/``mult``)."""
    r_addr, s_addr = str(router.addr4(speaker.name)), str(speaker.addr4(router.name))
    bgpd = bgpd_config(
        ROUTER_AS, r_addr, frr_neighbor_lines(s_addr, bfd=True, remote_as=SPEAKER_AS)
    )
    frr = FRR(router, bfdd=frr_bfd_profile(bfd_ms, mult), bgpd=bgpd, name="rtr").start()
    return FrrRouter(frr, s_addr), frr
