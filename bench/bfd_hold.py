"""Hold many BFD sessions in one process (the driver of ``bench.bfd_scale``).

    python -m bench.bfd_hold --pairs FILE --interface to-rtr1 --tx 300 --rx 300 --mult 3

``FILE`` holds one ``PEER LOCAL`` pair per line. All sessions share one
:class:`speaker.bfd.runtime.BfdEndpoint` (one receive socket per family, like the
speaker). JSON lines on stdout: ``started``; on SIGUSR1 a ``stats`` summary (sessions
Up, Up->Down transitions so far, packets in and out); SIGTERM: AdminDown and exit.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import signal
import sys
from pathlib import Path
from typing import Any

import trio

from protocols.bfd import State
from speaker.bfd.profile import BfdProfile
from speaker.bfd.runtime import BfdEndpoint, BfdSession, SessionKey


def stats(sessions: list[BfdSession], endpoint: BfdEndpoint | None = None) -> dict[str, Any]:
    up = down_events = rx = tx = 0
    for s in sessions:
        st = s.statistics()
        up += st.state is State.UP
        down_events += st.down_events
        rx += st.control_rx
        tx += st.control_tx
    return {"event": "stats", "sessions": len(sessions), "up": up,
            "down_events": down_events, "control_rx": rx, "control_tx": tx,
            "endpoint": dict(endpoint.counts) if endpoint else {}}  # fmt: skip


async def run(args: argparse.Namespace) -> int:
    profile = BfdProfile(name="scale", transmit_interval=args.tx, receive_interval=args.rx,
                         detect_multiplier=args.mult)  # fmt: skip
    pairs = [line.split() for line in Path(args.pairs).read_text().splitlines() if line.strip()]
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGUSR1) as signals:
        async with trio.open_nursery() as nursery:
            endpoint = await nursery.start(BfdEndpoint().run)
            sessions = []
            for peer, local in pairs:
                key = SessionKey(peer=ipaddress.ip_address(peer), local=ipaddress.ip_address(local),
                                 interface=args.interface)  # fmt: skip
                sessions.append(await endpoint.add_session(key, profile))
            print(json.dumps({"event": "started", "sessions": len(sessions)}), flush=True)
            async for signum in signals:
                print(json.dumps(stats(sessions, endpoint)), flush=True)
                if signum != signal.SIGUSR1:
                    await endpoint.shutdown()
                    nursery.cancel_scope.cancel()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bfd_hold", description=__doc__)
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--interface")
    ap.add_argument("--tx", type=int, default=300)
    ap.add_argument("--rx", type=int, default=300)
    ap.add_argument("--mult", type=int, default=3)
    args = ap.parse_args(argv)
    return trio.run(run, args)


if __name__ == "__main__":
    sys.exit(main())
