"""Delay packets through an NFQUEUE: a stand-in for ``tc qdisc ... netem delay``.

The lab kernel has no ``sch_netem``, but it can queue packets to userspace. This
module is a tiny stdlib-only NFQUEUE client: it binds one queue, learns each queued
packet's id (metadata copy only, the payload never reaches us), and issues an
``NF_ACCEPT`` verdict for it ``delay ± jitter`` milliseconds later.

Run it inside the namespace whose traffic should be delayed (cwd /work/main)::

    ip netns exec NS /work/main/.venv/bin/python -m lab.nfqdelay \\
        --queue 7 --delay-ms 40 [--jitter-ms 10] [--seed 1] [--maxlen 10000] [--fail-open]

It prints ``ready queue=7`` (flushed) once the queue is bound, so start it first, wait
for that line, then steer packets into the queue in the same namespace. This kernel has
no nft ``queue`` expression (CONFIG_NFT_QUEUE is off: nft says "Could not process rule:
No such file or directory"), but it has xtables' NFQUEUE target, which iptables-nft
installs through nft_compat (Debian package ``iptables``)::

    iptables  -A OUTPUT -p udp --dport 3784 -j NFQUEUE --queue-num 7 --queue-bypass
    ip6tables -A OUTPUT -p udp --dport 3784 -j NFQUEUE --queue-num 7 --queue-bypass

(On a kernel with CONFIG_NFT_QUEUE the nft equivalent is
``nft add rule inet labfault output udp dport 3784 queue num 7 bypass``.) For a match
only nft can express, mark the packet in an nft chain that runs first (priority -1,
``meta mark set 0x7``) and queue on the mark: ``iptables -A OUTPUT -m mark --mark 0x7
-j NFQUEUE --queue-num 7 --queue-bypass``.

``--queue-bypass`` makes the kernel accept packets while nobody listens on the queue
(before the delayer is up, after it exits or dies); without it they are dropped.
Direction follows the hook: in ``OUTPUT`` the delay applies to packets leaving the
host, in ``INPUT`` to packets arriving for it (``FORWARD`` for routed traffic).
Delaying both ways means two rules (they may share one queue and one delayer).

Semantics, compared with netem:

* jitter is uniform in ``[delay - jitter, delay + jitter]``, clamped at 0; like netem,
  jitter reorders packets. With jitter 0 release order is arrival order (FIFO).
* the delay starts when the packet reaches this process (tens of microseconds after
  the hook) and ends when the verdict is sent; Python adds roughly 0.1 ms.
* overload (``--maxlen`` packets held, or the netlink socket buffer full, which shows
  up here as ENOBUFS) drops packets in the kernel, like netem's ``limit``; with
  ``--fail-open`` the kernel accepts them undelayed instead. Either way the count of
  ENOBUFS is printed when the delayer exits.
* SIGTERM/SIGINT: every held packet is accepted at once, the queue is unbound, exit 0.
  A packet queued in the microseconds between that flush and the unbind is dropped by
  the kernel; SIGKILL drops all held packets (the kernel unbinds a closed socket).
"""

from __future__ import annotations

import argparse
import errno
import heapq
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Iterator
from types import FrameType

# Not exported by Python's socket module; values from linux/netlink.h and asm/socket.h.
NETLINK_NETFILTER = 12
SO_RCVBUFFORCE = 33

# linux/netlink.h
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 0x2

# linux/netfilter/nfnetlink.h, nfnetlink_queue.h
NFNL_SUBSYS_QUEUE = 3
NFNETLINK_V0 = 0
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQNL_CFG_CMD_BIND = 1
NFQNL_CFG_CMD_UNBIND = 2
NFQNL_COPY_META = 1
NFQA_CFG_F_FAIL_OPEN = 0x1
NF_ACCEPT = 1

NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid (host order)
NFGENMSG = struct.Struct("!BBH")  # family, version, res_id (big-endian queue number)
NLATTR = struct.Struct("=HH")  # nla_len, nla_type (host order)
RCVBUF = 8 << 20  # held packets cost nothing here; bursts must not overflow the socket
VERDICT_BATCH = 1024  # verdicts per send: 32 KiB, well under the default send buffer


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attr(kind: int, payload: bytes) -> bytes:
    raw = NLATTR.pack(NLATTR.size + len(payload), kind) + payload
    return raw + b"\0" * (_align(len(raw)) - len(raw))


