"""Adj-RIB-Out and Adj-RIB-In of one peer (RFC 4271 §3.2), without any I/O.

:class:`AdjRibOut` holds the owner's desired routes and what the peer was sent; the
session asks it for the next batch of changes (announcements grouped by identical
attributes, withdrawals) whenever its send buffer has room, so a large table is
packed into full UPDATEs and never queued in memory all at once. After a session
comes up everything is sent, then End-of-RIB per family (RFC 4724 §2); afterwards
only differences.

:class:`AdjRibIn` counts what the peer sends per family and keeps the routes only
when asked to (a full table is 500k+ prefixes).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Mapping

import attrs

from protocols.bgp import (
    AsPath,
    Communities,
    LargeCommunities,
    LocalPref,
    MpReachNlri,
    MpUnreachNlri,
    MultiExitDisc,
    NextHop,
    OriginAttribute,
    PathAttribute,
    Prefix,
    UpdateReceived,
)
from speaker.bgp.config import DEFAULT_ATTRIBUTES, Family, RouteAttributes, family_of

__all__ = ["AdjRibIn", "AdjRibOut", "OutBatch", "ReceivedRoute", "path_attributes"]


def _sort_key(prefix: Prefix) -> tuple[int, int, int]:
    return (prefix.version, int(prefix.network_address), prefix.prefixlen)


def path_attributes(
    attrs_: RouteAttributes,
    *,
    local_asn: int,
    internal: bool,
    next_hop4: NextHop | None,
) -> list[PathAttribute]:
    """The path attributes of a locally originated route on one session.

    ORIGIN; AS_PATH empty on iBGP, our AS on eBGP (RFC 4271 §5.1.2); NEXT_HOP
    (IPv4; IPv6 goes in MP_REACH_NLRI, added by the packer); MED; LOCAL_PREF on iBGP
    only (§5.1.5); COMMUNITIES; LARGE_COMMUNITIES.
    """
    out: list[PathAttribute] = [
        OriginAttribute(value=attrs_.origin),
        AsPath() if internal else AsPath.sequence(local_asn),
    ]
    if next_hop4 is not None:
        out.append(next_hop4)
    if attrs_.med is not None:
        out.append(MultiExitDisc(value=attrs_.med))
    if internal:
        out.append(LocalPref(value=100 if attrs_.local_pref is None else attrs_.local_pref))
    if attrs_.communities:
        out.append(Communities(values=attrs_.communities))
    if attrs_.large_communities:
        out.append(LargeCommunities(values=attrs_.large_communities))
    return out


@attrs.frozen(kw_only=True)
class OutBatch:
    """One batch of changes to send: withdrawals, and announcements by attributes."""

    withdraw: list[Prefix]
    announce: dict[RouteAttributes, list[Prefix]]

    @property
    def size(self) -> int:
        return len(self.withdraw) + sum(len(v) for v in self.announce.values())


class AdjRibOut:
    """Desired routes vs. routes the peer holds from us, and the changes in between.

    ``replace``/``announce``/``withdraw`` may be called at any time; before the
    session is up they only record the desired set.
    """

    def __init__(self, routes: Mapping[Prefix, RouteAttributes] | None = None) -> None:
        self.desired: dict[Prefix, RouteAttributes] = dict(routes or {})
        self.advertised: dict[Prefix, RouteAttributes] = {}
        self._dirty: dict[Prefix, None] = {}
        self._up = False
        self._families: frozenset[Family] = frozenset()
        self._eor_pending: list[Family] = []
        self.unsendable: Counter[Family] = Counter()

    # ---- owner side ---------------------------------------------------------------

    def replace(self, routes: Mapping[Prefix, RouteAttributes]) -> int:
        """Make ``routes`` the desired set; returns how many prefixes changed."""
        old, self.desired = self.desired, dict(routes)
        if not self._up:
            return len(set(old.items()) ^ set(self.desired.items()))
        changed = 0
        for prefix in itertools.chain(self.desired, (p for p in old if p not in self.desired)):
            if self.desired.get(prefix) != old.get(prefix):
                changed += 1
                self._mark(prefix)
        return changed

    def announce(self, prefix: Prefix, attributes: RouteAttributes = DEFAULT_ATTRIBUTES) -> None:
        self.desired[prefix] = attributes
        if self._up:
            self._mark(prefix)

    def withdraw(self, prefix: Prefix) -> None:
        self.desired.pop(prefix, None)
        if self._up:
            self._mark(prefix)

    def _mark(self, prefix: Prefix) -> None:
        if self.desired.get(prefix) != self.advertised.get(prefix):
            self._dirty[prefix] = None
        else:
            self._dirty.pop(prefix, None)

    # ---- session side -------------------------------------------------------------

    def session_up(
        self, families: Iterable[Family], *, end_of_rib: Iterable[Family] | None = None
    ) -> None:
        """The session is Established and can carry ``families``: schedule a full dump,
        then End-of-RIB for ``end_of_rib`` (default: ``families``)."""
        self._up = True
        self._families = frozenset(families)
        self.advertised.clear()
        self._dirty = dict.fromkeys(sorted(self.desired, key=_sort_key))
        self._eor_pending = sorted(self._families if end_of_rib is None else set(end_of_rib))

    def resend(self, family: Family) -> None:
        """ROUTE-REFRESH (RFC 2918): announce everything of ``family`` again."""
        if not self._up:
            return
        for prefix in [p for p in self.advertised if family_of(p) == family]:
            del self.advertised[prefix]
            self._dirty[prefix] = None

    def session_down(self) -> None:
        self._up = False
        self.advertised.clear()
        self._dirty.clear()
        self._eor_pending = []

    @property
    def pending(self) -> int:
        """Prefixes whose state on the peer differs from the desired one."""
        return len(self._dirty)

    @property
    def synchronised(self) -> bool:
        return self._up and not self._dirty and not self._eor_pending

    def take(self, limit: int) -> OutBatch:
        """Up to ``limit`` changed prefixes, assumed sent from now on. Prefixes of a
        family the session did not negotiate are dropped (counted in ``unsendable``)."""
        withdraw: list[Prefix] = []
        announce: dict[RouteAttributes, list[Prefix]] = {}
        chosen = list(itertools.islice(self._dirty, limit))
        for prefix in chosen:
            del self._dirty[prefix]
            family = family_of(prefix)
            if family not in self._families:
                self.unsendable[family] += 1
                continue
            attrs_ = self.desired.get(prefix)
            if attrs_ is None:
                if self.advertised.pop(prefix, None) is not None:
                    withdraw.append(prefix)
            else:
                self.advertised[prefix] = attrs_
                announce.setdefault(attrs_, []).append(prefix)
        return OutBatch(withdraw=withdraw, announce=announce)

    def take_end_of_rib(self) -> list[Family]:
        """Families whose End-of-RIB is due (after the initial dump), once each."""
        if self._dirty or not self._eor_pending:
            return []
        due, self._eor_pending = self._eor_pending, []
        return due


@attrs.frozen(kw_only=True)
class ReceivedRoute:
    """A route in the Adj-RIB-In: its attributes (MP_REACH/UNREACH stripped) and next hop."""

    attributes: tuple[PathAttribute, ...]
    next_hop: str | None


class AdjRibIn:
    """Per-family counters of what the peer sent; routes only with ``keep=True``."""

    def __init__(self, *, keep: bool = False) -> None:
        self.keep = keep
        self.routes: dict[Prefix, ReceivedRoute] = {}
        self.announced: Counter[Family] = Counter()
        self.withdrawn: Counter[Family] = Counter()
        self.treated_as_withdraw = 0
        self.end_of_rib: set[Family] = set()

    def clear(self) -> None:
        self.routes.clear()
        self.end_of_rib.clear()

    def apply(self, event: UpdateReceived) -> None:
        if event.treat_as_withdraw:
            self.treated_as_withdraw += 1
        announced, withdrawn = event.announced, event.withdrawn
        for prefix in withdrawn:
            self.withdrawn[family_of(prefix)] += 1
        for prefix in announced:
            self.announced[family_of(prefix)] += 1
        if not self.keep:
            return
        for prefix in withdrawn:
            self.routes.pop(prefix, None)
        if not announced:
            return
        update = event.update
        attributes = tuple(
            a for a in update.attributes if not isinstance(a, MpReachNlri | MpUnreachNlri)
        )
        reach, nh4 = update.mp_reach, update.get(NextHop)
        v4 = ReceivedRoute(attributes=attributes, next_hop=str(nh4.address) if nh4 else None)
        mp = ReceivedRoute(attributes=attributes, next_hop=str(reach.next_hop) if reach else None)
        for prefix in update.nlri:
            self.routes[prefix] = v4
        if reach is not None:
            for prefix in reach.nlri:
                self.routes[prefix] = mp

    def counts(self) -> dict[Family, int]:
        fams: Counter[Family] = Counter(family_of(p) for p in self.routes)
        return dict(fams)
