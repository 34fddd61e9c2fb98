"""The interop matrix's routers, configured as operators configure them, behind one
small interface (tests/interop/test_matrix.py, docs/interop.md).

A :class:`Cell` names a router and a variant; :func:`start_router` builds that
router in the lab's ``rtr1`` (AS 64512) and returns a :class:`Router` that answers
the matrix's questions the same way whatever the daemon: is BGP Established, is the
route in its RIB, is its BFD session with us Up, how many BGP sessions has it
established. :func:`speaker_toml` writes our side of the same cell.

* FRR: bgpd + bfdd + zebra, ``neighbor X bfd`` (+ ``bfd profile``: the timers), the
  router active (FRR's default), passive (``neighbor X passive``), or we are passive;
* BIRD 2: ``bfd on`` in the BGP protocol, the timers in ``protocol bfd``;
* gobgpd (passive) and ExaBGP (active, does not listen), each with FRR bfdd beside it
  as a static BFD peer at the same address, not coupled to its BGP.

Variants: single-hop; multihop between loopbacks (``ebgp-multihop`` / ``multihop``,
the lab's static routes); echo (FRR ``echo-mode``, our node with ``ip_forward=0``);
TCP MD5.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import attrs

from lab import Lab
from lab.bird import Bird, bgp_protocol
from lab.exabgp import ExaBGP
from lab.frr import FRR, bfd_peer_block, bfdd_config, bgpd_config
from lab.gobgp import GoBGP, neighbor_toml
from lab.netns import Host
from lab.proc import LabError

ROUTER_AS, SPEAKER_AS = 64512, 64513
PASSWORD = "Matrix-Md5-Key"
PROFILE = "matrix"
VIP4, VIP6 = "198.19.0.10", "2001:2:0:ff::10"
POOL4, POOL6 = "198.19.0.0/24", "2001:2:0:ff::/120"
BIRD_MULTIHOP_MIN_TTL = 60


@attrs.frozen
class Cell:
    """One cell: ``router`` is frr, bird, gobgp or exabgp; ``role`` who connects
    (``active``: the router too; ``passive``: the router never does; ``spkpassive``:
    only the router does); ``variant`` singlehop, multihop, echo or md5."""

    router: str
    variant: str = "singlehop"
    role: str = "active"
    family: int = 4

    @property
    def id(self) -> str:
        middle = {"frr": self.role, "bird": f"v{self.family}"}.get(self.router)
        return "-".join(p for p in (self.router, middle, self.variant) if p)

    @property
    def multihop(self) -> bool:
        return self.variant == "multihop"

    @property
    def prefix(self) -> str:
        return f"{VIP6}/128" if self.family == 6 else f"{VIP4}/32"


CELLS = (
    Cell("frr"),
    Cell("frr", role="passive"),
    Cell("frr", role="spkpassive"),
    Cell("frr", "multihop"),
    Cell("frr", "echo"),
    Cell("frr", "md5"),
    Cell("bird"),
    Cell("bird", family=6),
    Cell("bird", "multihop"),
    Cell("bird", "md5"),
    Cell("gobgp"),
    Cell("gobgp", "md5"),
    Cell("exabgp"),
)


@attrs.frozen
class Ends:
    """The addresses of one cell's session, as each side names them."""

    router: str  # the router's address (our peer_address)
    speaker: str  # ours (the router's neighbor)
    interface: str | None  # ours towards the router; None when multihop

    @classmethod
    def of(cls, cell: Cell, spk: Host, rtr: Host) -> Ends:
        if cell.multihop:
            return cls(str(rtr.lo4), str(spk.lo4), None)
        if cell.family == 6:
            return cls(str(rtr.addr6(spk.name)), str(spk.addr6(rtr.name)), f"to-{rtr.name}")
        return cls(str(rtr.addr4(spk.name)), str(spk.addr4(rtr.name)), f"to-{rtr.name}")


