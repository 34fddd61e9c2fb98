"""The local control socket: ``speaker show ...``, ``reload``, ``announce``...

A Unix stream socket (``[control] socket``, mode ``[control] mode``, 0600 by
default: only its owner may connect); there is no network listener. The protocol
is one JSON object per line each way::

    -> {"command": "show bgp neighbor", "name": "rtr1"}
    <- {"ok": true, "data": {...}}
    <- {"ok": false, "error": "no peer named \\"rtr9\\" (peers: rtr1, rtr2)"}

Commands: ``status``, ``show bfd peers``, ``show bfd peers counters``,
``show bgp summary``, ``show bgp neighbor`` (``name``), ``show routes``,
``show config``, ``reload``, ``announce`` / ``withdraw`` / ``clear-override``
(``service``). The server runs in the speaker's Trio loop. Replies whose size grows
with peers, services or routes are built and encoded in slices (a checkpoint every
:data:`speaker.looplag.SLICE` of work), so a ``show routes`` at 65,536 routes never
holds the loop for more than a slice: each peer's row is a consistent snapshot,
two rows may be a few milliseconds apart.

Bad input costs only its own connection: every request is answered (an error
naming the problem for a line that is not a JSON object, too long, not UTF-8, nested
too deeply, or for a command that failed), nothing escapes the connection's task.
At most :data:`MAX_CONNECTIONS` connections are open; a new one beyond that closes
the one idle the longest (or is refused when none is idle), and a connection idle
for :data:`IDLE_TIMEOUT` is closed.

:func:`request` is the (blocking) client the CLI uses.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import itertools
import json
import logging
import os
import socket
import stat
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import trio

from protocols.bgp import State as BgpState
from speaker import __version__, gcpause, show
from speaker.app import Speaker
from speaker.config.model import DEFAULT_CONTROL_SOCKET
from speaker.log import fields
from speaker.looplag import LoopMonitor, Slicer
from speaker.peer import PeerRunner

__all__ = [
    "DEFAULT_SOCKET",
    "ControlError",
    "ControlServer",
    "EncodedArray",
    "bfd_status",
    "encode_reply",
    "explain_routes",
    "handle",
    "request",
]

log = logging.getLogger("speaker.control")

DEFAULT_SOCKET = DEFAULT_CONTROL_SOCKET
#: Longest request line (bytes, without its newline); a longer one is answered with
#: an error and its connection closed.
MAX_LINE = 64 * 1024
#: Connections open at once (the CLI opens one per command).
MAX_CONNECTIONS = 32
#: Seconds a connection may wait for its next request, or for its reply to be read.
IDLE_TIMEOUT = 30.0


class ControlError(Exception):
    """The client could not talk to the speaker (message fit for the operator)."""


class RequestError(Exception):
    """A request the server refuses (unknown command, service, peer...)."""


class EncodedArray:
    """A JSON array whose items are already encoded, in comma-separated runs (the
    reply encoder writes them as they are). ``show routes`` keeps its 65,536 route
    records this way: as dicts they would be half a million objects alive at once,
    enough to trigger full garbage collections of 20-200 ms in the middle of BFD."""

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.count = 0

    def extend(self, items: list[Any]) -> None:
        if items:
            self.runs.append(json.dumps(items, default=str)[1:-1])
            self.count += len(items)


# ---- views of the running speaker (called in its Trio loop) ------------------------------


def bfd_status(runner: PeerRunner) -> str | None:
    """FRR's word for the peer's BFD state; None when the peer has no BFD."""
    if runner.plan.bfd_target is None or runner.plan.bfd_profile is None:
        return None
    if runner.bfd is None:
        return "down"
    return show.STATUS_TEXT[runner.bfd.state]


def _bfd_runners(speaker: Speaker) -> list[PeerRunner]:
    return [r for r in speaker.peers.values() if r.bfd is not None]


async def bfd_peers(speaker: Speaker) -> list[dict[str, Any]]:
    slicer = Slicer()
    out = []
    for runner in _bfd_runners(speaker):
        await slicer.tick()
        if (bfd := runner.bfd) is None:
            continue  # its session ended while we were yielding
        out.append(show.bfd_peer_record(
            bfd.statistics(), now=trio.current_time(), name=runner.name, profile=bfd.profile,
            held=runner.bfd_held,
        ))  # fmt: skip
    return out


async def bfd_counters(speaker: Speaker) -> dict[str, Any]:
    slicer = Slicer()
    peers = []
    for runner in _bfd_runners(speaker):
        await slicer.tick()
        if (bfd := runner.bfd) is None:
            continue
        totals, rejected = runner.shown_bfd_counters()
        peers.append(show.bfd_counters_record(
            bfd.statistics(), name=runner.name, totals=totals, rejected=rejected
        ))  # fmt: skip
    endpoint = speaker.endpoint
    unmatched = Counter(endpoint.discards) if endpoint is not None else Counter()
    unmatched.subtract(speaker.unmatched_cleared)
    return {"peers": peers, "unmatched": {k: v for k, v in unmatched.items() if v > 0}}


def clear_bfd_counters(speaker: Speaker, name: str | None) -> dict[str, Any]:
    """``clear bfd peers counters`` (every peer, and the unmatched packets) or one
    peer's: what ``show bfd peers counters`` prints starts again from zero."""
    runners = _bfd_runners(speaker) if name is None else [_runner(speaker, name)]
    for runner in runners:
        runner.clear_bfd_counters()
    if name is None and speaker.endpoint is not None:
        speaker.unmatched_cleared = Counter(speaker.endpoint.discards)
    cleared = [r.name for r in runners]
    log.info("bfd counters cleared: %s", ", ".join(cleared) or "no BFD peers",
             extra=fields(peers=cleared))  # fmt: skip
    return {"cleared": cleared}


