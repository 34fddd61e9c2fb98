"""Two sans-IO BGP connections wired to each other (like h11's ConnectionPair), their
configs (A active, B passive), B's OPEN on the wire, and the events of one kind."""

from __future__ import annotations

import random
from collections.abc import Sequence
from ipaddress import IPv4Address
from typing import Any, TypeVar

from protocols.bgp import (
    Connection,
    Event,
    FourOctetAsCapability,
    MultiprotocolCapability,
    OpenMessage,
    SessionConfig,
    ShouldConnect,
    State,
)

E = TypeVar("E", bound=Event)
A_ID = IPv4Address("192.0.2.1")
B_ID = IPv4Address("192.0.2.2")


def config(**kw: Any) -> SessionConfig:
    """A's config (AS 65001 to 65002, active), ``kw`` on top."""
    base: dict[str, Any] = {"local_asn": 65001, "peer_asn": 65002, "router_id": A_ID}
    base.update(kw)
    return SessionConfig(**base)


def config_b(**kw: Any) -> SessionConfig:
    """B's config (AS 65002 to 65001, passive), ``kw`` on top."""
    base: dict[str, Any] = {
        "local_asn": 65002,
        "peer_asn": 65001,
        "router_id": B_ID,
        "passive": True,
    }
    base.update(kw)
    return SessionConfig(**base)


def of(events: Sequence[Event], cls: type[E]) -> list[E]:
    """The events of kind ``cls``."""
    return [e for e in events if isinstance(e, cls)]


class ConnectionPair:
    """Two connections whose outputs are fed into each other (like h11's ConnectionPair)."""

    def __init__(self, a: SessionConfig | None = None, b: SessionConfig | None = None) -> None:
        self.a = Connection(a or config(), rng=random.Random(1))
        self.b = Connection(b or config_b(), rng=random.Random(2))
        self.a_events: list[Event] = []
        self.b_events: list[Event] = []

    def pump(self, now: float) -> None:
        while True:
            da, db = self.a.data_to_send(), self.b.data_to_send()
            if not da and not db:
                return
            if da:
                self.b_events += self.b.receive_data(da, now)
            if db:
                self.a_events += self.a.receive_data(db, now)

    def establish(self, now: float = 0.0) -> None:
        assert of(self.a.start(now), ShouldConnect)
        assert not of(self.b.start(now), ShouldConnect)
        assert self.b.state is State.ACTIVE
        self.a_events += self.a.connection_made(now)
        self.b_events += self.b.connection_made(now)
        self.pump(now)
        assert self.a.state is State.ESTABLISHED
        assert self.b.state is State.ESTABLISHED


def peer_open(**kw: Any) -> bytes:
    """B's OPEN as it arrives on the wire, with ``kw`` overriding its fields."""
    fields: dict[str, Any] = {
        "my_as": 65002,
        "hold_time": 90,
        "bgp_identifier": B_ID,
        "capabilities": (
            MultiprotocolCapability(afi=1, safi=1),
            FourOctetAsCapability(asn=65002),
        ),
    }
    fields.update(kw)
    return OpenMessage(**fields).encode()