def speaker_toml(cell: Cell, ends: Ends, *, lab: Lab, control: Path, bfd_ms: int) -> str:
    """Our config for ``cell``: one peer, one pool, one service announced to it."""
    spk = lab["spk"]
    profile = ""
    if cell.variant == "echo":
        profile = f"echo_mode = true\necho_interval = {bfd_ms}\n"
    if cell.router == "bird" and cell.multihop:
        # BIRD 2.0.12 sends multihop BFD with TTL 64 (the system default), not 255: an
        # operator lowers the speaker's minimum_ttl (default 254) for it.
        profile += f"minimum_ttl = {BIRD_MULTIHOP_MIN_TTL}\n"
    peer = [
        'name = "rtr1"',
        f'peer_address = "{ends.router}"',
        f"peer_asn = {ROUTER_AS}",
        f'source_address = "{ends.speaker}"',
        f'bfd_profile = "{PROFILE}"',
    ]
    if ends.interface:
        peer.append(f'interface = "{ends.interface}"')
    if cell.multihop:
        peer.append("ebgp_multihop = 2")
    if cell.variant == "md5":
        peer.append(f'password = "{PASSWORD}"')
    if cell.role == "spkpassive":
        peer.append("passive = true")
    pool, vip = (POOL6, VIP6) if cell.family == 6 else (POOL4, VIP4)
    newline = "\n"
    return f"""
[speaker]
router_id = "{spk.lo4}"
my_asn = {SPEAKER_AS}
state_file = "{lab.dir / "speaker-state.json"}"

[control]
socket = "{control}"

[metrics]
enabled = false

[[bfd_profiles]]
name = "{PROFILE}"
transmit_interval = {bfd_ms}
receive_interval = {bfd_ms}
detect_multiplier = 3
{profile}
[[peers]]
{newline.join(peer)}

[[pools]]
name = "vips"
addresses = ["{pool}"]

[[advertisements]]
name = "all"

[[services]]
name = "web"
address = "{vip}"
"""


class Router:
    """What the matrix asks of a router (each subclass answers from its daemon)."""

    label = "router"
    #: Seconds the router itself refuses a new session after one went down, whatever
    #: the speaker does (the cell's recovery budget is at least this + 1 s).
    idle_hold_s = 0.0

    def __init__(self, cell: Cell, ends: Ends) -> None:
        self.cell = cell
        self.ends = ends

    def start(self) -> Router:
        raise NotImplementedError

    def established(self) -> bool:
        raise NotImplementedError

    def has_route(self) -> bool:
        raise NotImplementedError

    def bfd_up(self) -> bool:
        raise NotImplementedError

    def sessions_established(self) -> int | None:
        """BGP sessions with us that reached Established so far (None: not known)."""
        return None

    def describe(self) -> str:
        """The router's view, for a failure message."""
        return ""

    def close(self) -> None:
        """Close what polling opened (the daemons stop with the lab)."""


# ---- FRR ----------------------------------------------------------------------------


def frr_profile(bfd_ms: int, *, echo: bool) -> str:
    lines = [
        f" profile {PROFILE}",
        f"  transmit-interval {bfd_ms}",
        f"  receive-interval {bfd_ms}",
        "  detect-multiplier 3",
    ]
    if echo:
        lines += ["  echo-mode", f"  echo transmit-interval {bfd_ms}",
                  f"  echo receive-interval {bfd_ms}"]  # fmt: skip
    return "\n".join([*lines, " !", ""])


def _frr_bfd_up(frr: FRR, peer: str) -> bool:
    # Single-hop ``neighbor X bfd``: a session with local 0.0.0.0 may linger next to
    # the one bgpd re-creates with its real address; one of them Up is BFD Up.
    return any(p.get("peer") == peer and p.get("status") == "up" for p in frr.bfd_peers())


class FrrRouter(Router):
    """FRR bgpd + bfdd + zebra with ``neighbor X bfd`` and a BFD profile."""

    label = "FRR bgpd+bfdd"

    def __init__(self, cell: Cell, ends: Ends, host: Host, *, bfd_ms: int) -> None:
        super().__init__(cell, ends)
        n = f"neighbor {ends.speaker}"
        neighbors = [f"{n} remote-as {SPEAKER_AS}", f"{n} bfd", f"{n} bfd profile {PROFILE}"]
        if cell.multihop:
            # No update-source: FRR learns its local address from the TCP connection
            # (and only then creates the multihop BFD session).
            neighbors.append(f"{n} ebgp-multihop 2")
        if cell.variant == "md5":
            neighbors.append(f"{n} password {PASSWORD}")
        if cell.role == "passive":
            neighbors.append(f"{n} passive")
        if cell.role == "spkpassive":
            # With the speaker passive, recovery is the router's reconnect timer
            # (FRR's default is 120 s); operators who make the speaker passive shorten it.
            neighbors.append(f"{n} timers connect 1")
        bfdd = "bfd\n" + frr_profile(bfd_ms, echo=cell.variant == "echo") + "!\n"
        self.family = "ipv6" if cell.family == 6 else "ipv4"
        bgpd = bgpd_config(ROUTER_AS, str(host.lo4), neighbors)
        self.frr = FRR(host, bfdd=bfdd, bgpd=bgpd, debug=True)

    def start(self) -> FrrRouter:
        self.frr.start()
        self.bgpd = self.frr.vty("bgpd")
        return self

    def established(self) -> bool:
        return self.frr.bgp_neighbor(self.ends.speaker).get("bgpState") == "Established"

    def has_route(self) -> bool:
        data = self.bgpd.json(f"show bgp {self.family} unicast {self.cell.prefix} json")
        return bool(data and data.get("paths"))

    def bfd_up(self) -> bool:
        return _frr_bfd_up(self.frr, self.ends.speaker)

    def sessions_established(self) -> int | None:
        return int(self.frr.bgp_neighbor(self.ends.speaker).get("connectionsEstablished", 0))

    def describe(self) -> str:
        n = self.frr.bgp_neighbor(self.ends.speaker)
        keep = ("bgpState", "connectionsEstablished", "connectionsDropped", "lastResetDueTo",
                "lastNotificationReason", "peerBfdInfo")  # fmt: skip
        return f"FRR neighbor: {json.dumps({k: n.get(k) for k in keep})}; " + (
            f"bfd peers: {json.dumps(self.frr.bfd_peers())}"
        )

    def close(self) -> None:
        self.bgpd.close()