def nfq_message(
    msg: int, queue: int, attrs: bytes, *, seq: int, flags: int = NLM_F_REQUEST
) -> bytes:
    """One nfnetlink queue message: nlmsghdr + nfgenmsg + attributes."""
    body = NFGENMSG.pack(socket.AF_UNSPEC, NFNETLINK_V0, queue) + attrs
    kind = (NFNL_SUBSYS_QUEUE << 8) | msg
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def verdict_message(queue: int, packet_id: int, *, seq: int, verdict: int = NF_ACCEPT) -> bytes:
    attrs = _attr(NFQA_VERDICT_HDR, struct.pack("!II", verdict, packet_id))
    return nfq_message(NFQNL_MSG_VERDICT, queue, attrs, seq=seq)


def config_command(command: int) -> bytes:
    # pf is only read by the obsolete PF_(UN)BIND commands.
    return _attr(NFQA_CFG_CMD, struct.pack("!BxH", command, socket.AF_UNSPEC))


def config_params(maxlen: int, fail_open: bool) -> bytes:
    attrs = _attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))
    attrs += _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", maxlen))
    flags = NFQA_CFG_F_FAIL_OPEN if fail_open else 0
    attrs += _attr(NFQA_CFG_MASK, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN))
    attrs += _attr(NFQA_CFG_FLAGS, struct.pack("!I", flags))
    return attrs


def parse_messages(buf: bytes) -> Iterator[tuple[int, int, bytes]]:
    """Yield (type, seq, payload after nlmsghdr) for each netlink message in ``buf``."""
    off = 0
    while off + NLMSGHDR.size <= len(buf):
        length, kind, _flags, seq, _pid = NLMSGHDR.unpack_from(buf, off)
        if length < NLMSGHDR.size or off + length > len(buf):
            return  # truncated or corrupt: nothing sane left to read
        yield kind, seq, buf[off + NLMSGHDR.size : off + length]
        off += _align(length)


def packet_id(payload: bytes) -> int | None:
    """The packet id in an NFQNL_MSG_PACKET payload (nfgenmsg + attributes), if any."""
    off = NFGENMSG.size
    while off + NLATTR.size <= len(payload):
        length, kind = NLATTR.unpack_from(payload, off)
        if length < NLATTR.size:
            return None
        # Strip NLA_F_NESTED / NLA_F_NET_BYTEORDER, which share the type field.
        if kind & 0x3FFF == NFQA_PACKET_HDR and length >= NLATTR.size + 4:
            return int(struct.unpack_from("!I", payload, off + NLATTR.size)[0])
        off += _align(length)
    return None


class NetlinkError(OSError):
    pass


