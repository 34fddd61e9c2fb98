"""``python -m speaker.bfd``: run one BFD session on its own, reporting as JSON lines.

The BFD part of the speaker used standalone (and by the interop tests): every state
change is one JSON line on stdout; SIGUSR1 prints the session's statistics; SIGHUP
re-reads ``--profile-file`` and applies it to the live session (a Poll sequence);
SIGTERM/SIGINT send AdminDown and exit 0.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import trio

from protocols.bfd import StateChanged
from speaker import lazyimport
from speaker.bfd.profile import BfdAuth, BfdProfile
from speaker.bfd.runtime import BfdEndpoint, BfdStatistics, SessionKey


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record, default=str), flush=True)


def wall(at: float) -> float:
    """Wall-clock time of a trio timestamp (to compare with packet captures)."""
    return time.time() - (trio.current_time() - at)


def stats_record(stats: BfdStatistics) -> dict[str, Any]:
    record = attrs.asdict(stats, recurse=False)
    record["key"] = str(stats.key)
    record["state"] = stats.state.name
    record["remote_state"] = stats.remote_state.name
    record["local_diag"] = stats.local_diag.name
    record["event"] = "stats"
    return record


def profile_from_args(args: argparse.Namespace) -> BfdProfile:
    auth = None
    if args.auth:
        secret = Path(args.secret_file).read_text().strip() if args.secret_file else args.secret
        auth = BfdAuth(type=args.auth, keys={args.key_id: secret}, send_key_id=args.key_id)
    fields: dict[str, Any] = {
        "name": "cli",
        "transmit_interval": args.tx,
        "receive_interval": args.rx,
        "detect_multiplier": args.mult,
        "echo_mode": args.echo,
        "echo_interval": args.echo_interval,
        "passive_mode": args.passive,
        "minimum_ttl": args.min_ttl,
        "auth": auth,
    }
    if args.profile_file:
        fields.update(json.loads(Path(args.profile_file).read_text()))
    profile = BfdProfile(**fields)
    lazyimport.load_for_bfd([profile])  # before the loop: OpenSSL's import is no loop step
    return profile


def report(change: StateChanged) -> None:
    emit({
        "event": "state", "old": change.old.name, "new": change.new.name,
        "diag": change.diag.name, "reason": change.reason, "at": change.at,
        "wall": wall(change.at), "path_failure": change.path_failure,
        "remote_admin_down": change.remote_admin_down,
    })  # fmt: skip


async def run(args: argparse.Namespace) -> int:
    key = SessionKey(
        peer=ipaddress.ip_address(args.peer),
        local=ipaddress.ip_address(args.local),
        multihop=args.multihop,
        interface=args.interface,
    )
    profile = profile_from_args(args)
    with trio.open_signal_receiver(
        signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP
    ) as signals:
        async with trio.open_nursery() as nursery:
            endpoint = await nursery.start(BfdEndpoint().run)
            # A callback, not a subscription: a peer already up answers our first
            # packet within a millisecond, before a watching task would have subscribed.
            session = await endpoint.add_session(key, profile, on_change=report)
            emit({"event": "started", "key": str(key), "profile": repr(profile),
                  "discriminator": session.core.local_discriminator})  # fmt: skip
            async for signum in signals:
                if signum == signal.SIGUSR1:
                    # With the endpoint's counters: whether it reads lazily (timer passes)
                    emit({**stats_record(session.statistics()), "endpoint": dict(endpoint.counts)})
                elif signum == signal.SIGHUP:
                    try:
                        session.set_profile(profile_from_args(args))
                        emit({"event": "profile", "profile": repr(session.profile)})
                    except (ValueError, TypeError, OSError) as exc:
                        emit({"event": "profile-error", "error": str(exc)})
                else:
                    emit(stats_record(session.statistics()))
                    await endpoint.shutdown()
                    emit({"event": "stopped"})
                    nursery.cancel_scope.cancel()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m speaker.bfd", description=__doc__)
    parser.add_argument("--peer", required=True)
    parser.add_argument("--local", required=True)
    parser.add_argument("--interface")
    parser.add_argument("--multihop", action="store_true")
    parser.add_argument("--tx", type=int, default=300, help="transmit interval, ms")
    parser.add_argument("--rx", type=int, default=300, help="receive interval, ms")
    parser.add_argument("--mult", type=int, default=3, help="detect multiplier")
    parser.add_argument("--echo", action="store_true", help="run the echo function")
    parser.add_argument("--echo-interval", type=int, default=50, help="ms")
    parser.add_argument("--passive", action="store_true")
    parser.add_argument("--min-ttl", type=int, default=254, help="multihop minimum TTL")
    parser.add_argument("--auth", help="simple, keyed-md5, meticulous-keyed-md5, ...")
    parser.add_argument("--key-id", type=int, default=1)
    parser.add_argument("--secret", default="")
    parser.add_argument("--secret-file")
    parser.add_argument("--profile-file", help="JSON object of profile fields; re-read on SIGHUP")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return trio.run(run, args)
    except (ValueError, TypeError, OSError) as exc:
        print(f"speaker.bfd: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