# ---- BIRD ---------------------------------------------------------------------------


class BirdRouter(Router):
    """BIRD 2 with ``bfd on`` in its BGP protocol; BFD timers in ``protocol bfd``."""

    label = "BIRD 2"

    def __init__(self, cell: Cell, ends: Ends, host: Host, spk: Host, *, bfd_ms: int) -> None:
        super().__init__(cell, ends)
        timers = f"interval {bfd_ms} ms; multiplier 3;"
        if cell.multihop:
            bfd = f"protocol bfd bfd1 {{\n  multihop {{ {timers} }};\n}}\n"
        else:
            bfd = f'protocol bfd bfd1 {{\n  interface "to-{spk.name}" {{ {timers} }};\n}}\n'
        extra = ["bfd on;", "debug { states };"]  # "State changed to up": one per session
        static = ""
        if cell.multihop:
            extra.append("multihop 2;")
            # BIRD resolves a multihop neighbour through its own table: the lab's
            # static route to our loopback, as an operator would write it.
            static = (
                "protocol static {\n  ipv4;\n"
                f"  route {spk.lo4}/32 via {spk.addr4(host.name)};\n}}\n"
            )
        if cell.variant == "md5":
            extra.append(f'password "{PASSWORD}";')
        self.family = "ipv6" if cell.family == 6 else "ipv4"
        bgp = bgp_protocol(
            local=ends.router, local_as=ROUTER_AS, neighbor=ends.speaker, peer_as=SPEAKER_AS,
            family=self.family, import_="all", export="none", extra="\n".join(extra),
        )  # fmt: skip
        self.bird = Bird(host, router_id=str(host.lo4), config=bfd + static + bgp)

    def start(self) -> BirdRouter:
        self.bird.start()
        self.ctl = self.bird.control()
        return self

    def established(self) -> bool:
        return "Established" in self.bird.birdc("show", "protocols", "bgp1")

    def has_route(self) -> bool:
        code, out = self.ctl.command(f"show route {self.cell.prefix} protocol bgp1")
        return code == 0 and self.cell.prefix in out  # else 8001 Network not found

    def bfd_up(self) -> bool:
        return self.bird.bfd_sessions().get(self.ends.speaker, {}).get("state") == "Up"

    def sessions_established(self) -> int | None:
        # BIRD's log (``log ... all``) has one line per session that came up.
        assert self.bird.proc is not None
        log = self.bird.host.lab.dir / f"{self.bird.host.name}-{self.bird.name}.birdlog"
        try:
            text = log.read_text(errors="replace")
        except OSError:
            return None
        return sum(1 for line in text.splitlines() if "bgp1: State changed to up" in line)

    def describe(self) -> str:
        return self.bird.protocols_all() + "\n" + self.bird.birdc("show", "bfd", "sessions")

    def close(self) -> None:
        self.ctl.close()


# ---- gobgpd and ExaBGP, with FRR bfdd beside them ------------------------------------


def bfdd_beside(host: Host, ends: Ends, *, bfd_ms: int) -> FRR:
    """FRR bfdd as a static BFD peer at the router's address (not coupled to BGP)."""
    multihop = ends.interface is None
    interface = None if multihop else "to-spk"
    block = bfd_peer_block(ends.speaker, local=ends.router, multihop=multihop,
                           interface=interface, tx=bfd_ms, rx=bfd_ms)  # fmt: skip
    return FRR(host, bfdd=bfdd_config([block]))