def _summary_row(runner: PeerRunner) -> dict[str, Any]:
    bgp = runner.plan.bgp
    return show.bgp_summary_row(
        name=runner.name,
        peer=str(bgp.peer_address),
        remote_as=bgp.peer_asn,
        local_as=bgp.local_asn,
        stats=runner.bgp.statistics() if runner.bgp is not None else None,
        totals=runner.totals(),
        bfd_status=bfd_status(runner),
        sessions=runner.sessions,
    )


def _router_id(speaker: Speaker) -> str | None:
    for runner in speaker.peers.values():
        return str(runner.plan.bgp.router_id)
    rid = speaker.config.router_id
    return None if rid is None else str(rid)


async def bgp_summary(speaker: Speaker) -> dict[str, Any]:
    runners = list(speaker.peers.values())
    asns = {r.plan.bgp.local_asn for r in runners}
    slicer = Slicer()
    rows = []
    for runner in runners:
        await slicer.tick()
        rows.append(_summary_row(runner))
    return {
        "routerId": _router_id(speaker),
        "as": next(iter(asns)) if len(asns) == 1 else sorted(asns),
        "peers": rows,
    }


def _runner(speaker: Speaker, name: str) -> PeerRunner:
    runner = speaker.peers.get(name)
    if runner is None:
        for candidate in speaker.peers.values():
            if str(candidate.plan.bgp.peer_address) == name:
                return candidate
        known = ", ".join(speaker.peers) or "none"
        raise RequestError(f'no peer named "{name}" on this node (peers: {known})')
    return runner


def bgp_neighbor(speaker: Speaker, name: str) -> dict[str, Any]:
    runner = _runner(speaker, name)
    now = trio.current_time()
    bgp = runner.bgp
    bfd = None
    if runner.bfd is not None:
        bfd = show.bfd_peer_record(
            runner.bfd.statistics(),
            now=now,
            name=runner.name,
            profile=runner.bfd.profile,
            held=runner.bfd_held,
        )
    elif runner.plan.bfd_profile is not None:
        bfd = {"status": "down", "profile": runner.plan.bfd_profile.name,
               "detect-multiplier": runner.plan.bfd_profile.detect_multiplier,
               "receive-interval": runner.plan.bfd_profile.receive_interval,
               "transmit-interval": runner.plan.bfd_profile.transmit_interval,
               "diagnostic": "ok"}  # fmt: skip
    return show.bgp_neighbor_record(
        _summary_row(runner),
        stats=bgp.statistics() if bgp is not None else None,
        negotiated=bgp.negotiated if bgp is not None else None,
        totals=runner.totals(),
        configured_hold_time=runner.plan.bgp.hold_time,
        bfd=bfd,
        failovers=runner.failovers,
        reannounce_delays=runner.reannounce_delays,
        crashes=runner.crashes,
        now=now,
        previous=runner.last_session,
    )


