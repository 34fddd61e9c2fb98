"""Graceful Restart (RFC 4724) with its Notification extension (RFC 8538), sans-IO.

What is here, and where the rest lives:

* The capability (code 64) is :class:`~.capabilities.GracefulRestartCapability`:
  Restart Flags R (restarted) and N (RFC 8538 Notification support), the 12-bit
  Restart Time in seconds, and per AFI/SAFI the F bit (forwarding state preserved).
  :func:`graceful_restart_capability` builds ours. A malformed one received (value
  shorter than 2 octets, or not 2 + 4k) does not reset the session: it decodes to
  :class:`~.capabilities.MalformedCapability` and the peer counts as not advertising
  graceful restart (see :data:`~.capabilities.IGNORED_WHEN_MALFORMED`).
* What the OPEN exchange settled is :class:`GracefulRestartNegotiation`, available as
  ``NegotiatedSession.graceful_restart_negotiation``.
* End-of-RIB (RFC 4724 §2): :func:`~.update.end_of_rib` builds it (an empty UPDATE for
  IPv4 unicast, an UPDATE holding only an empty MP_UNREACH_NLRI otherwise),
  :attr:`~.update.UpdateMessage.end_of_rib` recognises it, and the
  :class:`~.connection.Connection` reports it as an :class:`~.events.EndOfRib` event.
* Hard Reset (RFC 8538 §3): a Cease with subcode 9 whose data is the NOTIFICATION it
  stands for (code, subcode, data). :func:`hard_reset` wraps, :func:`hard_reset_cause`
  unwraps, :func:`needs_hard_reset` is the RFC 8538 §5.1 choice, and
  :func:`outgoing_notification` applies it when both sides set N (the connection does
  this for every NOTIFICATION it sends).

Decisions:

* Only the first Graceful Restart capability of an OPEN counts (RFC 4724 does not
  say what a repeated one means; ``negotiate`` also takes the first).
* Families in a Graceful Restart capability that the session did not negotiate
  (RFC 4760 Multiprotocol) are ignored.
* Cease/BFD Down (RFC 9384, subcode 10) goes out as a Hard Reset, like FRR does: it
  reports a real path failure, and the routes must go at once rather than be kept as
  stale for the Restart Time.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from .capabilities import Capability, GracefulRestartCapability, GracefulRestartFamily
from .constants import CeaseSubcode, NotifCode, to_enum
from .errors import LocalProtocolError
from .messages import NotificationMessage

__all__ = [
    "FORWARDING_STATE_FLAG",
    "HARD_RESET_CEASE_SUBCODES",
    "MAX_RESTART_TIME",
    "NOTIFICATION_FLAG",
    "RESTART_STATE_FLAG",
    "GracefulRestartNegotiation",
    "graceful_restart_capability",
    "hard_reset",
    "hard_reset_cause",
    "is_hard_reset",
    "needs_hard_reset",
    "outgoing_notification",
]

#: RFC 4724 §3: the R bit of the 4-bit Restart Flags (the speaker has restarted).
RESTART_STATE_FLAG = 0x8
#: RFC 8538 §2: the N bit of the Restart Flags (Graceful Notification supported).
NOTIFICATION_FLAG = 0x4
#: RFC 4724 §3: the F bit of a family's flags (forwarding state preserved).
FORWARDING_STATE_FLAG = 0x80
#: RFC 4724 §3: the Restart Time is 12 bits of seconds.
MAX_RESTART_TIME = 0xFFF

#: RFC 8538 §5.1 "Hard Reset" rows of the Cease subcode table: Maximum Number of
#: Prefixes Reached, Administrative Shutdown, Peer De-configured, Hard Reset, plus BFD
#: Down (RFC 9384; see the module docstring). Administrative Reset (4) is "provide
#: user control": ``hard_admin_reset`` of :func:`needs_hard_reset`. Every other
#: NOTIFICATION (other Cease subcodes, Hold Timer Expired, message errors) keeps
#: graceful restart when N is negotiated (RFC 8538 §4).
HARD_RESET_CEASE_SUBCODES: frozenset[int] = frozenset(
    {
        CeaseSubcode.MAXIMUM_PREFIXES_REACHED,
        CeaseSubcode.ADMINISTRATIVE_SHUTDOWN,
        CeaseSubcode.PEER_DECONFIGURED,
        CeaseSubcode.HARD_RESET,
        CeaseSubcode.BFD_DOWN,
    }
)


def graceful_restart_capability(
    *,
    restart_time: int,
    families: Iterable[tuple[int, int]],
    restarting: bool = False,
    forwarding_preserved: bool = False,
    notification: bool = True,
) -> GracefulRestartCapability:
    """Our Graceful Restart capability.

    ``restarting`` sets R (RFC 4724 §3: we have restarted, the peer must not wait for
    our End-of-RIB before sending its routes); ``forwarding_preserved`` sets F on every
    family (after a restart: the routes the peer kept as stale are still valid, so it
    must not flush them, §4.2); ``notification`` sets N (RFC 8538). ``families`` are
    (AFI, SAFI) pairs, duplicates dropped, order kept. Raises
    :class:`LocalProtocolError` when ``restart_time`` does not fit in 12 bits.
    """
    if not 0 <= restart_time <= MAX_RESTART_TIME:
        raise LocalProtocolError(
            f"graceful restart time {restart_time} s is outside 0..{MAX_RESTART_TIME}"
        )
    unique = dict.fromkeys((int(afi), int(safi)) for afi, safi in families)
    return GracefulRestartCapability(
        restart_state=restarting,
        notification=notification,
        restart_time=restart_time,
        families=tuple(
            GracefulRestartFamily(afi=afi, safi=safi, forwarding_preserved=forwarding_preserved)
            for afi, safi in unique
        ),
    )


def _first_gr(caps: Iterable[Capability]) -> GracefulRestartCapability | None:
    return next((c for c in caps if isinstance(c, GracefulRestartCapability)), None)


@attrs.frozen(kw_only=True)
class GracefulRestartNegotiation:
    """Graceful restart as settled by an OPEN exchange (RFC 4724 §3-§4, RFC 8538 §2).

    ``local`` / ``peer``: the Graceful Restart capability each side sent (the first
    one), or None. ``families``: the (AFI, SAFI) pairs the session negotiated.
    """

    local: GracefulRestartCapability | None
    peer: GracefulRestartCapability | None
    families: frozenset[tuple[int, int]]

    @classmethod
    def from_capabilities(
        cls,
        local: Iterable[Capability],
        peer: Iterable[Capability],
        families: Iterable[tuple[int, int]],
    ) -> GracefulRestartNegotiation:
        return cls(
            local=_first_gr(local),
            peer=_first_gr(peer),
            families=frozenset((int(a), int(s)) for a, s in families),
        )

    @property
    def negotiated(self) -> bool:
        """Both sides advertised the capability: graceful restart is in effect."""
        return self.local is not None and self.peer is not None

    @property
    def notification(self) -> bool:
        """RFC 8538 semantics apply: both sides set N (and graceful restart is on)."""
        return (
            self.local is not None
            and self.peer is not None
            and self.local.notification
            and self.peer.notification
        )

    @property
    def peer_restart_time(self) -> int | None:
        """The peer's Restart Time in seconds, or None when it sent no capability."""
        return None if self.peer is None else self.peer.restart_time

    @property
    def peer_restarted(self) -> bool:
        """The peer's R bit: it has just restarted (do not wait for its End-of-RIB)."""
        return self.peer is not None and self.peer.restart_state

    @property
    def peer_notification(self) -> bool:
        """The peer's N bit (RFC 8538), whatever we sent."""
        return self.peer is not None and self.peer.notification

    def _in_session(
        self, fams: Iterable[GracefulRestartFamily], *, f_bit: bool
    ) -> frozenset[tuple[int, int]]:
        return frozenset(
            (f.afi, f.safi)
            for f in fams
            if (f.afi, f.safi) in self.families and (f.forwarding_preserved or not f_bit)
        )

    @property
    def peer_families(self) -> frozenset[tuple[int, int]]:
        """Negotiated families the peer listed (it can restart gracefully for them)."""
        return (
            frozenset() if self.peer is None else self._in_session(self.peer.families, f_bit=False)
        )

    @property
    def peer_forwarding_preserved(self) -> frozenset[tuple[int, int]]:
        """Negotiated families the peer listed with F set (its forwarding state survived)."""
        return (
            frozenset() if self.peer is None else self._in_session(self.peer.families, f_bit=True)
        )

    @property
    def retained_families(self) -> frozenset[tuple[int, int]]:
        """Families for which the peer keeps our routes (as stale) if we restart.

        RFC 4724 §4.2: the receiving speaker retains the routes of the families the
        restarting speaker listed in its capability; it must itself have advertised
        the capability. Empty when graceful restart is not negotiated.
        """
        if not self.negotiated or self.local is None:
            return frozenset()
        return self._in_session(self.local.families, f_bit=False)

    def retained_after(
        self, notification: NotificationMessage | None
    ) -> frozenset[tuple[int, int]]:
        """Families whose routes the peer keeps when the session ends this way.

        ``notification`` is the NOTIFICATION that ends it (sent or received, as it
        went on the wire), or None when TCP just closes (process killed, hold timer
        without a NOTIFICATION, restart path without N). RFC 4724 §4: a plain TCP
        close keeps graceful restart; any NOTIFICATION ends it, unless both sides set
        N (RFC 8538 §4), in which case only a Hard Reset does.
        """
        if notification is None:
            return self.retained_families
        if not self.notification or is_hard_reset(notification):
            return frozenset()
        return self.retained_families


