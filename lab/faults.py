"""Fault injection: drops, delay/loss, link down, frozen daemons.

Every helper returns a :class:`Fault` stamped with the moment the fault took effect
(``time.monotonic()`` and ``time.time()`` read right after the command that installs
it returned, plus ``before_*`` stamps read just before it was issued, so the true
moment lies in ``[before, at]``). Capture timestamps (``lab.capture``) are wall
clock, so compare them against ``t_wall``.

Faults are undone with :meth:`Fault.undo` (which returns the moment of undoing), and
vanish anyway when the lab's namespaces are deleted. A frozen process is thawed by
the lab's teardown, which sends SIGCONT along with SIGTERM.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import attrs

from lab.netns import Host
from lab.proc import Process, wait_until

BFD_PORTS = "{ 3784, 4784, 3785 }"


@attrs.frozen
class Moment:
    """When something took effect, bracketed by stamps from before and after."""

    t_mono: float
    t_wall: float
    before_mono: float
    before_wall: float

    @staticmethod
    def of(action: Callable[[], object]) -> Moment:
        bm, bw = time.monotonic(), time.time()
        action()
        return Moment(t_mono=time.monotonic(), t_wall=time.time(), before_mono=bm, before_wall=bw)


@attrs.define
class Fault:
    kind: str
    description: str
    at: Moment
    _undo: Callable[[], object] | None = None
    undone_at: Moment | None = None

    @property
    def t_mono(self) -> float:
        return self.at.t_mono

    @property
    def t_wall(self) -> float:
        return self.at.t_wall

    def undo(self) -> Moment:
        if self.undone_at is None:
            self.undone_at = Moment.of(self._undo or (lambda: None))
        return self.undone_at


# ---- nftables drops -------------------------------------------------------------

_TABLE = "inet labfault"


def _ensure_table(host: Host) -> None:
    if host.run("nft", "list", "table", *_TABLE.split(), check=False).returncode == 0:
        return
    script = (
        f"add table {_TABLE}\n"
        f"add chain {_TABLE} input {{ type filter hook input priority -10 ; }}\n"
        f"add chain {_TABLE} output {{ type filter hook output priority -10 ; }}\n"
        f"add chain {_TABLE} forward {{ type filter hook forward priority -10 ; }}\n"
    )
    host.run("nft", "-f", "-", input=script)


def drop(host: Host, match: str, *, direction: str, verdict: str = "drop") -> Fault:
    """Drop packets matching an nft expression, ``direction`` "in", "out" of ``host``, or
    "forward" (routed through it).

    Example: ``drop(spk, "udp dport 3784", direction="out")`` silences spk's BFD.
    """
    chains = {"in": "input", "out": "output", "forward": "forward"}
    if direction not in chains:
        raise ValueError(f"direction must be 'in', 'out' or 'forward', not {direction!r}")
    chain = chains[direction]
    _ensure_table(host)
    comment = f"lab-{time.monotonic_ns()}"
    # nft wants the comment last, after the verdict.
    rule = f'{match} counter {verdict} comment "{comment}"'

    def install() -> None:
        host.run("nft", "add", "rule", *_TABLE.split(), chain, *rule.split())

    def remove() -> None:
        out = host.run("nft", "-a", "list", "chain", *_TABLE.split(), chain).stdout
        for line in out.splitlines():
            if comment in line and "# handle" in line:
                handle = line.rsplit("# handle", 1)[1].strip()
                host.run("nft", "delete", "rule", *_TABLE.split(), chain, "handle", handle)

    return Fault("drop", f"{host.name} {direction}: {match}", Moment.of(install), remove)


def drop_bfd(host: Host, *, direction: str) -> Fault:
    """Drop every BFD packet (control single/multihop and echo) in one direction."""
    return drop(host, f"udp dport {BFD_PORTS}", direction=direction)


def drop_bfd_towards(host: Host, address: str) -> Fault:
    """On a router: drop every BFD packet it sends or forwards to ``address`` (its own
    control and echo packets, and the other end's echoes it loops back), atomically.

    Unlike a drop at the receiving host's input, this also silences what packet
    sockets there would see (an echo link or echo reflector reads frames before
    netfilter runs)."""
    _ensure_table(host)
    comment = f"lab-{time.monotonic_ns()}"
    family = "ip6" if ":" in address else "ip"
    rule = f'{family} daddr {address} udp dport {BFD_PORTS} counter drop comment "{comment}"'
    script = "".join(f"add rule {_TABLE} {chain} {rule}\n" for chain in ("output", "forward"))

    def remove() -> None:
        for chain in ("output", "forward"):
            out = host.run("nft", "-a", "list", "chain", *_TABLE.split(), chain).stdout
            for line in out.splitlines():
                if comment in line and "# handle" in line:
                    handle = line.rsplit("# handle", 1)[1].strip()
                    host.run("nft", "delete", "rule", *_TABLE.split(), chain, "handle", handle)

    at = Moment.of(lambda: host.run("nft", "-f", "-", input=script))
    return Fault("drop", f"{host.name} out+forward: BFD to {address}", at, remove)


def drop_counters(host: Host) -> str:
    """The nft ruleset with packet counters, for a test's failure message."""
    return host.run("nft", "list", "table", *_TABLE.split(), check=False).stdout


# ---- loss and delay -------------------------------------------------------------
# This kernel (like many CI kernels) has no sch_netem, so loss is an nft rule with a
# random number per packet, and delay a userspace NFQUEUE holder (lab.nfqdelay).


def loss(host: Host, match: str, *, direction: str, percent: float) -> Fault:
    """Drop ``percent`` % of the packets matching ``match``, at random, in one direction."""
    if not 0 < percent <= 100:
        raise ValueError(f"percent must be in (0, 100], not {percent}")
    # numgen draws 0..9999 per packet: resolution 0.01 %.
    threshold = round(percent * 100)
    sample = f" numgen random mod 10000 < {threshold}" if threshold < 10000 else ""
    fault = drop(host, match + sample, direction=direction)
    return attrs.evolve(
        fault, kind="loss", description=f"{host.name} {direction}: {match} {percent}%"
    )


_queue_numbers = itertools.count(100)


def delay(
    host: Host, match: str, *, direction: str, delay_ms: float, jitter_ms: float = 0.0
) -> Fault:
    """Hold packets matching ``match`` for ``delay_ms`` (± uniform ``jitter_ms``).

    Packets go through an NFQUEUE to a lab.nfqdelay process in ``host``. This kernel
    has no nft ``queue`` statement, so an nft rule (in the fault table, which runs
    before iptables' filter chains) marks the packets and an iptables NFQUEUE rule
    queues the marked ones; ``--queue-bypass`` lets them through unharmed if the
    delayer is gone. Undo removes both rules, then stops the delayer (which releases
    whatever it still holds).
    """
    queue = next(_queue_numbers)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    argv = [
        sys.executable, "-m", "lab.nfqdelay", "--queue", str(queue),
        "--delay-ms", str(delay_ms), "--jitter-ms", str(jitter_ms),
    ]  # fmt: skip
    proc = host.popen(f"nfqdelay-{queue}", argv, env=env)
    wait_until(
        lambda: _check_ready(proc), timeout=10.0, what=f"nfqdelay queue {queue} in {host.name}"
    )
    chain = "INPUT" if direction == "in" else "OUTPUT"
    queue_rule = [
        chain, "-m", "mark", "--mark", hex(queue), "-j", "NFQUEUE",
        "--queue-num", str(queue), "--queue-bypass",
    ]  # fmt: skip
    for tool in ("iptables", "ip6tables"):
        host.run(tool, "-A", *queue_rule)
    marking = drop(host, match, direction=direction, verdict=f"meta mark set {hex(queue)}")

    def undo() -> None:
        marking.undo()
        for tool in ("iptables", "ip6tables"):
            host.run(tool, "-D", *queue_rule, check=False)
        proc.stop()

    return Fault(
        "delay",
        f"{host.name} {direction}: {match} delay {delay_ms}±{jitter_ms} ms",
        marking.at,
        undo,
    )


def _check_ready(proc: Process) -> bool:
    proc.check_alive("nfqdelay")
    return "ready" in proc.log_tail(5)


# ---- links ------------------------------------------------------------------------


def link_down(host: Host, iface: str) -> Fault:
    """Take ``iface`` down in ``host`` (the peer sees carrier loss); undo brings it up."""

    def down() -> None:
        host.run("ip", "link", "set", "dev", iface, "down")

    def up() -> None:
        host.run("ip", "link", "set", "dev", iface, "up")

    return Fault("link", f"{host.name} {iface} down", Moment.of(down), up)


# ---- processes ----------------------------------------------------------------------


def freeze(proc: Process | int) -> Fault:
    """SIGSTOP a daemon (by PID); undo sends SIGCONT."""
    pid = proc if isinstance(proc, int) else proc.pid
    return Fault(
        "freeze",
        f"SIGSTOP pid {pid}",
        Moment.of(lambda: os.kill(pid, signal.SIGSTOP)),
        lambda: os.kill(pid, signal.SIGCONT),
    )
