"""A data-plane probe for failover benchmarks: a UDP responder on each node and a
client that sends one probe every millisecond and records every answer.

    python -m lab.dataplane respond --port 9000 --name n1
    python -m lab.dataplane probe --target 198.19.0.10 --port 9000 --sport 40000 \\
        --interval-ms 1 --out FILE

The responder answers each datagram with its sequence number and the node's name.
It ignores send errors: when a fault drops its output (nft returns EPERM) it must
live on, or the node would blackhole the flow once the fault is undone.

The prober prints a JSON line ``{"event": "first", "node": ...}`` at its first
answer (so a benchmark learns which node carries the flow), runs until SIGTERM, then
writes ``{"interval_ms", "sends": [[seq, t_wall], ...], "replies": [[seq, t_wall,
node], ...]}`` to ``--out`` (wall-clock times, the clock of packet captures and
``lab.faults``). A fixed source port keeps the 5-tuple, so the router's ECMP hash
keeps the flow on one node until a next hop goes away.
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

SEQ = struct.Struct("!Q")


def respond(port: int, name: str) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    tag = name.encode()
    print(json.dumps({"event": "ready", "node": name}), flush=True)
    while True:
        try:
            data, addr = sock.recvfrom(2048)
        except OSError:
            continue
        try:
            sock.sendto(data[: SEQ.size] + tag, addr)
        except OSError:
            continue  # EPERM from an nft drop, unreachable...: keep answering later


def probe(target: str, port: int, sport: int, interval_ms: float, out: Path) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    sock.bind(("0.0.0.0", sport))
    sock.settimeout(0.2)
    stop = threading.Event()
    sends: list[list[Any]] = []
    replies: list[list[Any]] = []

    def on_term(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    def sender() -> None:
        interval = interval_ms / 1000
        seq = 0
        next_at = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            if now < next_at:
                time.sleep(next_at - now)
            try:
                sock.sendto(SEQ.pack(seq), (target, port))
                sends.append([seq, time.time()])
            except OSError:
                sends.append([seq, time.time()])  # counts as sent, and lost
            seq += 1
            next_at += interval
            if time.monotonic() - next_at > 5 * interval:  # fell behind: no bursts
                next_at = time.monotonic() + interval

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    first = True
    while not stop.is_set():
        try:
            data, _ = sock.recvfrom(2048)
        except TimeoutError:
            continue
        except OSError:
            continue  # ICMP errors (no route while the router reconverges)
        t = time.time()
        if len(data) < SEQ.size:
            continue
        node = data[SEQ.size :].decode(errors="replace")
        replies.append([SEQ.unpack_from(data)[0], t, node])
        if first:
            print(json.dumps({"event": "first", "node": node}), flush=True)
            first = False
    thread.join(1.0)
    out.write_text(json.dumps({"interval_ms": interval_ms, "sends": sends, "replies": replies}))
    print(json.dumps({"event": "written", "sends": len(sends), "replies": len(replies)}),
          flush=True)  # fmt: skip
    return 0


def analyse(data: dict[str, Any], t0: float, settle_s: float = 0.3) -> dict[str, Any]:
    """Gap and loss around a fault at wall time ``t0``.

    ``gap_ms``: the longest time between two consecutive answers, over the answers
    from the last one before ``t0`` on; ``lost``: probes sent after ``t0`` (up to
    ``settle_s`` before the prober stopped, so answers still in flight do not count)
    that got no answer; ``before``/``after``: the node answering before and after.
    """
    sends: list[list[Any]] = data["sends"]
    replies = sorted(data["replies"], key=lambda r: r[1])
    answered = {r[0] for r in replies}
    end = sends[-1][1] - settle_s if sends else t0
    after_t0 = [s for s in sends if t0 <= s[1] <= end]
    lost = [s for s in after_t0 if s[0] not in answered]
    pre = [r for r in replies if r[1] < t0]
    post = [r for r in replies if r[1] >= t0]
    window = pre[-1:] + post
    gap = max((b[1] - a[1] for a, b in itertools.pairwise(window)), default=None)
    # Where the longest gap sits, and the last answer of the old node.
    return {
        "gap_ms": gap * 1000 if gap is not None else None,
        "lost": len(lost),
        "sent_after_t0": len(after_t0),
        "before": pre[-1][2] if pre else None,
        "after": post[-1][2] if post else None,
        "first_other_ms": next(
            ((r[1] - t0) * 1000 for r in post if pre and r[2] != pre[-1][2]), None
        ),
        "last_lost_ms": (lost[-1][1] - t0) * 1000 if lost else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.dataplane", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("respond")
    r.add_argument("--port", type=int, default=9000)
    r.add_argument("--name", required=True)
    p = sub.add_parser("probe")
    p.add_argument("--target", required=True)
    p.add_argument("--port", type=int, default=9000)
    p.add_argument("--sport", type=int, default=40000)
    p.add_argument("--interval-ms", type=float, default=1.0)
    p.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.cmd == "respond":
        return respond(args.port, args.name)
    return probe(args.target, args.port, args.sport, args.interval_ms, args.out)


if __name__ == "__main__":
    sys.exit(main())
