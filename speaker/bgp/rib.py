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
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping

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
from protocols.bgp.graceful_shutdown import with_graceful_shutdown
from speaker.bgp.config import DEFAULT_ATTRIBUTES, Family, RouteAttributes, family_of

__all__ = [
    "AdjRibIn",
    "AdjRibOut",
    "LayeredRoutes",
    "OutBatch",
    "ReceivedRoute",
    "path_attributes",
]

#: Single-prefix changes an :class:`AdjRibOut` remembers for its readers.
CHANGE_LOG = 4096


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
    only (§5.1.5); COMMUNITIES; LARGE_COMMUNITIES. A drained route
    (``graceful_shutdown``, RFC 8326) has GRACEFUL_SHUTDOWN added to COMMUNITIES and,
    on iBGP, LOCAL_PREF 0.
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
    if attrs_.graceful_shutdown:
        return list(with_graceful_shutdown(out, internal=internal))
    return out


@attrs.frozen(kw_only=True)
class OutBatch:
    """One batch of changes to send: withdrawals, and announcements by attributes."""

    withdraw: list[Prefix]
    announce: dict[RouteAttributes, list[Prefix]]

    @property
    def size(self) -> int:
        return len(self.withdraw) + sum(len(v) for v in self.announce.values())


class LayeredRoutes(Mapping[Prefix, RouteAttributes]):
    """Routes as a table that never changes (``base``) plus the changes made since
    (``changes``, None = withdrawn): how an owner that keeps its routes up to date
    hands them to a session without copying the table. :class:`AdjRibOut` takes
    both over as they are; the owner must change neither afterwards."""

    def __init__(
        self,
        base: Mapping[Prefix, RouteAttributes],
        changes: dict[Prefix, RouteAttributes | None] | None = None,
    ) -> None:
        self.base = base
        self.changes: dict[Prefix, RouteAttributes | None] = {} if changes is None else changes
        self._count = len(base) + sum(
            (a is not None) - (p in base) for p, a in self.changes.items()
        )

    def get_attributes(self, prefix: Prefix) -> RouteAttributes | None:
        if prefix in self.changes:
            return self.changes[prefix]
        return self.base.get(prefix)

    def __getitem__(self, prefix: Prefix) -> RouteAttributes:
        attributes = self.get_attributes(prefix)
        if attributes is None:
            raise KeyError(prefix)
        return attributes

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Prefix]:
        changes = self.changes
        for prefix in self.base:
            if prefix not in changes:
                yield prefix
        for prefix, attributes in changes.items():
            if attributes is not None:
                yield prefix


_Retired = dict[Prefix, RouteAttributes] | deque[Prefix] | set[Prefix]
#: Containers bigger than this are retired, not dropped, when the session goes down.
RETIRE_AT = 1024


class _Scan:
    """Prefixes still to compare: a live iterator over a mapping nobody changes any more
    (a replaced desired table, a retired overlay), so it never needs a copy.

    ``live``: a dict that may still grow (the overlay a session keeps changing: keys
    are only ever added, at the end, never removed); when it grows under the
    iterator, the iterator is made again past the keys already taken (the new ones
    are queued for comparison anyway, so scanning them too is harmless)."""

    __slots__ = ("done", "forget", "keys", "left", "source")

    def __init__(
        self, keys: Mapping[Prefix, object], forget: Family | None = None, *, live: bool = False
    ) -> None:
        self.keys: Iterator[Prefix] = iter(keys)
        self.left = len(keys)
        #: ROUTE-REFRESH: forget that this family was sent, so it goes out again.
        self.forget = forget
        self.source = keys if live else None
        self.done = 0

    def take(self, limit: int) -> list[Prefix]:
        """Up to ``limit`` prefixes more (fewer: the scan is over)."""
        try:
            batch = list(itertools.islice(self.keys, limit))
        except RuntimeError:  # a live dict grew: go on past what was taken
            if self.source is None:
                raise
            self.keys = itertools.islice(iter(self.source), self.done, None)
            batch = list(itertools.islice(self.keys, limit))
        self.done += len(batch)
        if self.source is not None:
            self.left = len(self.source) - self.done
        else:
            self.left -= len(batch)
        return batch


