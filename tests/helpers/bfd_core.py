"""One sans-IO BFD session driven by hand: our side made, the peer's packets built and fed."""

from __future__ import annotations

import random
from typing import Any

from protocols.bfd import (
    ControlPacket,
    DiscardReason,
    Session,
    SessionConfig,
    State,
    StateChanged,
)

FAST = SessionConfig(desired_min_tx_us=50_000, required_min_rx_us=50_000, detect_mult=3)
PEER = 99
LOCAL = 1


def make(config: SessionConfig = FAST, now: float = 0.0, seed: int = 0) -> Session:
    """Our session, discriminator :data:`LOCAL`."""
    return Session(config, rng=random.Random(seed), now=now, local_discriminator=LOCAL)


def peer(state: State, **kwargs: Any) -> ControlPacket:
    """A packet from the peer (discriminator :data:`PEER`) in ``state``, ``kwargs`` on top."""
    fields: dict[str, Any] = {
        "state": state,
        "detect_mult": 3,
        "my_discriminator": PEER,
        "your_discriminator": 0 if state in (State.DOWN, State.ADMIN_DOWN) else LOCAL,
        "desired_min_tx_us": 50_000,
        "required_min_rx_us": 50_000,
    }
    fields.update(kwargs)
    return ControlPacket(**fields)


def sent(session: Session) -> list[ControlPacket]:
    """What the session has to send, decoded."""
    return [ControlPacket.decode(d) for d in session.datagrams_to_send()]


def events(session: Session) -> list[StateChanged]:
    """The state changes the session reports (other events dropped)."""
    out = []
    while (event := session.next_event()) is not None:
        if isinstance(event, StateChanged):
            out.append(event)
    return out


def feed(session: Session, packet: ControlPacket, now: float) -> DiscardReason | None:
    """Hand ``packet`` to the session as received: why it was discarded, or None."""
    return session.receive_packet(packet.encode(), now)
