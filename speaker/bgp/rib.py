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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from ipaddress import IPv4Network, IPv6Network
from typing import Any, TypeAlias

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
    RouteKey,
    UpdateReceived,
    key_is_v6,
    key_prefix,
    prefix_key,
)
from protocols.bgp.constants import AFI, IPV4_UNICAST, IPV6_UNICAST
from protocols.bgp.graceful_shutdown import with_graceful_shutdown
from protocols.bgp.nlri import KEY_V6_BIT, PackedPrefixes
from speaker.bgp.config import DEFAULT_ATTRIBUTES, Family, RouteAttributes, family_of

__all__ = [
    "AdjRibIn",
    "AdjRibOut",
    "AnyChanges",
    "AnyRoutes",
    "KeyedChanges",
    "KeyedRoutes",
    "LayeredRoutes",
    "OutBatch",
    "ReceivedRoute",
    "SentTable",
    "family_of_key",
    "key",
    "keyed",
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
    """One batch of changes to send: withdrawals, and announcements by attributes
    (route keys: :func:`protocols.bgp.key_prefix` gives their networks)."""

    withdraw: list[RouteKey]
    announce: dict[RouteAttributes, list[RouteKey]]

    @property
    def size(self) -> int:
        return len(self.withdraw) + sum(len(v) for v in self.announce.values())


#: Routes as the Adj-RIB-Out takes them: route key -> attributes.
KeyedRoutes = Mapping[RouteKey, RouteAttributes]
#: Changes of routes: route key -> attributes, None = withdrawn.
KeyedChanges = dict[RouteKey, RouteAttributes | None]
#: What the owner-side methods take: keyed, or by network (converted as it goes).
AnyRoutes = Mapping[Prefix, RouteAttributes] | KeyedRoutes
AnyChanges = Mapping[RouteKey, RouteAttributes | None] | Mapping[Prefix, RouteAttributes | None]


def key(prefix: Prefix | RouteKey) -> RouteKey:
    """The route key of ``prefix`` (a key is its own)."""
    return prefix if isinstance(prefix, int) else prefix_key(prefix)


def keyed(routes: AnyRoutes) -> KeyedRoutes:
    """``routes`` keyed by route key: as it is when it already is (a
    :class:`LayeredRoutes`, or a mapping whose first key is an int), else a keyed copy
    (costs the table: for callers that have networks, tests and the tool)."""
    if isinstance(routes, LayeredRoutes):
        return routes
    first = next(iter(routes), None)
    if first is None or isinstance(first, int):
        return routes  # type: ignore[return-value]  # keyed (or empty)
    return {key(p): a for p, a in routes.items()}


def family_of_key(route: RouteKey) -> Family:
    return IPV6_UNICAST if key_is_v6(route) else IPV4_UNICAST


class LayeredRoutes(Mapping[RouteKey, RouteAttributes]):
    """Routes as a table that never changes (``base``) plus the changes made since
    (``changes``, None = withdrawn), keyed by route key: how an owner that keeps its
    routes up to date hands them to a session without copying the table.
    :class:`AdjRibOut` takes both over as they are; the owner must change neither
    afterwards."""

    def __init__(self, base: KeyedRoutes, changes: KeyedChanges | None = None) -> None:
        self.base = base
        self.changes: KeyedChanges = {} if changes is None else changes
        self._count = len(base) + sum(
            (a is not None) - (p in base) for p, a in self.changes.items()
        )

    def get_attributes(self, route: RouteKey) -> RouteAttributes | None:
        if route in self.changes:
            return self.changes[route]
        return self.base.get(route)

    def __getitem__(self, route: RouteKey) -> RouteAttributes:
        attributes = self.get_attributes(route)
        if attributes is None:
            raise KeyError(route)
        return attributes

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[RouteKey]:
        changes = self.changes
        for route in self.base:
            if route not in changes:
                yield route
        for route, attributes in changes.items():
            if attributes is not None:
                yield route


_Retired: TypeAlias = "SentTable | deque[RouteKey] | set[RouteKey]"
#: Containers bigger than this are retired, not dropped, when the session goes down.
RETIRE_AT = 1024


class _Scan:
    """Routes still to compare: a live iterator over a mapping nobody changes any more
    (a replaced desired table, a retired overlay), so it never needs a copy.

    ``live``: a dict that may still grow (the overlay a session keeps changing: keys
    are only ever added, at the end, never removed); when it grows under the
    iterator, the iterator is made again past the keys already taken (the new ones
    are queued for comparison anyway, so scanning them too is harmless)."""

    __slots__ = ("done", "forget", "keys", "left", "source")

    def __init__(
        self,
        keys: Mapping[RouteKey, object],
        forget: Family | None = None,
        *,
        live: bool = False,
    ) -> None:
        self.keys: Iterator[RouteKey] = iter(keys)
        self.left = len(keys)
        #: ROUTE-REFRESH: forget that this family was sent, so it goes out again.
        self.forget = forget
        self.source = keys if live else None
        self.done = 0

    def take(self, limit: int) -> list[RouteKey]:
        """Up to ``limit`` routes more (fewer: the scan is over)."""
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

    Routes are kept by route key (:data:`protocols.bgp.RouteKey`, one int a prefix:
    32-44 bytes where an ``ipaddress`` network is 436-456); ``desired`` and
    ``advertised`` read them as networks. The methods take a network or a key.

    Nothing here costs time proportional to the table in one call (the loop budget,
    docs/architecture.md): the desired set is the mapping last given to
    :meth:`replace` (taken over, never copied: the caller must not change it
    afterwards) plus an overlay of the changes since; a full dump or a diff is a
    *scan*, an iterator over a mapping that no longer changes, which :meth:`take`
    advances by at most ``limit`` routes per call. Single changes wait in a
    deduplicated FIFO queue. Invariant: every route whose desired state differs from
    the advertised one is in the queue or ahead in a scan.
    """

    def __init__(self, routes: AnyRoutes | None = None) -> None:
        self._base: KeyedRoutes = {}
        self._overlay: KeyedChanges = {}
        self._count = 0
        self._adopt({} if routes is None else keyed(routes))
        self.desired: Mapping[Prefix, RouteAttributes] = _Desired(self)
        #: The desired routes' keys (iterating it builds no network: for sliced readers).
        self.desired_keys: Iterable[RouteKey] = _DesiredKeys(self)
        #: What the peer holds from us, by route key (``advertised`` reads it).
        self.sent = SentTable()
        self.advertised: Mapping[Prefix, RouteAttributes] = _ByPrefix(self, "sent")
        #: Big containers the session no longer uses, for the owner to empty in slices.
        self.retired: list[_Retired] = []
        self._queue: deque[RouteKey] = deque()
        self._queued: set[RouteKey] = set()
        self._scans: deque[_Scan] = deque()
        self._up = False
        self._families: frozenset[Family] = frozenset()
        self._eor_pending: list[Family] = []
        #: Prefixes of a family the session cannot carry, counted each time one is
        #: found changed (not sent).
        self.unsendable: Counter[Family] = Counter()
        #: For a reader that keeps something derived from ``desired`` and
        #: ``advertised`` up to date (the metrics): ``version`` counts changes, the
        #: last :data:`CHANGE_LOG` single-route ones are in ``changes`` (route keys,
        #: oldest first), and ``reset_at`` is the version of the last change of
        #: everything (a new desired table, the session up or down). Costs an
        #: increment and an append per change.
        self.version = 0
        self.reset_at = 0
        self.changes: deque[RouteKey] = deque(maxlen=CHANGE_LOG)
        #: RFC 8326 drain of the whole session (:meth:`set_drained`): every desired
        #: route is wanted with ``graceful_shutdown`` set.
        self.drained = False
        self._drained_of: dict[RouteAttributes, RouteAttributes] = {}

    def _changed(self, route: RouteKey) -> None:
        self.version += 1
        self.changes.append(route)

    def _reset(self) -> None:
        self.version += 1
        self.reset_at = self.version
        self.changes.clear()

    # ---- the desired set ------------------------------------------------------------

    def want(self, prefix: Prefix | RouteKey) -> RouteAttributes | None:
        """The desired attributes of ``prefix``, None when it is not to be announced
        (drained, :meth:`set_drained`, while the session is drained)."""
        return self._want(key(prefix))

    def _want(self, route: RouteKey) -> RouteAttributes | None:
        overlay = self._overlay
        attributes = overlay[route] if route in overlay else self._base.get(route)
        if attributes is None or not self.drained:
            return attributes
        # A lookup on the interned attribute sets (one per set, not per route).
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

    def replace(self, routes: AnyRoutes) -> None:
        """Make ``routes`` the desired set (taken over: do not change it afterwards).
        The difference is found by :meth:`take`, a slice at a time."""
        old_base, old_overlay = self._base, self._overlay
        self._adopt(keyed(routes))
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

    def _adopt(self, routes: KeyedRoutes) -> None:
        if isinstance(routes, LayeredRoutes):
            self._base, self._overlay, self._count = routes.base, routes.changes, len(routes)
        else:
            self._base, self._overlay, self._count = routes, {}, len(routes)

    def _enqueue(self, routes: Iterable[RouteKey]) -> None:
        for route in routes:
            if route not in self._queued:
                self._queued.add(route)
                self._queue.append(route)

    def update(self, changes: AnyChanges) -> None:
        """Apply ``changes`` (None withdraws); costs ``len(changes)``."""
        for prefix, attributes in changes.items():
            self._set(key(prefix), attributes)

    def announce(
        self, prefix: Prefix | RouteKey, attributes: RouteAttributes = DEFAULT_ATTRIBUTES
    ) -> None:
        self._set(key(prefix), attributes)

    def withdraw(self, prefix: Prefix | RouteKey) -> None:
        self._set(key(prefix), None)

    def _set(self, route: RouteKey, attributes: RouteAttributes | None) -> None:
        before = self._want(route)
        self._overlay[route] = attributes
        self._changed(route)
        self._count += (attributes is not None) - (before is not None)
        if self._up and route not in self._queued:
            self._queued.add(route)
            self._queue.append(route)

    # ---- session side -------------------------------------------------------------

    def session_up(
        self, families: Iterable[Family], *, end_of_rib: Iterable[Family] | None = None
    ) -> None:
        """The session is Established and can carry ``families``: schedule a full dump,
        then End-of-RIB for ``end_of_rib`` (default: ``families``)."""
        self._up = True
        self._families = frozenset(families)
        self.sent = SentTable()
        self._reset()
        self._queue.clear()
        self._queued.clear()
        self._scans.clear()
        # The overlay may change while the dump runs: its routes go through the queue.
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
        its desired routes go out, found by scans as for :meth:`resend`."""
        if not self._up or family in self._families:
            return
        self._families = self._families | {family}
        self.resend(family)

    def session_down(self) -> None:
        self._up = False
        # What the peer held and what was queued for it (65,536 entries each) are
        # not dropped here: freed at once they are a 3-11 ms step, the moment BFD
        # failed over and every other peer's BFD needs the loop. The owner empties
        # ``retired`` in slices (Slicer.discard: a SentTable shard by shard).
        self._retire(self.sent)
        self.sent = SentTable()
        self._reset()
        self._retire(self._queue)
        self._queue = deque()
        self._retire(self._queued)
        self._queued = set()
        self._scans.clear()
        self._eor_pending = []

    def _retire(self, container: _Retired) -> None:
        if len(container) > RETIRE_AT:
            self.retired.append(container)

    @property
    def pending(self) -> int:
        """Routes still to compare with what the peer holds (an upper bound of what
        is left to send)."""
        return len(self._queue) + sum(s.left for s in self._scans)

    @property
    def synchronised(self) -> bool:
        return self._up and not self._queue and not self._scans and not self._eor_pending

    def take(self, limit: int) -> OutBatch:
        """Compare up to ``limit`` routes with what the peer holds; the changed ones,
        assumed sent from now on. Routes of a family the session did not negotiate
        are dropped (counted in ``unsendable``)."""
        withdraw: list[RouteKey] = []
        announce: dict[RouteAttributes, list[RouteKey]] = {}
        budget = limit
        queue = self._queue
        while budget > 0 and queue:
            route = queue.popleft()
            self._queued.discard(route)
            budget -= 1
            self._compare(route, None, withdraw, announce)
        while budget > 0 and self._scans:
            scan = self._scans[0]
            batch = scan.take(budget)
            for route in batch:
                self._compare(route, scan.forget, withdraw, announce)
            budget -= len(batch)
            if budget > 0 or scan.left <= 0:
                self._scans.popleft()
        return OutBatch(withdraw=withdraw, announce=announce)

    def _compare(
        self,
        route: RouteKey,
        forget: Family | None,
        withdraw: list[RouteKey],
        announce: dict[RouteAttributes, list[RouteKey]],
    ) -> None:
        want = self._want(route)
        family = IPV6_UNICAST if route & KEY_V6_BIT else IPV4_UNICAST
        table = self.sent
        sent = table.shards[_SHARD_OF[(route >> 8) % _RESIDUES]]
        if forget == family and want is not None and sent.pop(route, None) is not None:
            table.count -= 1
            self._changed(route)
        have = sent.get(route)
        if want is have or want == have:
            return
        if family not in self._families:
            self.unsendable[family] += 1
            return
        self._changed(route)
        if want is None:
            del sent[route]
            table.count -= 1
            withdraw.append(route)
        else:
            if have is None:
                table.count += 1
            sent[route] = want
            announce.setdefault(want, []).append(route)

    def take_end_of_rib(self) -> list[Family]:
        """Families whose End-of-RIB is due (after the initial dump), once each."""
        if self._queue or self._scans or not self._eor_pending:
            return []
        due, self._eor_pending = self._eor_pending, []
        return due


#: Dicts :class:`SentTable` keeps.
SENT_SHARDS = 61


def _shard_of() -> tuple[int, ...]:
    """Residue of a key's address -> shard. Shard ``i`` takes ``SENT_SHARDS + i`` of the
    residues, so the shards fill at rates 1 to 2 and pass the sizes at which a dict
    grows (copying itself) at different times: shards filled at the same rate would
    all grow in the same batch, one step as long as one big dict's. The number of
    residues is odd, so aggregates (low address bits zero) spread too."""
    out: list[int] = []
    for shard in range(SENT_SHARDS):
        out += [shard] * (SENT_SHARDS + shard)
    return tuple(out)


_SHARD_OF = _shard_of()
_RESIDUES = len(_SHARD_OF)  # 5,551


class SentTable(Mapping[RouteKey, RouteAttributes]):
    """What the peer holds from us, by route key, in :data:`SENT_SHARDS` dicts: a dict
    growing past a size copies itself in one step (38 ms at a million routes in one
    dict, bench: a session bring-up), each of these copies a 61st of the table."""

    __slots__ = ("count", "shards")

    def __init__(self) -> None:
        self.shards: list[dict[RouteKey, RouteAttributes]] = [{} for _ in range(SENT_SHARDS)]
        self.count = 0

    def __getitem__(self, route: RouteKey) -> RouteAttributes:
        return self.shards[_SHARD_OF[(route >> 8) % _RESIDUES]][route]

    def get(self, route: RouteKey, default: Any = None) -> Any:
        return self.shards[_SHARD_OF[(route >> 8) % _RESIDUES]].get(route, default)

    def __contains__(self, route: object) -> bool:
        return isinstance(route, int) and route in self.shards[_SHARD_OF[(route >> 8) % _RESIDUES]]

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[RouteKey]:
        return itertools.chain.from_iterable(self.shards)


class _Desired(Mapping[Prefix, RouteAttributes]):
    """The desired routes of an :class:`AdjRibOut` as a read-only mapping of networks
    (its length is kept up to date; iterating it walks the table, for ``show`` and
    tests; a lookup takes a network or a route key)."""

    def __init__(self, rib: AdjRibOut) -> None:
        self._rib = rib

    def __getitem__(self, prefix: Prefix | RouteKey) -> RouteAttributes:
        attributes = self._rib.want(prefix)
        if attributes is None:
            raise KeyError(prefix)
        return attributes

    def __contains__(self, prefix: object) -> bool:
        if not isinstance(prefix, int | IPv4Network | IPv6Network):
            return False
        return self._rib.want(prefix) is not None

    def __len__(self) -> int:
        return self._rib._count

    def keys_iter(self) -> Iterator[RouteKey]:
        """The desired routes' keys."""
        rib = self._rib
        overlay = rib._overlay
        for route in rib._base:
            if route not in overlay:
                yield route
        for route, attributes in overlay.items():
            if attributes is not None:
                yield route

    def __iter__(self) -> Iterator[Prefix]:
        return map(key_prefix, self.keys_iter())


class _DesiredKeys:
    """The keys of an :class:`AdjRibOut`'s desired routes, as an iterable."""

    def __init__(self, rib: AdjRibOut) -> None:
        self._desired = _Desired(rib)

    def __iter__(self) -> Iterator[RouteKey]:
        return self._desired.keys_iter()

    def __len__(self) -> int:
        return len(self._desired)


class _ByPrefix(Mapping[Prefix, RouteAttributes]):
    """A keyed table of an :class:`AdjRibOut` (``attribute``) read as networks: a
    lookup takes a network or a route key; iteration yields networks."""

    def __init__(self, rib: AdjRibOut, attribute: str) -> None:
        self._rib = rib
        self._attribute = attribute

    @property
    def _table(self) -> Mapping[RouteKey, RouteAttributes]:
        table: Mapping[RouteKey, RouteAttributes] = getattr(self._rib, self._attribute)
        return table

    def __getitem__(self, prefix: Prefix | RouteKey) -> RouteAttributes:
        return self._table[key(prefix)]

    def __contains__(self, prefix: object) -> bool:
        if not isinstance(prefix, int | IPv4Network | IPv6Network):
            return False
        return key(prefix) in self._table

    def __len__(self) -> int:
        return len(self._table)

    def __iter__(self) -> Iterator[Prefix]:
        return map(key_prefix, self._table)


@attrs.frozen(kw_only=True)
class ReceivedRoute:
    """A route in the Adj-RIB-In: its attributes (MP_REACH/UNREACH stripped) and next hop."""

    attributes: tuple[PathAttribute, ...]
    next_hop: str | None


def _count(counts: Counter[Family], prefixes: Sequence[Prefix]) -> None:
    """Add ``prefixes`` to ``counts`` by family."""
    if isinstance(prefixes, PackedPrefixes):
        if prefixes:
            counts[IPV4_UNICAST if prefixes.afi == AFI.IPV4 else IPV6_UNICAST] += len(prefixes)
        return
    for prefix in prefixes:
        counts[family_of(prefix)] += 1


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
        update = event.update
        reach, unreach = update.mp_reach, update.mp_unreach
        announced_parts = [update.nlri, reach.nlri if reach else ()]
        withdrawn_parts = [update.withdrawn, unreach.withdrawn if unreach else ()]
        if event.treat_as_withdraw:
            self.treated_as_withdraw += 1
            withdrawn_parts += announced_parts
            announced_parts = []
        # Counted by field, not by prefix: a received field is PackedPrefixes, one
        # family, whose networks are never built unless this keeps the routes.
        for part in withdrawn_parts:
            _count(self.withdrawn, part)
        for part in announced_parts:
            _count(self.announced, part)
        if not self.keep:
            return
        announced, withdrawn = event.announced, event.withdrawn
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