def _session_reason(runner: PeerRunner) -> str | None:
    """Why nothing reaches this peer right now, or None when its session is up (BGP
    runs beside BFD: Established is what counts)."""
    if runner.bgp is not None and runner.bgp.state is BgpState.ESTABLISHED:
        return None
    if bfd_status(runner) not in (None, "up") and not runner.bfd_held:
        return "bfd-down"  # (held AdminDown, it waits for BGP, not the other way)
    return "session-not-established"


#: Route records encoded per ``json.dumps`` call (about 3 us each).
_ROUTES_PER_RUN = 128


async def _announced_services(speaker: Speaker, slicer: Slicer) -> set[str]:
    """``Speaker.announced_services()`` in slices (65,536 services: a 5 ms step)."""
    forced = {s for s, mode in speaker.overrides.items() if mode == "announce"}
    withdrawn = {s for s, mode in speaker.overrides.items() if mode == "withdraw"}
    out = set(forced - withdrawn)
    for service in await slicer.keys(speaker.healthy):
        if service not in withdrawn:
            out.add(service)
        await slicer.tick()
    return out


async def explain_routes(speaker: Speaker) -> list[dict[str, Any]]:
    """Per configured peer: what is announced, and for every service (and every
    ``announce_all`` pool) why it is or is not announced to that peer.

    Reasons: ``announced``, ``pending`` (being sent), ``unhealthy``,
    ``withdrawn-by-operator``, ``no-advertisement-selects-peer``,
    ``session-not-established``, ``bfd-down``, ``not-for-this-node``, ``no-address``.

    Built in slices (routes, services and peers each yield to the loop): the routes
    of a peer with a BGP session are its Adj-RIB-Out's desired set, read in place;
    ``announced`` is an :class:`EncodedArray` of :func:`show.route_record` records.
    A peer without a session (waiting for BFD) lists no routes (``routesListed``
    false): each service's reason is then the session's (``bfd-down``...), or
    ``unhealthy`` / ``withdrawn-by-operator``.
    """
    config = speaker.config
    addresses = speaker.derived.addresses
    slicer = Slicer()
    wanted = await _announced_services(speaker, slicer)
    out = []
    for peer in config.peers:
        await slicer.tick()
        runner = speaker.peers.get(peer.name)
        row: dict[str, Any] = {
            "name": peer.name,
            "neighbor": str(peer.peer_address),
            "state": "-",
            "bfdStatus": None,
            "announced": [],
            "services": [],
            "pools": [],
        }
        out.append(row)
        if runner is None:
            for service in config.services:
                await slicer.tick()
                address = service.address or addresses.get(service.name)
                row["services"].append({
                    "service": service.name, "address": str(address) if address else None,
                    "pool": service.pool, "prefix": None, "reason": "not-for-this-node",
                    "detail": "the peer's node_selectors do not select this node",
                })  # fmt: skip
            for pool in config.pools:
                if pool.announce_all:
                    row["pools"].append({"pool": pool.name, "reason": "not-for-this-node"})
            continue
        bgp = runner.bgp
        row["state"] = bgp.state.value if bgp is not None else "Idle"
        row["bfdStatus"] = bfd_status(runner)
        down = _session_reason(runner)
        # Without a session nothing is sent and there is no route list to read:
        # computing one (Speaker.routes_for) is O(routes) in a single step, the very
        # stall that would cost the other peers' BFD while this one is down.
        desired = bgp.rib_out.desired if bgp is not None else None
        advertised = bgp.rib_out.advertised if bgp is not None else {}
        announced = row["announced"] = EncodedArray()
        row["routesListed"] = desired is not None
        batch: list[dict[str, Any]] = []
        table = desired or {}
        for route in await slicer.keys(table):
            attributes = table.get(route)
            if attributes is not None:
                batch.append(show.route_record(route, attributes, advertised=route in advertised))
            if len(batch) == _ROUTES_PER_RUN:
                announced.extend(batch)
                batch = []
                await slicer.tick()
        announced.extend(batch)
        for service in config.services:
            await slicer.tick()
            address = service.address or addresses.get(service.name)
            entry: dict[str, Any] = {
                "service": service.name,
                "address": str(address) if address else None,
                "pool": service.pool,
                "prefix": None,
                "detail": None,
            }
            row["services"].append(entry)
            if address is None or service.pool is None:
                entry["reason"] = "no-address"
                continue
            ads = [
                ad for ad in config.advertisements
                if ad.selects_peer(peer.name) and ad.selects_pool(service.pool)
            ]  # fmt: skip
            prefixes = [
                ipaddress.ip_network((address, ad.length_for(address.version)), strict=False)
                for ad in ads
            ]
            override = speaker.overrides.get(service.name)
            if not ads:
                entry["reason"] = "no-advertisement-selects-peer"
                continue
            if desired is not None:
                prefix = next((p for p in prefixes if p in desired), None)
            else:  # no session: what would be sent (an aggregate's cover is not known)
                prefix = prefixes[0] if service.name in wanted else None
            if prefix is None:
                if override == "withdraw":
                    entry["reason"] = "withdrawn-by-operator"
                elif service.name not in wanted or service.name not in speaker.healthy:
                    entry["reason"] = "unhealthy"
                else:
                    entry["reason"] = "not-announced"
                continue
            entry["prefix"] = str(prefix)
            entry["detail"] = _why_covered(speaker, service.name, service.pool, prefix, address)
            if down is not None:
                entry["reason"] = down
            else:
                entry["reason"] = "announced" if prefix in advertised else "pending"
        for pool in config.pools:
            if not pool.announce_all:
                continue
            selected = any(
                ad.selects_peer(peer.name) and ad.selects_pool(pool.name)
                for ad in config.advertisements
            )
            reason = "no-advertisement-selects-peer" if not selected else down or "announced"
            row["pools"].append({"pool": pool.name, "reason": reason, "detail": "announce_all"})
    return out


