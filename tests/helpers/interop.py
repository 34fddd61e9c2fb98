"""Our speaker and the routers in a netns lab (see lab/): configs, daemons, waiting."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from lab import Lab
from lab.frr import FRR, bfd_peer_block, bfdd_config, bgpd_config
from lab.gobgp import GoBGP, neighbor_toml
from lab.ours import OurSpeaker
from lab.proc import LabError, ProcessDied
from speaker.control import ControlError, request

VIP = "198.19.0.10/32"
VIP2 = "198.19.0.11/32"


def gobgp_and_bfdd(lab: Lab, name: str, *, ms: int = 50) -> tuple[GoBGP, FRR]:
    """gobgpd (AS 64512, passive towards spk) and FRR bfdd at the router's address."""
    rtr, spk = lab[name], lab["spk"]
    r_addr, s_addr = str(rtr.addr4("spk")), str(spk.addr4(name))
    gobgp = GoBGP(
        rtr, asn=64512, router_id=r_addr,
        neighbors=neighbor_toml(s_addr, 64513, passive=True, hold_time=9, keepalive=3),
    ).start()  # fmt: skip
    bfd = FRR(rtr, bfdd=bfdd_config([
        bfd_peer_block(s_addr, local=r_addr, interface="to-spk", tx=ms, rx=ms)
    ])).start()  # fmt: skip
    return gobgp, bfd


def peer_block(lab: Lab, name: str, profile: str = "fast") -> str:
    rtr, spk = lab[name], lab["spk"]
    return f"""
[[peers]]
name = "{name}"
peer_address = "{rtr.addr4("spk")}"
peer_asn = 64512
source_address = "{spk.addr4(name)}"
interface = "to-{name}"
bfd_profile = "{profile}"
hold_time = "9s"
"""


def speaker_config(lab: Lab, peers: list[str], *, extra: str = "", ms: int = 50) -> str:
    state = lab.dir / "speaker-state.json"
    return f"""
[speaker]
router_id = "{lab["spk"].addr4(peers[0])}"
my_asn = 64513
hold_down = "1s"
state_file = "{state}"

[[bfd_profiles]]
name = "fast"
transmit_interval = {ms}
receive_interval = {ms}
detect_multiplier = 3

{"".join(peer_block(lab, p) for p in peers)}

[[pools]]
name = "vips"
addresses = ["198.19.0.0/24"]

[[advertisements]]
name = "to-routers"
communities = ["65000:100", "no-export", "large:64513:1:2"]
{extra}
"""


SERVICES = """
[[services]]
name = "web"
address = "198.19.0.10"

[[services]]
name = "api"
address = "198.19.0.11"
"""


def established_and_announced(gobgp: GoBGP, *prefixes: str, timeout: float = 20.0) -> None:
    gobgp.wait_rib(lambda r: all(p in r for p in prefixes), timeout=timeout, what=str(prefixes))


def frr_router(lab: Lab, *, passive: bool, multihop: bool = False) -> FRR:
    rtr, spk = lab["rtr1"], lab["spk"]
    s_addr = str(spk.addr4("rtr1"))
    neighbors = [
        f"neighbor {s_addr} remote-as 64513",
        f"neighbor {s_addr} timers 3 9",
        f"neighbor {s_addr} timers connect 1",
        f"neighbor {s_addr} bfd",
        f"neighbor {s_addr} bfd 3 50 50",
    ]
    if passive:
        neighbors.append(f"neighbor {s_addr} passive")
    if multihop:
        neighbors.insert(1, f"neighbor {s_addr} ebgp-multihop 255")
    return FRR(rtr, bfdd="bfd\n!\n", bgpd=bgpd_config(64512, str(rtr.lo4), neighbors),
               debug=True).start()  # fmt: skip


def frr_coupled_speaker_config(lab: Lab, *, strict: bool, multihop: bool = False) -> str:
    rtr, spk = lab["rtr1"], lab["spk"]
    return f"""
[speaker]
router_id = "{spk.addr4("rtr1")}"
my_asn = 64513
hold_down = "1s"
state_file = "{lab.dir / "speaker-state.json"}"

[[bfd_profiles]]
name = "fast"
transmit_interval = 50
receive_interval = 50
detect_multiplier = 3

[[peers]]
name = "rtr1"
peer_address = "{rtr.addr4("spk")}"
peer_asn = 64512
bfd_profile = "fast"
bfd_strict = {"true" if strict else "false"}
ebgp_multihop = {"true" if multihop else "false"}
hold_time = "9s"

[[pools]]
name = "vips"
addresses = ["198.19.0.0/24"]

[[advertisements]]
name = "to-routers"

[[services]]
name = "web"
address = "198.19.0.10"
"""


class Ours:
    """Our speaker's view through its control socket (``speaker show ... --json``)."""

    def __init__(self, speaker: OurSpeaker, socket: str) -> None:
        self.speaker, self.socket = speaker, socket

    def _ask(self, command: str) -> Any:
        assert self.speaker.proc is not None
        self.speaker.proc.check_alive("speaker")
        try:
            return request(self.socket, command, timeout=5.0)
        except (OSError, ControlError) as exc:
            raise LabError(f"control socket: {exc}") from exc

    def bgp(self) -> dict[str, Any]:
        rows: list[dict[str, Any]] = self._ask("show bgp summary")["peers"]
        (row,) = rows
        return row

    def bfd(self) -> dict[str, Any]:
        peers = self._ask("show bfd peers")
        return peers[0] if peers else {}

    def bfd_downs(self) -> int:
        peers = self._ask("show bfd peers counters")["peers"]
        return int(peers[0]["session-down"]) if peers else 0


def poll(probe: Callable[[], bool], timeout: float) -> tuple[float | None, float]:
    """Call ``probe`` back to back until it is true: (monotonic time at the end of the
    call that saw it, or None at the timeout; duration of the last call). A LabError
    (a daemon busy or restarting) counts as false; a dead speaker ends the cell."""
    deadline = time.monotonic() + timeout
    took = 0.0
    while True:
        start = time.monotonic()
        try:
            hit = probe()
        except ProcessDied:
            raise
        except LabError:
            hit = False
        end = time.monotonic()
        took = end - start
        if hit:
            return end, took
        if end >= deadline:
            return None, took
