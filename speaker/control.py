"""The local control socket: ``speaker show ...``, ``reload``, ``announce``...

A Unix stream socket (``[control] socket``, mode ``[control] mode``, 0600 by
default: only its owner may connect); there is no network listener. The protocol
is one JSON object per line each way::

    -> {"command": "show bgp neighbor", "name": "rtr1"}
    <- {"ok": true, "data": {...}}
    <- {"ok": false, "error": "no peer named \\"rtr9\\" (peers: rtr1, rtr2)"}

The commands and their parameters are the table of :mod:`speaker.commands`
(``status``, ``show bfd peers``, ``show bgp summary``, ``show bgp neighbor``
(``name``), ``reload``, ``announce`` (``service``)...); the records they answer with
are built by :mod:`speaker.view`. The server runs in the speaker's Trio loop.
Replies whose size grows with peers, services or routes are built (by the views)
and encoded (here) in slices, a checkpoint every :data:`speaker.looplag.SLICE` of
work: a ``show routes`` at 65,536 routes never holds the loop for more than a slice.

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
import itertools
import json
import logging
import os
import socket
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio

from speaker import commands, gcpause
from speaker.app import Speaker
from speaker.config.model import DEFAULT_CONTROL_SOCKET
from speaker.looplag import LoopMonitor, Slicer

# The view modules are imported here, before the loop starts (speaker.view loads them
# lazily for the CLI's sake): importing them inside a request would be a 5-10 ms step.
from speaker.view import (  # noqa: F401
    EncodedArray,
    RequestError,
    bfd_status,
    explain_routes,
    frr,
    frr_live,
    live,
    records,
)

__all__ = [
    "DEFAULT_SOCKET",
    "ControlError",
    "ControlServer",
    "EncodedArray",
    "RequestError",
    "Slicer",
    "bfd_status",
    "encode_reply",
    "explain_routes",
    "handle",
    "request",
    "send_pieces",
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


# ---- dispatch (the table: speaker/commands.py) ----------------------------------------------


async def handle(
    speaker: Speaker, request: Mapping[str, Any], *, monitor: LoopMonitor | None = None
) -> dict[str, Any]:
    """One request -> one reply (``{"ok": true, "data": ...}`` or an error), by the
    command table of :mod:`speaker.commands`."""
    return await commands.dispatch(speaker, request, monitor=monitor)


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


async def send_pieces(stream: trio.abc.SendStream, pieces: list[bytes]) -> None:
    """Send ``pieces`` one after the other, each let go of once sent: freeing a
    ``show routes`` of 65,536 services (~30 MB in 470 pieces) at once is a step of
    3-10 ms.
    ``pieces`` is emptied, also when the send fails or is cancelled (a client that
    stops reading: ``speaker show routes | head``), a few pieces per step."""
    try:
        for i in range(len(pieces)):
            piece, pieces[i] = pieces[i], b""
            await stream.send_all(piece)
            del piece
    finally:
        with trio.CancelScope(shield=True):
            while pieces:
                del pieces[-16:]
                await trio.lowlevel.checkpoint()


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
                await send_pieces(stream, reply)
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
            # A big reply lives over many loop steps: no full collection scanning it,
            # and a config a reload replaces meanwhile waits for it to be freed.
            with gcpause.paused(), self.speaker.readers.reading():
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