def _why_covered(
    speaker: Speaker, service: str, pool: str, prefix: Any, address: Any
) -> str | None:
    """A note when a service is announced for another reason than its own health."""
    override = speaker.overrides.get(service)
    if speaker.config.pool(pool).announce_all:
        return "announce_all pool" + (" (override withdraw has no effect)" if
                                      override == "withdraw" else "")  # fmt: skip
    if override == "withdraw":
        return f"aggregate {prefix} announced for other services"
    if override == "announce":
        return "forced by operator"
    if service not in speaker.healthy:
        return f"aggregate {prefix} announced for other services"
    if prefix.prefixlen != prefix.max_prefixlen:
        return f"aggregate {prefix}"
    del address
    return None


async def routes(speaker: Speaker) -> dict[str, Any]:
    config = speaker.config
    slicer = Slicer()
    services = []
    for service in config.services:
        await slicer.tick()
        address = service.address or speaker.derived.addresses.get(service.name)
        services.append({
            "service": service.name,
            "address": str(address) if address else None,
            "pool": service.pool,
            "healthy": None if service.health is None else service.name in speaker.healthy,
            "override": speaker.overrides.get(service.name),
        })  # fmt: skip
    return {"peers": await explain_routes(speaker), "services": services}


async def config_view(speaker: Speaker) -> dict[str, Any]:
    """``show redact(config)``, its lists (services, peers...) an element per slice:
    10,000 services take ~0.5 s to redact."""
    slicer = Slicer()
    data: dict[str, Any] = {}
    for name, item, done in show.redact_fields(speaker.config):
        if done or not isinstance(item, list | tuple):
            data[name] = item if done else show.redact(item)
            await slicer.tick()
            continue
        elements = data[name] = []
        for element in item:
            await slicer.tick()
            elements.append(show.redact(element))
    addresses = data["assigned_addresses"] = {}
    for service, address in list(speaker.derived.addresses.items()):
        await slicer.tick()
        addresses[service] = str(address)
    data["overrides"] = dict(speaker.overrides)
    if speaker.derived.router_id is not None:  # the one the sessions use, and why
        data["router_id"] = str(speaker.derived.router_id.address)
        data["router_id_reason"] = speaker.derived.router_id.reason
    return data