class AdjRibOut:
    """Desired routes vs. routes the peer holds from us, and the changes in between.

    ``replace``/``update``/``announce``/``withdraw`` may be called at any time; before
    the session is up they only record the desired set.

    Nothing here costs time proportional to the table in one call (the loop budget,
    docs/architecture.md): the desired set is the mapping last given to
    :meth:`replace` (taken over, never copied: the caller must not change it
    afterwards) plus an overlay of the changes since; a full dump or a diff is a
    *scan*, an iterator over a mapping that no longer changes, which :meth:`take`
    advances by at most ``limit`` prefixes per call. Single changes wait in a
    deduplicated FIFO queue. Invariant: every prefix whose desired state differs from
    ``advertised`` is in the queue or ahead in a scan.
    """

    def __init__(self, routes: Mapping[Prefix, RouteAttributes] | None = None) -> None:
        self._base: Mapping[Prefix, RouteAttributes] = {}
        self._overlay: dict[Prefix, RouteAttributes | None] = {}
        self._count = 0
        self._adopt({} if routes is None else routes)
        self.desired: Mapping[Prefix, RouteAttributes] = _Desired(self)
        self.advertised: dict[Prefix, RouteAttributes] = {}
        #: Big containers the session no longer uses, for the owner to empty in slices.
        self.retired: list[_Retired] = []
        self._queue: deque[Prefix] = deque()
        self._queued: set[Prefix] = set()
        self._scans: deque[_Scan] = deque()
        self._up = False
        self._families: frozenset[Family] = frozenset()
        self._eor_pending: list[Family] = []
        #: Prefixes of a family the session cannot carry, counted each time one is
        #: found changed (not sent).
        self.unsendable: Counter[Family] = Counter()
        #: For a reader that keeps something derived from ``desired`` and
        #: ``advertised`` up to date (the metrics): ``version`` counts changes, the
        #: last :data:`CHANGE_LOG` single-prefix ones are in ``changes`` (oldest
        #: first), and ``reset_at`` is the version of the last change of everything
        #: (a new desired table, the session up or down). Costs an increment and an
        #: append per change.
        self.version = 0
        self.reset_at = 0
        self.changes: deque[Prefix] = deque(maxlen=CHANGE_LOG)
        #: RFC 8326 drain of the whole session (:meth:`set_drained`): every desired
        #: route is wanted with ``graceful_shutdown`` set.
        self.drained = False
        self._drained_of: dict[RouteAttributes, RouteAttributes] = {}

    def _changed(self, prefix: Prefix) -> None:
        self.version += 1
        self.changes.append(prefix)

    def _reset(self) -> None:
        self.version += 1
        self.reset_at = self.version
        self.changes.clear()

    # ---- the desired set ------------------------------------------------------------

    def want(self, prefix: Prefix) -> RouteAttributes | None:
        """The desired attributes of ``prefix``, None when it is not to be announced
        (drained, :meth:`set_drained`, while the session is drained)."""
        overlay = self._overlay
        attributes = overlay[prefix] if prefix in overlay else self._base.get(prefix)
        if attributes is None or not self.drained:
            return attributes
        drained = self._drained_of.get(attributes)
        if drained is None:
            drained = self._drained_of[attributes] = attributes.drained()
        return drained

    def set_drained(self, drained: bool) -> None:
        """Drain the whole session (RFC 8326) or end its drain: every route is wanted
        with ``graceful_shutdown`` set (or as the owner gave it). Costs nothing
        proportional to the table here: the routes the peer holds are compared again
        by :meth:`take`, a slice at a time, and sent again with the new attributes."""
        if drained == self.drained:
            return
        self.drained = drained
        self._drained_of = {}
        if not self._up:
            return
        if self._base:
            self._scans.append(_Scan(self._base))
        if self._overlay:
            # The overlay keeps changing (a change is queued anyway): scanned live.
            self._scans.append(_Scan(self._overlay, live=True))

    # ---- owner side ---------------------------------------------------------------

    def replace(self, routes: Mapping[Prefix, RouteAttributes]) -> None:
        """Make ``routes`` the desired set (taken over: do not change it afterwards).
        The difference is found by :meth:`take`, a slice at a time."""
        old_base, old_overlay = self._base, self._overlay
        self._adopt(routes)
        self._reset()
        if not self._up:
            return
        # What may differ now: the new routes, and whatever the peer may hold from
        # the old set (its base and overlay). Older scans and the queue stay: they
        # cover what the peer may hold from still older sets.
        for keys in (self._base, old_base, old_overlay):
            if keys:
                self._scans.append(_Scan(keys))
        self._enqueue(self._overlay)  # it changes from now on: no scan over it

    def _adopt(self, routes: Mapping[Prefix, RouteAttributes]) -> None:
        if isinstance(routes, LayeredRoutes):
            self._base, self._overlay, self._count = routes.base, routes.changes, len(routes)
        else:
            self._base, self._overlay, self._count = routes, {}, len(routes)

    def _enqueue(self, prefixes: Iterable[Prefix]) -> None:
        for prefix in prefixes:
            if prefix not in self._queued:
                self._queued.add(prefix)
                self._queue.append(prefix)

    def update(self, changes: Mapping[Prefix, RouteAttributes | None]) -> None:
        """Apply ``changes`` (None withdraws); costs ``len(changes)``."""
        for prefix, attributes in changes.items():
            self._set(prefix, attributes)

    def announce(self, prefix: Prefix, attributes: RouteAttributes = DEFAULT_ATTRIBUTES) -> None:
        self._set(prefix, attributes)

    def withdraw(self, prefix: Prefix) -> None:
        self._set(prefix, None)

    def _set(self, prefix: Prefix, attributes: RouteAttributes | None) -> None:
        before = self.want(prefix)
        self._overlay[prefix] = attributes
        self._changed(prefix)
        self._count += (attributes is not None) - (before is not None)
        if self._up and prefix not in self._queued:
            self._queued.add(prefix)
            self._queue.append(prefix)

    # ---- session side -------------------------------------------------------------

    def session_up(
        self, families: Iterable[Family], *, end_of_rib: Iterable[Family] | None = None
    ) -> None:
        """The session is Established and can carry ``families``: schedule a full dump,
        then End-of-RIB for ``end_of_rib`` (default: ``families``)."""
        self._up = True
        self._families = frozenset(families)
        self.advertised = {}
        self._reset()
        self._queue.clear()
        self._queued.clear()
        self._scans.clear()
        # The overlay may change while the dump runs: its prefixes go through the queue.
        if self._base:
            self._scans.append(_Scan(self._base))
        self._enqueue(self._overlay)  # only the changes since the last replace()
        self._eor_pending = sorted(self._families if end_of_rib is None else set(end_of_rib))

    def resend(self, family: Family) -> None:
        """ROUTE-REFRESH (RFC 2918): announce everything of ``family`` again."""
        if not self._up:
            return
        self._scans.append(_Scan(self._base, forget=family))
        if self._overlay:
            # The overlay keeps changing (a change is queued anyway): scanned live.
            self._scans.append(_Scan(self._overlay, forget=family, live=True))

    def add_family(self, family: Family) -> None:
        """The live session can carry ``family`` from now on (its next hop appeared):
        its desired prefixes go out, found by scans as for :meth:`resend`."""
        if not self._up or family in self._families:
            return
        self._families = self._families | {family}
        self.resend(family)

    def session_down(self) -> None:
        self._up = False
        # What the peer held and what was queued for it (65,536 entries each) are
        # not dropped here: freed at once they are a 3-11 ms step, the moment BFD
        # failed over and every other peer's BFD needs the loop. The owner empties
        # ``retired`` in slices (Slicer.discard).
        self._retire(self.advertised)
        self.advertised = {}
        self._reset()
        self._retire(self._queue)
        self._queue = deque()
        self._retire(self._queued)
        self._queued = set()
        self._scans.clear()
        self._eor_pending = []

    def _retire(
        self, container: dict[Prefix, RouteAttributes] | deque[Prefix] | set[Prefix]
    ) -> None:
        if len(container) > RETIRE_AT:
            self.retired.append(container)

    @property
    def pending(self) -> int:
        """Prefixes still to compare with what the peer holds (an upper bound of what
        is left to send)."""
        return len(self._queue) + sum(s.left for s in self._scans)

    @property
    def synchronised(self) -> bool:
        return self._up and not self._queue and not self._scans and not self._eor_pending

    def take(self, limit: int) -> OutBatch:
        """Compare up to ``limit`` prefixes with what the peer holds; the changed ones,
        assumed sent from now on. Prefixes of a family the session did not negotiate
        are dropped (counted in ``unsendable``)."""
        withdraw: list[Prefix] = []
        announce: dict[RouteAttributes, list[Prefix]] = {}
        budget = limit
        queue = self._queue
        while budget > 0 and queue:
            prefix = queue.popleft()
            self._queued.discard(prefix)
            budget -= 1
            self._compare(prefix, None, withdraw, announce)
        while budget > 0 and self._scans:
            scan = self._scans[0]
            batch = scan.take(budget)
            for prefix in batch:
                self._compare(prefix, scan.forget, withdraw, announce)
            budget -= len(batch)
            if budget > 0 or scan.left <= 0:
                self._scans.popleft()
        return OutBatch(withdraw=withdraw, announce=announce)

    def _compare(
        self,
        prefix: Prefix,
        forget: Family | None,
        withdraw: list[Prefix],
        announce: dict[RouteAttributes, list[Prefix]],
    ) -> None:
        want = self.want(prefix)
        family = family_of(prefix)
        popped = forget == family and want is not None
        if popped and self.advertised.pop(prefix, None) is not None:
            self._changed(prefix)
        have = self.advertised.get(prefix)
        if want is have or want == have:
            return
        if family not in self._families:
            self.unsendable[family] += 1
            return
        self._changed(prefix)
        if want is None:
            del self.advertised[prefix]
            withdraw.append(prefix)
        else:
            self.advertised[prefix] = want
            announce.setdefault(want, []).append(prefix)

    def take_end_of_rib(self) -> list[Family]:
        """Families whose End-of-RIB is due (after the initial dump), once each."""
        if self._queue or self._scans or not self._eor_pending:
            return []
        due, self._eor_pending = self._eor_pending, []
        return due