class GobgpRouter(Router):
    """gobgpd, passive towards us, with FRR bfdd beside it."""

    label = "gobgpd + FRR bfdd"
    # GoBGP's FSM keeps a peer whose session went down Idle for HOLDTIME_IDLE = 5 s
    # (pkg/server/fsm.go), refusing its connections meanwhile; not configurable in 3.10.
    idle_hold_s = 5.0

    def __init__(self, cell: Cell, ends: Ends, host: Host, *, bfd_ms: int) -> None:
        super().__init__(cell, ends)
        password = PASSWORD if cell.variant == "md5" else None
        neighbors = neighbor_toml(ends.speaker, SPEAKER_AS, passive=True, password=password)
        self.gobgp = GoBGP(host, asn=ROUTER_AS, router_id=str(host.lo4), neighbors=neighbors)
        self.bfdd = bfdd_beside(host, ends, bfd_ms=bfd_ms)

    def start(self) -> GobgpRouter:
        self.bfdd.start()
        self.gobgp.start()
        return self

    def established(self) -> bool:
        return self.gobgp.session_state(self.ends.speaker) == "established"

    def has_route(self) -> bool:
        return self.cell.prefix in self.gobgp.rib()

    def bfd_up(self) -> bool:
        return _frr_bfd_up(self.bfdd, self.ends.speaker)

    def sessions_established(self) -> int | None:
        flops, _opens = self.gobgp.resets(self.ends.speaker)
        return flops + (1 if self.established() else 0)

    def describe(self) -> str:
        return json.dumps(self.gobgp.neighbor(self.ends.speaker).get("state"))


class ExabgpRouter(Router):
    """ExaBGP 5 as operators run it (connects out, does not listen), reporting what
    it receives through an API process (lab/exabgp_sink.py), with FRR bfdd beside it."""

    label = "ExaBGP + FRR bfdd"

    def __init__(self, cell: Cell, ends: Ends, host: Host, *, bfd_ms: int) -> None:
        super().__init__(cell, ends)
        self.messages = host.lab.dir / f"{host.name}-exabgp-api.jsonl"
        sink = Path(__file__).resolve().parent / "exabgp_sink.py"
        family = "ipv6" if cell.family == 6 else "ipv4"
        config = f"""
process sink {{
  run {sys.executable} {sink} {self.messages};
  encoder json;
}}
neighbor {ends.speaker} {{
  router-id {host.lo4};
  local-address {ends.router};
  local-as {ROUTER_AS};
  peer-as {SPEAKER_AS};
  family {{ {family} unicast; }}
  api {{
    processes [ sink ];
    neighbor-changes;
    receive {{ parsed; update; }}
  }}
}}
"""
        self.exabgp = ExaBGP(host, config=config)
        self.bfdd = bfdd_beside(host, ends, bfd_ms=bfd_ms)

    def start(self) -> ExabgpRouter:
        self.bfdd.start()
        self.exabgp.start()
        return self

    def _replay(self) -> tuple[str, set[str], int]:
        """(last neighbor state, routes held, sessions that came up) from the API log."""
        state, routes, ups = "down", set[str](), 0
        try:
            lines = self.messages.read_text(errors="replace").splitlines()
        except OSError:
            return state, routes, ups
        for line in lines:
            try:
                msg: dict[str, Any] = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line still being written
            neighbor = msg.get("neighbor", {})
            if msg.get("type") == "state":
                state = neighbor.get("state", state)
                if state == "up":
                    ups += 1
                elif state == "down":
                    routes.clear()  # the session's routes go with it
            elif msg.get("type") == "update":
                update = neighbor.get("message", {}).get("update", {})
                for by_hop in update.get("announce", {}).values():
                    for nlris in by_hop.values():
                        routes.update(n["nlri"] for n in nlris)
                for nlris in update.get("withdraw", {}).values():
                    routes.difference_update(n["nlri"] for n in nlris)
        return state, routes, ups

    def established(self) -> bool:
        return self._replay()[0] == "up"

    def has_route(self) -> bool:
        state, routes, _ = self._replay()
        return state == "up" and self.cell.prefix in routes

    def bfd_up(self) -> bool:
        return _frr_bfd_up(self.bfdd, self.ends.speaker)

    def sessions_established(self) -> int | None:
        return self._replay()[2]

    def describe(self) -> str:
        return self.exabgp.proc.log_tail(15) if self.exabgp.proc else ""


def start_router(cell: Cell, lab: Lab, ends: Ends, *, bfd_ms: int) -> Router:
    rtr, spk = lab["rtr1"], lab["spk"]
    router: Router
    if cell.router == "frr":
        router = FrrRouter(cell, ends, rtr, bfd_ms=bfd_ms)
    elif cell.router == "bird":
        router = BirdRouter(cell, ends, rtr, spk, bfd_ms=bfd_ms)
    elif cell.router == "gobgp":
        router = GobgpRouter(cell, ends, rtr, bfd_ms=bfd_ms)
    elif cell.router == "exabgp":
        router = ExabgpRouter(cell, ends, rtr, bfd_ms=bfd_ms)
    else:
        raise LabError(f"no such router in the matrix: {cell.router}")
    return router.start()