def status(speaker: Speaker, monitor: LoopMonitor | None = None) -> dict[str, Any]:
    """``eventLoop`` is the loop monitor's worst recent stall (None without one)."""
    last = speaker.last_reload
    return {
        "version": __version__,
        "pid": os.getpid(),
        "config": speaker.config_path,
        "configStale": speaker.config_stale,
        "reloads": speaker.reloads,
        "reloadFailures": speaker.reload_failures,
        "lastReload": None if last is None else {
            "ok": last.ok, "summary": last.summary(), "errors": list(last.errors),
        },
        "peers": len(speaker.peers),
        "stopping": speaker.shutting_down.is_set(),
        "eventLoop": None if monitor is None else monitor.status(),
    }  # fmt: skip


# ---- dispatch ------------------------------------------------------------------------------


def _service(request: Mapping[str, Any]) -> str:
    service = request.get("service")
    if not isinstance(service, str) or not service:
        raise RequestError('missing "service"')
    return service


def _override(speaker: Speaker, request: Mapping[str, Any], mode: str | None) -> dict[str, Any]:
    service = _service(request)
    try:
        speaker.set_override(service, mode)
    except KeyError:
        known = ", ".join(speaker.derived.services) or "none"
        raise RequestError(f'no service named "{service}" (services: {known})') from None
    except OSError as exc:
        raise RequestError(f"cannot write the state file: {exc}") from None
    return {"service": service, "override": mode}


#: Replies that grow with peers, services or routes: built in slices.
_QUERIES: dict[str, Callable[[Speaker], Awaitable[Any]]] = {
    "show bfd peers": bfd_peers,
    "show bfd peers counters": bfd_counters,
    "show bgp summary": bgp_summary,
    "show routes": routes,
    "show config": config_view,
}


async def handle(
    speaker: Speaker, request: Mapping[str, Any], *, monitor: LoopMonitor | None = None
) -> dict[str, Any]:
    """One request -> one reply (``{"ok": true, "data": ...}`` or an error)."""
    command = request.get("command")
    try:
        if not isinstance(command, str):
            raise RequestError('missing "command"')
        if command in _QUERIES:
            return {"ok": True, "data": await _QUERIES[command](speaker)}
        if command == "status":
            return {"ok": True, "data": status(speaker, monitor)}
        if command == "show bgp neighbor":
            name = request.get("name")
            if not isinstance(name, str):
                raise RequestError('missing "name"')
            return {"ok": True, "data": bgp_neighbor(speaker, name)}
        if command == "clear bfd peers counters":
            name = request.get("name")
            if name is not None and not isinstance(name, str):
                raise RequestError('"name" must be a string')
            return {"ok": True, "data": clear_bfd_counters(speaker, name)}
        if command == "reload":
            allow_empty = request.get("allow_empty", False)
            if not isinstance(allow_empty, bool):
                raise RequestError('"allow_empty" must be true or false')
            log.info("reload requested on the control socket%s",
                     " (allow_empty)" if allow_empty else "")  # fmt: skip
            result = await speaker.reload_file(allow_empty=allow_empty)
            return {"ok": True, "data": {
                "applied": result.ok, "summary": result.summary(), "errors": list(result.errors),
                "warnings": list(result.warnings),
            }}  # fmt: skip
        if command in ("announce", "withdraw"):
            return {"ok": True, "data": _override(speaker, request, command)}
        if command == "clear-override":
            return {"ok": True, "data": _override(speaker, request, None)}
        raise RequestError(f'unknown command "{command}"')
    except RequestError as exc:
        return {"ok": False, "error": str(exc)}


# ---- encoding a reply in slices ---------------------------------------------------------------

#: A list or dict this short whose members are scalars (or short lists of scalars) is
#: encoded in one ``json.dumps`` call; anything bigger is walked, yielding between parts.
_SMALL = 64
_SCALARS = (str, int, float, bool, type(None))


def _flat(value: object) -> bool:
    if isinstance(value, _SCALARS):
        return True
    return (
        isinstance(value, list | tuple)
        and len(value) <= _SMALL
        and all(isinstance(v, _SCALARS) for v in value)
    )