def is_hard_reset(msg: NotificationMessage) -> bool:
    """Cease / Hard Reset (RFC 8538 §3)."""
    return msg.code == NotifCode.CEASE and msg.subcode == CeaseSubcode.HARD_RESET


def hard_reset(inner: NotificationMessage) -> NotificationMessage:
    """RFC 8538 §3: the Hard Reset standing for ``inner``, whose code and subcode
    (one octet each) and data make up its data. ``inner.data`` keeps whatever it
    carries (an RFC 9003 shutdown message for Cease 2/4). Raises
    :class:`LocalProtocolError` when ``inner`` is itself a Hard Reset."""
    if is_hard_reset(inner):
        raise LocalProtocolError("a Hard Reset cannot carry another Hard Reset")
    if not (0 <= inner.code <= 0xFF and 0 <= inner.subcode <= 0xFF):
        raise LocalProtocolError("NOTIFICATION code and subcode are one octet each")
    return NotificationMessage(
        code=NotifCode.CEASE,
        subcode=CeaseSubcode.HARD_RESET,
        data=bytes((inner.code, inner.subcode)) + inner.data,
    )


def hard_reset_cause(msg: NotificationMessage) -> NotificationMessage | None:
    """The NOTIFICATION a Hard Reset stands for, or None when ``msg`` is not a Hard
    Reset or its data is shorter than the 2 octets of a code and subcode (such a
    Hard Reset still ends the session, for no stated reason)."""
    if not is_hard_reset(msg) or len(msg.data) < 2:
        return None
    return NotificationMessage(
        code=to_enum(NotifCode, msg.data[0]), subcode=msg.data[1], data=msg.data[2:]
    )


def needs_hard_reset(msg: NotificationMessage, *, hard_admin_reset: bool = False) -> bool:
    """RFC 8538 §5.1: whether ``msg`` must go out as a Hard Reset when N is negotiated.

    True for the Cease subcodes of :data:`HARD_RESET_CEASE_SUBCODES`, and for
    Administrative Reset when ``hard_admin_reset`` (the "user control" of §5.1).
    """
    if msg.code != NotifCode.CEASE:
        return False
    if msg.subcode == CeaseSubcode.ADMINISTRATIVE_RESET:
        return hard_admin_reset
    return msg.subcode in HARD_RESET_CEASE_SUBCODES


def outgoing_notification(
    msg: NotificationMessage,
    negotiation: GracefulRestartNegotiation | None,
    *,
    hard_admin_reset: bool = False,
) -> NotificationMessage:
    """The NOTIFICATION to put on the wire for ``msg``: wrapped in a Hard Reset when
    both sides set N and RFC 8538 §5.1 asks for one, else ``msg`` unchanged."""
    if negotiation is None or not negotiation.notification or is_hard_reset(msg):
        return msg
    if needs_hard_reset(msg, hard_admin_reset=hard_admin_reset):
        return hard_reset(msg)
    return msg