class Delayer:
    """Holds queued packet ids in a heap keyed on release time and accepts them when due."""

    def __init__(self, queue: int, delay_ms: float, jitter_ms: float, rng: random.Random) -> None:
        self.queue = queue
        self.delay = delay_ms / 1000.0
        self.jitter = jitter_ms / 1000.0
        self.rng = rng
        # (release time, arrival counter, packet id): the counter keeps FIFO order on
        # equal release times and never compares ids, which wrap at 2**32.
        self.held: list[tuple[float, int, int]] = []
        self.arrivals = 0
        self.accepted = 0
        self.enobufs = 0
        self.verdict_errors = 0
        self.seq = 0
        self.awaiting: set[int] = set()  # seqs of config requests not yet acked
        self.acks: dict[int, int] = {}  # seq -> errno (0: success)
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
        except PermissionError:  # without CAP_NET_ADMIN only up to rmem_max
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        self.sock.bind((0, 0))
        self.buf = bytearray(1 << 16)

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def request(self, attrs: bytes, what: str) -> None:
        """Send one config message with NLM_F_ACK and wait for its ack (packets queued
        meanwhile are handled as usual)."""
        seq = self._next_seq()
        self.awaiting.add(seq)
        self.sock.send(
            nfq_message(
                NFQNL_MSG_CONFIG, self.queue, attrs, seq=seq, flags=NLM_F_REQUEST | NLM_F_ACK
            )
        )
        deadline = time.monotonic() + 5.0
        while seq not in self.acks:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                self.awaiting.discard(seq)
                raise NetlinkError(errno.ETIMEDOUT, f"{what}: no answer from the kernel")
            self.receive()
        err = self.acks.pop(seq)
        if err:
            hint = {
                # The kernel says EPERM both when another socket owns the queue and
                # when we lack CAP_NET_ADMIN; EBUSY only when this socket bound it.
                errno.EPERM: " (queue bound by another process, or no CAP_NET_ADMIN)",
                errno.EBUSY: " (already bound by this socket)",
            }.get(err, "")
            raise NetlinkError(err, f"{what} queue {self.queue}: {os.strerror(err)}{hint}")

    def receive(self, budget: int = 512) -> None:
        """Read what the socket has now, without blocking, at most ``budget`` datagrams
        so that a flood cannot starve the releases."""
        for _ in range(budget):
            try:
                n = self.sock.recv_into(self.buf, len(self.buf), socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                # The kernel could not deliver some packet messages; those packets were
                # dropped (or, with --fail-open, accepted) there, nothing is stuck.
                if self.enobufs == 0:
                    print("nfqdelay: ENOBUFS, socket buffer overflowed", flush=True)
                self.enobufs += 1
                continue
            self.dispatch(bytes(self.buf[:n]))

    def dispatch(self, data: bytes) -> None:
        now = time.monotonic()
        for kind, seq, payload in parse_messages(data):
            if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                pid = packet_id(payload)
                if pid is not None:
                    self.hold(pid, now)
            elif kind == NLMSG_ERROR:
                err = -struct.unpack_from("=i", payload)[0]
                if seq in self.awaiting:
                    self.awaiting.discard(seq)
                    self.acks[seq] = err
                elif err:
                    # Verdicts carry no NLM_F_ACK, so only failures come back.
                    self.verdict_errors += 1

    def hold(self, pid: int, now: float) -> None:
        delay = self.delay
        if self.jitter:
            delay = max(0.0, delay + self.rng.uniform(-self.jitter, self.jitter))
        self.arrivals += 1
        heapq.heappush(self.held, (now + delay, self.arrivals, pid))

    def release(self, now: float) -> None:
        """Accept every packet due by ``now``, in one send: the kernel processes each
        netlink message of a datagram in turn."""
        out = []
        while self.held and self.held[0][0] <= now:
            _, _, pid = heapq.heappop(self.held)
            out.append(verdict_message(self.queue, pid, seq=self._next_seq()))
        # Netlink refuses a datagram larger than the socket's send buffer (EMSGSIZE).
        for i in range(0, len(out), VERDICT_BATCH):
            self.sock.send(b"".join(out[i : i + VERDICT_BATCH]))
        self.accepted += len(out)

    def timeout(self) -> float | None:
        if not self.held:
            return None
        return max(0.0, self.held[0][0] - time.monotonic())


def run(args: argparse.Namespace) -> int:
    stop_r, stop_w = socket.socketpair()
    stop_r.setblocking(False)
    stop_w.setblocking(False)
    # Signals only write a byte to stop_w; the select loop notices it, so a signal never
    # interrupts us halfway through a verdict batch.
    signal.set_wakeup_fd(stop_w.fileno())
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    d = Delayer(args.queue, args.delay_ms, args.jitter_ms, random.Random(args.seed))
    try:
        d.request(config_command(NFQNL_CFG_CMD_BIND), "bind")
        d.request(config_params(args.maxlen, args.fail_open), "configure")
    except NetlinkError as exc:
        print(f"nfqdelay: {exc.strerror}", file=sys.stderr, flush=True)
        return 1
    print(f"ready queue={args.queue}", flush=True)

    while not stopping:
        readable = select.select([d.sock, stop_r], [], [], d.timeout())[0]
        if d.sock in readable:
            d.receive()
        d.release(time.monotonic())

    # Shutting down: nothing may stay queued (unbinding would drop it), so accept all
    # held packets now, plus whatever arrived meanwhile, then leave the queue.
    d.receive(budget=1 << 20)
    d.release(float("inf"))
    try:
        d.request(config_command(NFQNL_CFG_CMD_UNBIND), "unbind")
    except NetlinkError as exc:
        print(f"nfqdelay: {exc.strerror}", file=sys.stderr, flush=True)
    print(
        f"done queue={args.queue} accepted={d.accepted} enobufs={d.enobufs} "
        f"verdict_errors={d.verdict_errors}",
        flush=True,
    )
    d.sock.close()
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m lab.nfqdelay", description="Delay packets of an NFQUEUE, like netem delay."
    )
    p.add_argument("--queue", type=int, required=True, help="NFQUEUE number (0-65535)")
    p.add_argument("--delay-ms", type=float, required=True)
    p.add_argument("--jitter-ms", type=float, default=0.0, help="uniform ± around the delay")
    p.add_argument("--seed", type=int, default=None, help="seed the jitter for repeatable runs")
    p.add_argument("--maxlen", type=int, default=10000, help="packets held at most (kernel)")
    p.add_argument(
        "--fail-open", action="store_true", help="on overload accept packets undelayed, not drop"
    )
    args = p.parse_args(argv)
    if not 0 <= args.queue <= 0xFFFF:
        p.error("--queue must be 0-65535")
    if args.delay_ms < 0 or args.jitter_ms < 0:
        p.error("--delay-ms and --jitter-ms must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
