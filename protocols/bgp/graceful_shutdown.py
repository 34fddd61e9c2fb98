"""RFC 8326 graceful shutdown (drain): the GRACEFUL_SHUTDOWN community on our routes.

Before a planned stop, the routes are announced again with the well-known community
GRACEFUL_SHUTDOWN (65535:0, :attr:`~.communities.WellKnownCommunity.GRACEFUL_SHUTDOWN`)
and, on iBGP, LOCAL_PREF 0 (RFC 8326 §4-§5); a router that lowers the preference of
routes carrying it moves the traffic to other nodes before the session goes down.
These helpers rewrite a route's path attributes; they do not send anything.
"""

from __future__ import annotations

from collections.abc import Iterable

from .attributes import Communities, LocalPref, PathAttribute
from .communities import WellKnownCommunity

__all__ = [
    "GRACEFUL_SHUTDOWN",
    "GRACEFUL_SHUTDOWN_LOCAL_PREF",
    "has_graceful_shutdown",
    "with_graceful_shutdown",
    "without_graceful_shutdown",
]

#: RFC 8326 §3: the GRACEFUL_SHUTDOWN well-known community, 65535:0.
GRACEFUL_SHUTDOWN: int = WellKnownCommunity.GRACEFUL_SHUTDOWN
#: RFC 8326 §4: the LOCAL_PREF a drained route gets on iBGP.
GRACEFUL_SHUTDOWN_LOCAL_PREF = 0


def has_graceful_shutdown(attributes: Iterable[PathAttribute]) -> bool:
    """Whether the attributes carry GRACEFUL_SHUTDOWN in COMMUNITIES."""
    return any(isinstance(a, Communities) and GRACEFUL_SHUTDOWN in a.values for a in attributes)


def with_graceful_shutdown(
    attributes: Iterable[PathAttribute], *, internal: bool
) -> tuple[PathAttribute, ...]:
    """The attributes of a drained route (RFC 8326 §4-§5).

    GRACEFUL_SHUTDOWN is appended to COMMUNITIES (created when absent; not repeated
    when present; the other communities keep their order). On iBGP (``internal``)
    LOCAL_PREF is set to 0, added when absent; on eBGP LOCAL_PREF is left as it is
    (it is not sent to an external peer, RFC 4271 §5.1.5). Other attributes are
    unchanged and keep their order.
    """
    out: list[PathAttribute] = []
    seen_communities = seen_local_pref = False
    for attr in attributes:
        if isinstance(attr, Communities):
            if seen_communities:
                continue  # one COMMUNITIES attribute (RFC 7606 §3 g would keep the first)
            seen_communities = True
            if GRACEFUL_SHUTDOWN in attr.values:
                out.append(attr)
            else:
                out.append(Communities(values=(*attr.values, GRACEFUL_SHUTDOWN)))
        elif isinstance(attr, LocalPref) and internal:
            if not seen_local_pref:
                out.append(LocalPref(value=GRACEFUL_SHUTDOWN_LOCAL_PREF))
            seen_local_pref = True
        else:
            out.append(attr)
    if not seen_communities:
        out.append(Communities(values=(GRACEFUL_SHUTDOWN,)))
    if internal and not seen_local_pref:
        out.append(LocalPref(value=GRACEFUL_SHUTDOWN_LOCAL_PREF))
    return tuple(out)


def without_graceful_shutdown(
    attributes: Iterable[PathAttribute], *, local_pref: int | None = None
) -> tuple[PathAttribute, ...]:
    """The attributes with GRACEFUL_SHUTDOWN removed (undrain): COMMUNITIES loses it
    (and goes when nothing else is left); LOCAL_PREF becomes ``local_pref`` when given
    (the value the route had before the drain), else stays as it is."""
    out: list[PathAttribute] = []
    for attr in attributes:
        if isinstance(attr, Communities):
            values = tuple(v for v in attr.values if v != GRACEFUL_SHUTDOWN)
            if values:
                out.append(Communities(values=values))
        elif isinstance(attr, LocalPref) and local_pref is not None:
            out.append(LocalPref(value=local_pref))
        else:
            out.append(attr)
    return tuple(out)
