"""``python -m speaker.bgp``: run one BGP session on its own, reporting as JSON lines.

Every state change, NOTIFICATION and End-of-RIB is one JSON line on stdout; SIGUSR1
prints the session's statistics; SIGHUP re-reads ``--routes-file`` (a JSON list of
``--announce`` strings or objects) and sends only the difference; SIGTERM/SIGINT
send Cease/Administrative Shutdown with a message and exit 0. Exit status 2 for a
configuration or socket error (e.g. TCP MD5 on a kernel without it).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import trio

from protocols.bgp import (
    CeaseSubcode,
    EndOfRib,
    Established,
    NotificationReceived,
    NotificationSent,
    RouteKey,
    StateChanged,
    prefix_key,
)
from speaker.bgp.config import (
    BgpConfigError,
    BgpPeerConfig,
    RouteAttributes,
    parse_announce,
    parse_route_entry,
    prefix_range,
)
from speaker.bgp.listener import BgpListener
from speaker.bgp.session import BgpSession, BgpStatistics, SessionReport, family_name

SHUTDOWN_MESSAGE = "speaker shutting down"


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record, default=str), flush=True)


def wall(at: float) -> float:
    """Wall-clock time of a trio timestamp (to compare with other processes' logs)."""
    return time.time() - (trio.current_time() - at)


def stats_record(stats: BgpStatistics) -> dict[str, Any]:
    record = attrs.asdict(stats)
    record["event"] = "stats"
    for key in ("cancelled_at", "notification_written_at", "closed_at", "established_at"):
        if record[key] is not None:
            record[f"{key}_wall"] = wall(record[key])
    return record


def report(item: SessionReport) -> None:
    event, at = item.event, item.at
    base: dict[str, Any] = {"at": at, "wall": wall(at)}
    match event:
        case StateChanged():
            emit({"event": "state", "old": event.old.value, "new": event.new.value,
                  "reason": event.reason, **base})  # fmt: skip
        case Established():
            neg = event.negotiated
            emit({"event": "established", "peer_as": neg.peer_asn,
                  "peer_id": str(neg.peer_router_id), "hold_time": neg.hold_time,
                  "families": [family_name(f) for f in sorted(neg.families)],
                  "asn4": neg.asn4, "extended_message": neg.extended_message, **base})  # fmt: skip
        case NotificationSent():
            emit({"event": "notification", "direction": "sent", "code": event.code,
                  "subcode": event.subcode, "reason": event.reason, **base})  # fmt: skip
        case NotificationReceived():
            emit({"event": "notification", "direction": "received", "code": event.code,
                  "subcode": event.subcode, "message": event.shutdown_message,
                  "data": event.data.hex(), **base})  # fmt: skip
        case EndOfRib():
            emit({"event": "end-of-rib", "family": family_name((event.afi, event.safi)),
                  **base})  # fmt: skip


async def watch(session: BgpSession) -> None:
    with session.subscribe() as reports:
        async for item in reports:
            report(item)


def load_routes(args: argparse.Namespace) -> dict[RouteKey, RouteAttributes]:
    """The routes to announce, by route key (a network each only while it is read)."""
    routes: dict[RouteKey, RouteAttributes] = {}
    for spec in args.announce_range:
        range_spec, _, extra = spec.partition(",")
        attributes = parse_announce("0.0.0.0/0," + extra)[1] if extra else RouteAttributes()
        routes.update(dict.fromkeys(map(prefix_key, prefix_range(range_spec)), attributes))
    for text in args.announce:
        prefix, attributes = parse_announce(text)
        routes[prefix_key(prefix)] = attributes
    if args.routes_file and Path(args.routes_file).exists():
        entries = json.loads(Path(args.routes_file).read_text() or "[]")
        if not isinstance(entries, list):
            raise BgpConfigError(f"{args.routes_file}: want a JSON list")
        for entry in entries:
            prefix, attributes = parse_route_entry(entry)
            routes[prefix_key(prefix)] = attributes
    return routes


def default_router_id(peer: str, source: str | None) -> str:
    """--source if IPv4, else the IPv4 address we would use towards the peer, else the
    first non-loopback IPv4 address of an interface."""
    if source and ipaddress.ip_address(source).version == 4:
        return source
    if ipaddress.ip_address(peer).version == 4:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((peer, 179))
            return str(probe.getsockname()[0])
    from speaker.bgp.net import _ipv4_of_interface

    for index, _ in socket.if_nameindex():
        addr = _ipv4_of_interface(index)
        if addr is not None and not addr.is_loopback:
            return str(addr)
    raise BgpConfigError("cannot derive a router id: give --router-id")


#: The options' destinations are BgpPeerConfig's field names, so the options given
#: are passed on by name; an option not given leaves the field's default.
CONFIG_FIELDS = frozenset(f.name for f in attrs.fields(BgpPeerConfig))


def config_from_args(
    args: argparse.Namespace, routes: dict[RouteKey, RouteAttributes]
) -> BgpPeerConfig:
    given = {k: v for k, v in vars(args).items() if k in CONFIG_FIELDS and v is not None}
    if args.password_file:
        given["password"] = Path(args.password_file).read_text().strip()
    given["name"] = args.name or args.peer_address
    given["router_id"] = args.router_id or default_router_id(args.peer_address, args.source_address)
    given["listen"] = args.listen or args.passive  # the tool listens only when asked
    given["extended_message"] = not args.no_extended_message
    return BgpPeerConfig(**given).with_families_for(routes)


async def run(args: argparse.Namespace) -> int:
    routes = load_routes(args)
    config = config_from_args(args, routes)
    with trio.open_signal_receiver(
        signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP
    ) as signals:
        async with trio.open_nursery() as nursery:
            if args.listen and not args.passive:
                source = (config.source_address,) if config.source_address else ()
                listener = BgpListener(port=config.listen_port, addresses=source, required=True)
                await nursery.start(listener.run)
                config = attrs.evolve(config, listener=listener)
            session = BgpSession(config, routes=routes)
            nursery.start_soon(watch, session)
            await nursery.start(session.run)
            emit({"event": "started", "config": repr(session.config), "routes": len(routes),
                  "families": [family_name(f) for f in session.config.families]})  # fmt: skip
            async for signum in signals:
                if signum == signal.SIGUSR1:
                    emit(stats_record(session.statistics()))
                elif signum == signal.SIGHUP:
                    try:
                        new = load_routes(args)
                    except (ValueError, OSError) as exc:
                        emit({"event": "routes-error", "error": str(exc)})
                        continue
                    session.set_routes(new)
                    emit({"event": "routes", "routes": len(new)})
                else:
                    session.cancel(CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, SHUTDOWN_MESSAGE)
                    await session.wait_stopped()
                    emit(stats_record(session.statistics()))
                    emit({"event": "stopped"})
                    nursery.cancel_scope.cancel()
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m speaker.bgp", description=__doc__)
    add = parser.add_argument
    # dest: the BgpPeerConfig field each option sets; the defaults are its defaults.
    add("--peer", dest="peer_address", metavar="PEER", required=True, help="peer address")
    add("--peer-as", dest="peer_asn", metavar="PEER_AS", type=int, required=True)
    add("--local-as", dest="local_asn", metavar="LOCAL_AS", type=int, required=True)
    add("--router-id", help="BGP identifier (default: derived from the local address)")
    add("--name", help="session name in logs (default: the peer address)")
    add(
        "--source",
        dest="source_address",
        metavar="SOURCE",
        help="local address to connect from (and listen on)",
    )
    add("--port", dest="peer_port", metavar="PORT", type=int, help="peer's TCP port")
    add("--listen-port", type=int)
    add("--password", help="TCP MD5 (RFC 2385) key")
    add("--password-file")
    add("--hold", dest="hold_time", metavar="HOLD", type=int, help="hold time, s")
    add("--keepalive", dest="keepalive_time", metavar="KEEPALIVE", type=float,
        help="keepalive interval, s (default hold/3)")  # fmt: skip
    add("--connect-time", type=float, help="TCP connect timeout, s")
    add("--connect-retry", type=float, help="backoff base, s")
    add("--connect-retry-max", type=float)
    add(
        "--multihop", dest="ebgp_multihop", metavar="MULTIHOP", type=int, help="TTL (eBGP multihop)"
    )
    add("--gtsm", action="store_true", help="RFC 5082: send TTL 255, require 255-hops+1")
    add("--passive", action="store_true", help="only accept the peer's connection")
    add("--listen", action="store_true", help="accept as well as connect")
    add("--hostname", help="FQDN capability hostname")
    add("--no-extended-message", action="store_true", help="do not offer RFC 8654")
    add("--keep-adj-rib-in", action="store_true")
    add("--next-hop4")
    add("--next-hop6")
    add("--announce", action="append", default=[],
        help="PREFIX[,community=A:B][,large=A:B:C][,med=N][,local-pref=N]")  # fmt: skip
    add("--announce-range", action="append", default=[],
        help="NETWORK/LEN:COUNT[,attributes]: COUNT host routes (benchmarks)")  # fmt: skip
    add("--routes-file", help="JSON list of routes, re-read on SIGHUP")
    add("--debug", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return trio.run(run, args)
    except (ValueError, OSError) as exc:  # BgpConfigError, BgpSocketError among them
        return fail(exc)
    except ExceptionGroup as group:
        matched, rest = group.split((ValueError, OSError))
        if rest is not None or matched is None:
            raise
        return fail(leaf(matched))


def leaf(group: BaseException) -> BaseException:
    while isinstance(group, BaseExceptionGroup):
        group = group.exceptions[0]
    return group


def fail(exc: BaseException) -> int:
    print(f"speaker.bgp: {exc}", file=sys.stderr)
    emit({"event": "error", "error": str(exc)})
    return 2


if __name__ == "__main__":
    sys.exit(main())
