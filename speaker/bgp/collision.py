"""Connection collisions (RFC 4271 §6.8): the peer's connection while ours is opening.

The peer may connect while our own connection is in OpenSent or OpenConfirm. The
session then runs the peer's connection beside its own, as a :class:`Candidate` with
a core of its own, until a BGP Identifier is known; :func:`collision_outcome` says
which of the two to close (with Cease/7). The tasks that do it are the session's
(``BgpSession._run_candidate``): it swaps the winner in.
"""

from __future__ import annotations

import random
from ipaddress import IPv4Address

import trio

from protocols.bgp import Connection, Initiator, LocalProtocolError, State, resolve_collision
from speaker.bgp.config import BgpPeerConfig
from speaker.bgp.link import Link

__all__ = ["OPENING", "Candidate", "collision_outcome", "peer_id"]

OPENING = (State.OPEN_SENT, State.OPEN_CONFIRM)


class Candidate:
    """The peer's connection while ours is opening (a collision): its own core."""

    def __init__(self, link: Link, rng: random.Random, config: BgpPeerConfig) -> None:
        self.link = link
        self.link.outgoing = False
        self.core = Connection(config.session_config(), rng=rng)
        self.buffer = bytearray()
        self.wake: trio.CancelScope | None = None

    def next_message(self) -> bytes | None:
        """One whole message from what was received (a bad length goes whole to the
        core, which rejects it)."""
        buf = self.buffer
        if len(buf) < 19:
            return None
        length = int.from_bytes(buf[16:18], "big")
        if length < 19:
            length = len(buf)
        if len(buf) < length:
            return None
        message = bytes(buf[:length])
        del buf[:length]
        return message


def peer_id(*cores: Connection) -> str:
    for core in cores:
        if core.state in (State.OPEN_CONFIRM, State.ESTABLISHED) and core.peer_open:
            return str(core.peer_open.bgp_identifier)
    return "?"


def collision_outcome(
    ours: Connection, theirs: Connection, ours_outgoing: bool | None, router_id: IPv4Address
) -> bool | None:
    """Whether the peer's new connection (``theirs``, the candidate) wins and ours is
    closed (True), or the candidate is closed (False); None: not decided yet.
    ``ours_outgoing``: whether our connection is the one we opened (False: an earlier
    one of the peer's); None when it failed meanwhile (theirs then takes over)."""
    if ours_outgoing is None:
        return True if theirs.state in OPENING else None
    if not ours_outgoing:
        # Both are the peer's, so no identifiers to compare: the first to bring its
        # OPEN stays (the router gave the other one up).
        if theirs.state in (State.OPEN_CONFIRM, State.ESTABLISHED):
            return True
        if ours.state in (State.OPEN_CONFIRM, State.ESTABLISHED):
            return False
        return None
    opened = [c for c in (theirs, ours) if c.state in (State.OPEN_CONFIRM, State.ESTABLISHED)]
    if not opened or opened[0].peer_open is None:
        return None
    try:
        closed = resolve_collision(
            local_id=router_id,
            peer_id=opened[0].peer_open.bgp_identifier,
            outgoing_state=ours.state,
            incoming_state=theirs.state,
        )
    except LocalProtocolError:  # equal identifiers: keep the one we have
        return False
    return closed is Initiator.LOCAL  # ours (the outgoing one) is closed
