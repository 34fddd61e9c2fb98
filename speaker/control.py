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
(``service``). The server runs in the speaker's Trio loop and reads its state
between two scheduling points, so every answer is a consistent snapshot.

:func:`request` is the (blocking) client the CLI uses.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import logging
import os
import socket
import stat
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import trio

from protocols.bgp import State as BgpState
from speaker import __version__, show
from speaker.app import Speaker
from speaker.config.model import DEFAULT_CONTROL_SOCKET
from speaker.log import fields
from speaker.peer import PeerRunner

__all__ = [
    "DEFAULT_SOCKET",
    "ControlError",
    "ControlServer",
    "bfd_status",
    "explain_routes",
    "handle",
    "request",
]

log = logging.getLogger("speaker.control")

DEFAULT_SOCKET = DEFAULT_CONTROL_SOCKET
MAX_LINE = 64 * 1024


class ControlError(Exception):
    """The client could not talk to the speaker (message fit for the operator)."""


class RequestError(Exception):
    """A request the server refuses (unknown command, service, peer...)."""


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


def bfd_peers(speaker: Speaker) -> list[dict[str, Any]]:
    now = trio.current_time()
    out = []
    for runner in _bfd_runners(speaker):
        assert runner.bfd is not None
        out.append(show.bfd_peer_record(
            runner.bfd.statistics(), now=now, name=runner.name, profile=runner.bfd.profile
        ))  # fmt: skip
    return out


def bfd_counters(speaker: Speaker) -> dict[str, Any]:
    peers = []
    for runner in _bfd_runners(speaker):
        assert runner.bfd is not None
        totals, rejected = runner.shown_bfd_counters()
        peers.append(show.bfd_counters_record(
            runner.bfd.statistics(), name=runner.name, totals=totals, rejected=rejected
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


def bgp_summary(speaker: Speaker) -> dict[str, Any]:
    asns = {r.plan.bgp.local_asn for r in speaker.peers.values()}
    return {
        "routerId": _router_id(speaker),
        "as": next(iter(asns)) if len(asns) == 1 else sorted(asns),
        "peers": [_summary_row(r) for r in speaker.peers.values()],
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
            runner.bfd.statistics(), now=now, name=runner.name, profile=runner.bfd.profile
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
    if bfd_status(runner) not in (None, "up"):
        return "bfd-down"
    return "session-not-established"


def explain_routes(speaker: Speaker) -> list[dict[str, Any]]:
    """Per configured peer: what is announced, and for every service (and every
    ``announce_all`` pool) why it is or is not announced to that peer.

    Reasons: ``announced``, ``pending`` (being sent), ``unhealthy``,
    ``withdrawn-by-operator``, ``no-advertisement-selects-peer``,
    ``session-not-established``, ``bfd-down``, ``not-for-this-node``, ``no-address``.
    """
    config = speaker.config
    addresses = speaker.derived.addresses
    wanted = speaker.announced_services()
    out = []
    for peer in config.peers:
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
        desired = speaker.routes_for(peer.name)
        advertised = bgp.rib_out.advertised if bgp is not None else {}
        row["announced"] = [
            show.route_record(prefix, attributes, advertised=prefix in advertised)
            for prefix, attributes in desired.items()
        ]
        down = _session_reason(runner)
        for service in config.services:
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
            prefix = next((p for p in prefixes if p in desired), None)
            override = speaker.overrides.get(service.name)
            if not ads:
                entry["reason"] = "no-advertisement-selects-peer"
                continue
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


def routes(speaker: Speaker) -> dict[str, Any]:
    config = speaker.config
    services = []
    for service in config.services:
        address = service.address or speaker.derived.addresses.get(service.name)
        services.append({
            "service": service.name,
            "address": str(address) if address else None,
            "pool": service.pool,
            "healthy": None if service.health is None else service.name in speaker.healthy,
            "override": speaker.overrides.get(service.name),
        })  # fmt: skip
    return {"peers": explain_routes(speaker), "services": services}


def config_view(speaker: Speaker) -> dict[str, Any]:
    data: dict[str, Any] = show.redact(speaker.config)
    data["assigned_addresses"] = {k: str(v) for k, v in speaker.derived.addresses.items()}
    data["overrides"] = dict(speaker.overrides)
    return data


def status(speaker: Speaker) -> dict[str, Any]:
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
        "stopping": speaker.stopping,
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


_QUERIES: dict[str, Callable[[Speaker], Any]] = {
    "status": status,
    "show bfd peers": bfd_peers,
    "show bfd peers counters": bfd_counters,
    "show bgp summary": bgp_summary,
    "show routes": routes,
    "show config": config_view,
}


async def handle(speaker: Speaker, request: Mapping[str, Any]) -> dict[str, Any]:
    """One request -> one reply (``{"ok": true, "data": ...}`` or an error)."""
    command = request.get("command")
    try:
        if not isinstance(command, str):
            raise RequestError('missing "command"')
        if command in _QUERIES:
            return {"ok": True, "data": _QUERIES[command](speaker)}
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
            log.info("reload requested on the control socket")
            result = await speaker.reload_file()
            return {"ok": True, "data": {
                "applied": result.ok, "summary": result.summary(), "errors": list(result.errors),
            }}  # fmt: skip
        if command in ("announce", "withdraw"):
            return {"ok": True, "data": _override(speaker, request, command)}
        if command == "clear-override":
            return {"ok": True, "data": _override(speaker, request, None)}
        raise RequestError(f'unknown command "{command}"')
    except RequestError as exc:
        return {"ok": False, "error": str(exc)}


# ---- the server ----------------------------------------------------------------------------


class ControlServer:
    """Serves :func:`handle` on a Unix socket at ``path`` (created with ``mode``,
    removed when the server stops)."""

    def __init__(self, speaker: Speaker, path: Path | str, mode: int = 0o600) -> None:
        self.speaker = speaker
        self.path = Path(path)
        self.mode = mode
        self._inode: int | None = None

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

    async def _connection(self, stream: trio.SocketStream) -> None:
        buffer = bytearray()
        async with stream:
            try:
                while True:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        return
                    buffer += chunk
                    while b"\n" in buffer:
                        line, _, rest = bytes(buffer).partition(b"\n")
                        buffer = bytearray(rest)
                        await stream.send_all(await self._reply(line))
                    if len(buffer) > MAX_LINE:
                        await stream.send_all(_encode({"ok": False, "error": "request too long"}))
                        return
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return

    async def _reply(self, line: bytes) -> bytes:
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            return _encode({"ok": False, "error": f"bad request: {exc}"})
        try:
            reply = await handle(self.speaker, request)
        except Exception as exc:  # a bug must not take the speaker down
            log.exception("control: %s failed", request.get("command"))
            reply = {"ok": False, "error": f"internal error: {exc}"}
        return _encode(reply)


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
