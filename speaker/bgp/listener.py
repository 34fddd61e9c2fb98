"""Port 179 for every configured peer: routers may connect to us as we connect to them.

One :class:`BgpListener` serves all sessions of the speaker: one listening socket
per address family (on the wildcard address, or on the addresses given), opened when
the first session of that family registers. An accepted connection is handed to the
session registered for its source address (:meth:`BgpSession.take_connection
<speaker.bgp.session.BgpSession.take_connection>` decides: adopt it, resolve a
collision, or refuse it); a connection from any other address is closed and logged.

TCP MD5 (RFC 2385): each registered peer with a password gets its key on the
listening socket of its family (``TCP_MD5SIG`` per peer address; the kernel then
drops that peer's SYNs without a valid signature, and accepts other peers' unsigned
ones). The key is deleted when the session unregisters.

VRF: a peer with ``vrf`` is served by a listening socket of its own VRF, bound to the
VRF device (``SO_BINDTODEVICE``): with the kernel's default ``tcp_l3mdev_accept =
0`` a socket of the default VRF never sees a connection that arrives in a VRF, and a
VRF socket sees only those. Sessions are keyed by (VRF, address): the same peer
address in two VRFs is two peers, and a connection is handed to the peer of the VRF
whose socket accepted it. A VRF socket opens when the VRF's first session registers;
a missing VRF device is logged and retried like a taken port.

A socket that cannot be bound (port 179 taken, e.g. by another BGP daemon on the
node) does not stop the speaker: one ERROR line, the sessions keep connecting out,
and the bind is retried every ``retry`` seconds (INFO line when it succeeds). Only
a session's private listener (a passive session run without a shared one) is
``required``: there the bind error ends the session with
:class:`~speaker.bgp.net.BgpSocketError`.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import math
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING

import trio

from speaker import netlookup
from speaker.bgp import net
from speaker.bgp.config import IPAddress
from speaker.log import fields

if TYPE_CHECKING:
    from speaker.bgp.session import BgpSession

__all__ = ["BgpListener"]

log = logging.getLogger("speaker.bgp")

BACKLOG = 64
#: A refused (unknown) source address is logged at most once per this many seconds.
REFUSED_LOG_INTERVAL = 60.0
#: How long a connection from a known peer whose session is not running (between two
#: sessions, e.g. waiting for BFD to be stable) is held for the next session. Closing
#: it at once would show the router an established connection that ends at once: BIRD
#: takes that for a protocol error and waits its error wait time (60 s) before it
#: accepts us again, where a kernel refusal (no listener) let it retry in a second.
HOLD_FOR = 10.0
_REFUSED_MEMORY = 1024

#: A session's peer as the listener knows it: (VRF device or None, address).
PeerKey = tuple[str | None, IPAddress]
#: A listening socket: (IP version, VRF device or None).
SocketKey = tuple[int, str | None]


def _peer_key(session: BgpSession) -> PeerKey:
    return (session.config.vrf, session.config.peer_address)


def _socket_key(session: BgpSession) -> SocketKey:
    return (session.config.peer_address.version, session.config.vrf)


class BgpListener:
    """The shared listening sockets and the sessions they hand connections to.

    Run :meth:`run` in a nursery (``await nursery.start(listener.run)``) before
    sessions :meth:`register`; a :class:`~speaker.bgp.session.BgpSession` whose
    config carries the listener registers itself while it runs.
    """

    def __init__(
        self,
        *,
        port: int = 179,
        addresses: Sequence[IPAddress] = (),
        retry: float = 30.0,
        required: bool = False,
    ) -> None:
        self.port = port
        #: Bind addresses per IP version; a version without one binds the wildcard.
        self.addresses: dict[int, IPAddress] = {a.version: a for a in addresses}
        self.retry = retry
        self.required = required
        self.sessions: dict[PeerKey, BgpSession] = {}
        self.sockets: dict[SocketKey, trio.socket.SocketType] = {}
        #: The last bind error per socket, while that socket is not open.
        self.errors: dict[SocketKey, str] = {}
        self.accepted = 0
        self.refused = 0
        self._opening: set[SocketKey] = set()
        #: Peers that had a session: their connections are held while none runs.
        self._known: set[PeerKey] = set()
        self._held: dict[PeerKey, trio.socket.SocketType] = {}
        self._refused_logged: dict[PeerKey, float] = {}
        #: A VRF socket's VRF ifindex when it was opened, and its accept loop's scope:
        #: a VRF deleted and created again has a new index the old socket never hears.
        self._vrf_index: dict[SocketKey, int | None] = {}
        self._accepting: dict[SocketKey, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None

    # ---- the task -------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for key in sorted({_socket_key(s) for s in self._live()}, key=str):
                    self._ensure(key)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            for sock in [*self.sockets.values(), *self._held.values()]:
                sock.close()
            self.sockets.clear()
            self._held.clear()

    # ---- sessions -------------------------------------------------------------------

    def register(self, session: BgpSession) -> None:
        """Hand ``session`` its peer's incoming connections from now on (the last
        registration for an address wins). Raises
        :class:`~speaker.bgp.net.BgpSocketError` if the peer's MD5 key cannot be set,
        or, when ``required``, if the socket cannot be bound."""
        cfg = session.config
        peer = _peer_key(session)
        self.sessions[peer] = session
        self._known.add(peer)
        key = _socket_key(session)
        if key in self.sockets and key[1] is not None:
            self._reopen_if_vrf_changed(key)
        sock = self.sockets.get(key)
        if sock is not None:
            net.set_md5(sock, cfg)
        else:
            self._ensure(key)
        held = self._held.pop(peer, None)
        if held is not None:
            log.info("bgp %s: taking the connection from %s the listener held for it",
                     session.name, cfg.peer_address,
                     extra=fields(peer=session.name, protocol="bgp"))  # fmt: skip
            session.take_connection(held)

    def unregister(self, session: BgpSession) -> None:
        cfg = session.config
        if self.sessions.get(_peer_key(session)) is not session:
            return
        del self.sessions[_peer_key(session)]
        sock = self.sockets.get(_socket_key(session))
        if sock is not None and cfg.password is not None:
            net.clear_md5(sock, cfg.peer_address)

    def _live(self) -> list[BgpSession]:
        return list(self.sessions.values())

    # ---- sockets --------------------------------------------------------------------

    def _ensure(self, key: SocketKey) -> None:
        """Open the socket of ``key`` now, or keep retrying in the background."""
        if key in self.sockets or key in self._opening or self._nursery is None:
            return
        try:
            sock = self._open(key)
        except OSError as exc:
            message = f"cannot listen on {self._where(key)}: {self._why(exc)}"
            if exc.errno == errno.EADDRINUSE:
                message += " (another BGP daemon on this node?)"
            if self.required:
                raise net.BgpSocketError(exc.errno, message) from None
            self.errors[key] = message
            log.error("bgp: %s; connecting out only, retrying every %g s", message, self.retry)
            self._opening.add(key)
            self._nursery.start_soon(self._retry, key)
            return
        self._serve_socket(key, sock)

    def _serve_socket(self, key: SocketKey, sock: trio.socket.SocketType) -> None:
        assert self._nursery is not None
        self.sockets[key] = sock
        self.errors.pop(key, None)
        if key[1] is not None:
            self._vrf_index[key] = netlookup.vrf_index(key[1])
        for session in self._live():
            if _socket_key(session) == key:
                net.set_md5(sock, session.config)
        scope = trio.CancelScope()
        self._accepting[key] = scope
        self._nursery.start_soon(self._scoped_accept, scope, sock, key[1])

    async def _scoped_accept(
        self, scope: trio.CancelScope, sock: trio.socket.SocketType, vrf: str | None
    ) -> None:
        with scope:
            await self._accept(sock, vrf)

    def _reopen_if_vrf_changed(self, key: SocketKey) -> None:
        """A VRF socket whose VRF device is not the one it was bound to (deleted, or
        deleted and created again) is closed, and opened again if the VRF exists."""
        if netlookup.vrf_index(key[1] or "") == self._vrf_index.get(key):
            return
        log.info("bgp: VRF %s changed since %s was opened: opening it again", key[1],
                 self._where(key))  # fmt: skip
        self._accepting.pop(key).cancel()
        self.sockets.pop(key).close()
        self._vrf_index.pop(key, None)

    async def _retry(self, key: SocketKey) -> None:
        while True:
            await trio.sleep(self.retry)
            try:
                sock = self._open(key)
            except OSError as exc:
                self.errors[key] = f"cannot listen on {self._where(key)}: {self._why(exc)}"
                continue
            self._opening.discard(key)
            log.info("bgp: listening on %s", self._where(key))
            try:
                self._serve_socket(key, sock)
            except net.BgpSocketError as exc:
                log.error("bgp: %s", exc.strerror)
            return

    @staticmethod
    def _why(exc: OSError) -> str:
        if exc.errno == errno.ENODEV:
            return "no such VRF device"
        return str(exc.strerror or exc)

    def _where(self, key: SocketKey) -> str:
        version, vrf = key
        address = self.addresses.get(version)
        host = str(address) if address else ("0.0.0.0" if version == 4 else "::")
        where = f"[{host}]:{self.port}" if version == 6 else f"{host}:{self.port}"
        return where + (f" in VRF {vrf}" if vrf else "")

    def _open(self, key: SocketKey) -> trio.socket.SocketType:
        version, vrf = key
        family = socket.AF_INET if version == 4 else socket.AF_INET6
        address = self.addresses.get(version)
        host = str(address) if address else ("0.0.0.0" if version == 4 else "::")
        # A stdlib socket: binding a numeric address never blocks, so this stays sync.
        raw = socket.socket(family, socket.SOCK_STREAM)
        try:
            if vrf is not None:
                net.bind_to_device(raw, vrf)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if version == 6:
                raw.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            raw.bind((host, self.port))
            raw.listen(BACKLOG)
        except BaseException:
            raw.close()
            raise
        return trio.socket.from_stdlib_socket(raw)

    async def _accept(self, sock: trio.socket.SocketType, vrf: str | None = None) -> None:
        while True:
            try:
                conn, address = await sock.accept()
            except OSError as exc:  # ECONNABORTED, EMFILE...: keep serving
                log.warning("bgp: accept on %s failed: %s", sock.getsockname(), exc)
                await trio.sleep(0.1)
                continue
            try:
                # A link-local source keeps its scope (fe80::1%eth0): an unnumbered
                # session is registered under its router's address on its interface.
                host = str(address[0])
                if not host.lower().startswith("fe80"):
                    host = host.split("%", maxsplit=1)[0]
                peer = ipaddress.ip_address(host)
            except ValueError:
                conn.close()
                continue
            session = self.sessions.get((vrf, peer))
            if session is None and (vrf, peer) in self._known and self._nursery is not None:
                self._hold(conn, (vrf, peer))
                continue
            if session is None:
                self._refuse(conn, (vrf, peer))
                continue
            self.accepted += 1
            session.take_connection(conn)

    def _hold(self, conn: trio.socket.SocketType, peer: PeerKey) -> None:
        """Keep ``conn`` for the peer's next session, at most :data:`HOLD_FOR`."""
        assert self._nursery is not None
        older = self._held.pop(peer, None)
        if older is not None:
            older.close()
        self._held[peer] = conn
        log.info("bgp: holding a connection from %s for its next session (at most %g s)",
                 _show(peer), HOLD_FOR)  # fmt: skip
        self._nursery.start_soon(self._expire, conn, peer)

    async def _expire(self, conn: trio.socket.SocketType, peer: PeerKey) -> None:
        await trio.sleep(HOLD_FOR)
        if self._held.get(peer) is conn:
            del self._held[peer]
            conn.close()
            log.info("bgp: closed the connection held for %s: no session came", _show(peer))

    def _refuse(self, conn: trio.socket.SocketType, peer: PeerKey) -> None:
        conn.close()
        self.refused += 1
        now = trio.current_time()
        if now - self._refused_logged.get(peer, -math.inf) < REFUSED_LOG_INTERVAL:
            return
        if len(self._refused_logged) >= _REFUSED_MEMORY:
            self._refused_logged.clear()
        self._refused_logged[peer] = now
        log.warning("bgp: refused a connection from %s: not a configured peer (or its session "
                    "is not running, or has listen = false)", _show(peer))  # fmt: skip


def _show(peer: PeerKey) -> str:
    vrf, address = peer
    return f"{address} in VRF {vrf}" if vrf else str(address)
