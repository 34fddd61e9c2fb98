"""An in-process BGP router on loopback (the sans-IO core behind a trio socket), our side's
peer config, and host routes to announce."""

from __future__ import annotations

import ipaddress
import math
import random
import socket
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from typing import Any, TypeVar

import trio
import trio.testing

from protocols.bgp import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    Connection,
    Event,
    Prefix,
    SessionConfig,
    UpdateMessage,
    UpdateReceived,
)
from speaker.bgp import BgpPeerConfig, RouteAttributes
from speaker.bgp.net import md5sig

E = TypeVar("E", bound=Event)
LOCAL_ASN, PEER_ASN = 64513, 64512
PEER_ID = IPv4Address("198.18.0.2")


def peer_core(**kw: Any) -> Connection:
    """The router's core: passive, any peer AS, both unicast families, ``kw`` on top."""
    fields: dict[str, Any] = {
        "local_asn": PEER_ASN,
        "peer_asn": None,
        "router_id": PEER_ID,
        "passive": True,
        "extended_message": False,
        "families": (IPV4_UNICAST, IPV6_UNICAST),
        "hold_time": 90,
    }
    fields.update(kw)
    return Connection(SessionConfig(**fields), rng=random.Random(2))


class Peer:
    """A minimal passive BGP router on loopback: the core plus a socket and timers.

    ``raw`` collects every message as received (bytes), ``events`` the core's events.
    ``frozen`` stops its timers and reading (a hung router).
    """

    def __init__(self, core: Connection, *, family: int = socket.AF_INET) -> None:
        self.core = core
        self.family = family
        self.events: list[tuple[float, Event]] = []
        self.updates: list[tuple[float, UpdateMessage]] = []
        self.sizes: list[int] = []
        self.keepalives_in: list[float] = []
        self.port = 0
        self.sock: trio.socket.SocketType | None = None
        self.closed = trio.Event()
        self.frozen = False
        self.password: str | None = None
        self._wake = trio.Event()
        self.pending: list[bytes] = []

    def of(self, cls: type[E]) -> list[E]:
        return [e for _, e in self.events if isinstance(e, cls)]

    def announced(self) -> dict[IPv4Network | ipaddress.IPv6Network, UpdateMessage]:
        rib: dict[IPv4Network | ipaddress.IPv6Network, UpdateMessage] = {}
        for _, update in self.updates:
            for p in update.withdrawn_prefixes:
                rib.pop(p, None)
            for p in update.announced:
                rib[p] = update
        return rib

    async def serve(
        self, *, port: int = 0, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Accept one connection on ``port`` (0: any free one, passed to ``started``)."""
        listener = trio.socket.socket(self.family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        host = "127.0.0.1" if self.family == socket.AF_INET else "::1"
        if self.password is not None:
            listener.setsockopt(
                socket.IPPROTO_TCP, 14, md5sig(ipaddress.ip_address(host), self.password.encode())
            )
        await listener.bind((host, port))
        listener.listen(4)
        self.port = listener.getsockname()[1]
        task_status.started(self.port)
        with listener:
            sock, _ = await listener.accept()
        self.sock = sock
        now = trio.current_time()
        self._feed(self.core.start(now))
        self._feed(self.core.connection_made(now))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._reader)
            nursery.start_soon(self._timers)
            await self.closed.wait()
            nursery.cancel_scope.cancel()
        sock.close()

    def _feed(self, events: list[Event]) -> None:
        now = trio.current_time()
        self.events += [(now, e) for e in events]
        data = self.core.data_to_send()
        if data and self.sock is not None:
            self.pending.append(data)
            self._wake.set()

    async def _reader(self) -> None:
        assert self.sock is not None
        buf = bytearray()
        while True:
            while self.frozen:
                await trio.sleep(0.5)
            data = await self.sock.recv(65536)
            buf += data
            while len(buf) >= 19:
                length = int.from_bytes(buf[16:18], "big")
                if len(buf) < length:
                    break
                raw = bytes(buf[:length])
                del buf[:length]
                self.sizes.append(length)
                if raw[18] == 4:
                    self.keepalives_in.append(trio.current_time())
                before = len(self.events)
                self._feed(self.core.receive_data(raw, trio.current_time()))
                for at, e in self.events[before:]:
                    if isinstance(e, UpdateReceived):
                        self.updates.append((at, e.update))
            if not data:
                self._feed(self.core.receive_data(b"", trio.current_time()))
                self.closed.set()
                return

    async def _timers(self) -> None:
        assert self.sock is not None
        while True:
            while self.pending:
                data = self.pending.pop(0)
                await send_all(self.sock, data)
            if self.frozen:
                await trio.sleep(math.inf)
            deadline = self.core.get_timer()
            with trio.move_on_at(math.inf if deadline is None else deadline):
                self._wake = trio.Event()
                await self._wake.wait()
            if self.frozen:
                await trio.sleep(math.inf)
            now = trio.current_time()
            deadline = self.core.get_timer()
            if deadline is not None and deadline <= now:
                self._feed(self.core.handle_timer(now))

    def send(self, data: bytes) -> None:
        self.pending.append(data)
        self._wake.set()


async def send_all(sock: trio.socket.SocketType, data: bytes) -> None:
    """Write all of ``data``."""
    view = memoryview(data)
    while view:
        sent = await sock.send(view)
        view = view[sent:]


def our_config(port: int, **kw: Any) -> BgpPeerConfig:
    """Our side of a session to the :class:`Peer` on ``port``, ``kw`` on top."""
    fields: dict[str, Any] = {
        "name": "t",
        "peer_address": "127.0.0.1",
        "peer_port": port,
        "peer_asn": PEER_ASN,
        "local_asn": LOCAL_ASN,
        "router_id": "198.18.0.1",
        "connect_retry": 1.0,
        "connect_time": 2.0,
    }
    fields.update(kw)
    return BgpPeerConfig(**fields)


def host_routes(n: int, attributes: RouteAttributes | None = None) -> dict[Prefix, RouteAttributes]:
    """``n`` host routes from 198.19.0.0/32 up, all with ``attributes``."""
    base = int(IPv4Address("198.19.0.0"))
    attrs_ = attributes or RouteAttributes()
    return {IPv4Network((base + i, 32)): attrs_ for i in range(n)}


async def wait_for(cond: Callable[[], object], what: str = "condition") -> None:
    """Until ``cond()`` is true (checked every 10 ms, 60 s at most)."""
    with trio.fail_after(60):
        while not cond():
            await trio.sleep(0.01)