class _Desired(Mapping[Prefix, RouteAttributes]):
    """The desired routes of an :class:`AdjRibOut` as a read-only mapping (its length
    is kept up to date; iterating it walks the table, for ``show`` and tests)."""

    def __init__(self, rib: AdjRibOut) -> None:
        self._rib = rib

    def __getitem__(self, prefix: Prefix) -> RouteAttributes:
        attributes = self._rib.want(prefix)
        if attributes is None:
            raise KeyError(prefix)
        return attributes

    def __len__(self) -> int:
        return self._rib._count

    def __iter__(self) -> Iterator[Prefix]:
        rib = self._rib
        overlay = rib._overlay
        for prefix in rib._base:
            if prefix not in overlay:
                yield prefix
        for prefix, attributes in overlay.items():
            if attributes is not None:
                yield prefix


@attrs.frozen(kw_only=True)
class ReceivedRoute:
    """A route in the Adj-RIB-In: its attributes (MP_REACH/UNREACH stripped) and next hop."""

    attributes: tuple[PathAttribute, ...]
    next_hop: str | None


class AdjRibIn:
    """Per-family counters of what the peer sent; routes only with ``keep=True``
    (then ``held`` counts them per family as they come and go: no walk per query)."""

    def __init__(self, *, keep: bool = False) -> None:
        self.keep = keep
        self.routes: dict[Prefix, ReceivedRoute] = {}
        self.held: Counter[Family] = Counter()
        self.announced: Counter[Family] = Counter()
        self.withdrawn: Counter[Family] = Counter()
        self.treated_as_withdraw = 0
        self.end_of_rib: set[Family] = set()

    def clear(self) -> None:
        self.routes = {}
        self.held = Counter()
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
        routes, held = self.routes, self.held
        for prefix in withdrawn:
            if routes.pop(prefix, None) is not None:
                held[family_of(prefix)] -= 1
        if not announced:
            return
        update = event.update
        attributes = tuple(
            a for a in update.attributes if not isinstance(a, MpReachNlri | MpUnreachNlri)
        )
        reach, nh4 = update.mp_reach, update.get(NextHop)
        v4 = ReceivedRoute(attributes=attributes, next_hop=str(nh4.address) if nh4 else None)
        mp = ReceivedRoute(attributes=attributes, next_hop=str(reach.next_hop) if reach else None)
        for prefixes, route in ((update.nlri, v4), (reach.nlri if reach else (), mp)):
            for prefix in prefixes:
                if prefix not in routes:
                    held[family_of(prefix)] += 1
                routes[prefix] = route

    def counts(self) -> dict[Family, int]:
        return {family: n for family, n in self.held.items() if n > 0}