async def _encode_into(value: object, out: list[str], slicer: Slicer) -> None:
    if isinstance(value, EncodedArray):
        out.append("[")
        for i, run in enumerate(value.runs):
            out.append("," + run if i else run)
            await slicer.tick()
        out.append("]")
    elif isinstance(value, dict):
        if len(value) <= _SMALL and all(_flat(v) for v in value.values()):
            out.append(json.dumps(value, default=str))
            await slicer.tick()
            return
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            out.append(("," if i else "") + json.dumps(str(key)) + ":")
            await _encode_into(item, out, slicer)
        out.append("}")
    elif isinstance(value, list | tuple) and not _flat(value):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            await _encode_into(item, out, slicer)
        out.append("]")
    else:
        out.append(json.dumps(value, default=str))


async def encode_reply(reply: Mapping[str, Any], *, chunk: int = 1 << 16) -> list[bytes]:
    """``reply`` as one JSON line, in pieces of about ``chunk`` bytes (to send one by
    one), encoded in slices: a 65,536-route ``show routes`` is ~10 MB of JSON."""
    parts: list[str] = []
    slicer = Slicer()
    await _encode_into(dict(reply), parts, slicer)
    parts.append("\n")
    out: list[bytes] = []
    pending: list[str] = []
    size = 0
    for part in parts:
        pending.append(part)
        size += len(part)
        if size >= chunk:
            out.append("".join(pending).encode())
            pending, size = [], 0
            await slicer.tick()
    if pending:
        out.append("".join(pending).encode())
    await slicer.release(parts)
    return out


# ---- the server ----------------------------------------------------------------------------


class ControlServer:
    """Serves :func:`handle` on a Unix socket at ``path`` (created with ``mode``,
    removed when the server stops). ``monitor`` feeds ``status`` its ``eventLoop``."""

    def __init__(
        self,
        speaker: Speaker,
        path: Path | str,
        mode: int = 0o600,
        *,
        monitor: LoopMonitor | None = None,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self.speaker = speaker
        self.path = Path(path)
        self.mode = mode
        self.monitor = monitor
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self._inode: int | None = None
        self._open = 0
        #: Connections waiting for a request, idle the longest first: the cancel scope
        #: of their wait (cancelled to make room for a new connection).
        self._idle: dict[int, trio.CancelScope] = {}
        self._ids = itertools.count()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        sock = await self._bind()
        try:
            listener = trio.SocketListener(sock)
            async with trio.open_nursery() as nursery:
                task_status.started()
                log.info("control socket at %s", self.path)
                await trio.serve_listeners(self._connection, [listener], handler_nursery=nursery)
        finally:
            sock.close()
            self._remove()

    async def _bind(self) -> trio.socket.SocketType:
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        if path.exists() or path.is_symlink():
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
            if _listening(path):
                raise OSError(errno.EADDRINUSE, f"another speaker is listening on {path}")
            path.unlink()  # left over by a speaker that died
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o777 & ~self.mode)
        try:
            await sock.bind(str(path))
        except BaseException:
            sock.close()
            raise
        finally:
            os.umask(old)
        os.chmod(path, self.mode)
        self._inode = path.stat().st_ino
        sock.listen(16)
        return sock

    def _remove(self) -> None:
        with contextlib.suppress(OSError):
            if self._inode is not None and self.path.stat().st_ino == self._inode:
                self.path.unlink()

    def _admit(self) -> bool:
        """Room for one more connection, closing the one idle the longest if needed."""
        if self._open < self.max_connections:
            return True
        if not self._idle:
            return False
        oldest = next(iter(self._idle))
        self._idle.pop(oldest).cancel()
        return True

    async def _connection(self, stream: trio.SocketStream) -> None:
        # Nothing may escape: this task runs in the server's nursery, whose failure
        # would end the speaker (Cease to every router).
        trio.lowlevel.current_task().name = "control connection"  # as the loop monitor says
        try:
            async with stream:
                if not self._admit():
                    log.warning("control: %d connections open, refusing another",
                                self._open)  # fmt: skip
                    await self._send_error(stream, f"too many control connections (limit"
                                           f" {self.max_connections}, none idle)")  # fmt: skip
                    return
                self._open += 1
                try:
                    await self._requests(stream, next(self._ids))
                finally:
                    self._open -= 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        except Exception:
            log.exception("control: connection failed")

    async def _requests(self, stream: trio.SocketStream, conn: int) -> None:
        buffer = bytearray()
        while True:
            while (end := buffer.find(b"\n")) < 0:
                if len(buffer) > MAX_LINE:
                    await self._send_error(stream, f"request too long (over {MAX_LINE} bytes)")
                    return
                wait = trio.CancelScope(deadline=trio.current_time() + self.idle_timeout)
                self._idle[conn] = wait
                try:
                    with wait:
                        chunk = await stream.receive_some(65536)
                finally:
                    self._idle.pop(conn, None)
                if wait.cancelled_caught:
                    timed_out = trio.current_time() >= wait.deadline
                    await self._send_error(stream, (
                        f"idle for {self.idle_timeout:g} s: connection closed" if timed_out else
                        "connection closed to make room for a new one (too many idle)"
                    ))  # fmt: skip
                    return
                if not chunk:
                    return
                buffer += chunk
            if end > MAX_LINE:
                await self._send_error(stream, f"request too long (over {MAX_LINE} bytes)")
                return
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            reply = await self._reply(line)
            with trio.move_on_after(self.idle_timeout) as sending:
                for piece in reply:
                    await stream.send_all(piece)
            if sending.cancelled_caught:
                log.warning("control: the client read no reply for %g s; closed",
                            self.idle_timeout)  # fmt: skip
                return

    async def _send_error(self, stream: trio.SocketStream, error: str) -> None:
        with trio.move_on_after(1.0):
            await stream.send_all(_encode({"ok": False, "error": error}))

    async def _reply(self, line: bytes) -> list[bytes]:
        request = _parse(line)
        if isinstance(request, str):
            log.warning("control: %s", request)
            return [_encode({"ok": False, "error": request})]
        try:
            # A big reply lives over many loop steps: no full collection scanning it.
            with gcpause.paused():
                reply = await handle(self.speaker, request, monitor=self.monitor)
                encoded = await encode_reply(reply)
                await Slicer().release(reply)
            return encoded
        except Exception as exc:  # a bug must not take the speaker down
            log.exception("control: %s failed", request.get("command"))
            return [_encode({"ok": False, "error": f"internal error: {exc!r}"})]


def _parse(line: bytes) -> dict[str, Any] | str:
    """The request, or why it is not one (the error the client gets)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"bad request: not UTF-8 (byte {line[exc.start]:#04x} at {exc.start})"
    try:
        request = json.loads(text)
    except RecursionError:
        return "bad request: JSON nested too deeply"
    except ValueError as exc:
        return f"bad request: {exc}"
    except Exception as exc:  # whatever else the decoder may raise
        return f"bad request: {exc!r}"
    if not isinstance(request, dict):
        return f"bad request: not a JSON object (got {type(request).__name__})"
    return request


def _encode(reply: Mapping[str, Any]) -> bytes:
    return json.dumps(reply, default=str).encode() + b"\n"


def _listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
        return True


# ---- the client ----------------------------------------------------------------------------


def request(path: Path | str, command: str, timeout: float = 30.0, **args: Any) -> Any:
    """Send one command, return its ``data``.

    Raises:
        ControlError: no speaker at ``path``, or it refused the request (the message
            says which and why).
    """
    path = Path(path)
    message = json.dumps({"command": command, **args}).encode() + b"\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            raise ControlError(f"is the speaker running? no socket at {path}") from None
        except ConnectionRefusedError:
            raise ControlError(
                f"is the speaker running? nothing listens on {path} (a stale socket)"
            ) from None
        except PermissionError:
            raise ControlError(
                f"permission denied on {path}: run as root or as the socket's owner"
            ) from None
        except OSError as exc:
            raise ControlError(f"cannot connect to {path}: {exc.strerror or exc}") from None
        try:
            sock.sendall(message)
            data = bytearray()
            while not data.endswith(b"\n"):
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            raise ControlError(f"no answer from the speaker within {timeout:g} s") from None
        except OSError as exc:
            raise ControlError(f"control socket {path}: {exc.strerror or exc}") from None
    if not data:
        raise ControlError("the speaker closed the connection without answering")
    reply = json.loads(data)
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error", "request failed")))
    return reply.get("data")
