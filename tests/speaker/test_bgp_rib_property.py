"""AdjRibOut under any interleaving of owner changes and sliced takes: once drained,
the peer holds exactly the desired routes of the families the session carries."""

from __future__ import annotations

from ipaddress import ip_network

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.bgp import IPV4_UNICAST, IPV6_UNICAST, Prefix, key_prefix, prefix_key
from speaker.bgp.config import RouteAttributes, family_of
from speaker.bgp.rib import AdjRibOut, LayeredRoutes

PREFIXES: list[Prefix] = [ip_network(f"198.18.0.{i}/32") for i in range(8)] + [
    ip_network(f"2001:2::{i}/128") for i in range(4)
]
ATTRIBUTES = [RouteAttributes(), RouteAttributes(med=1), RouteAttributes(communities=[7])]

routes = st.dictionaries(st.sampled_from(PREFIXES), st.sampled_from(ATTRIBUTES), max_size=12)
changes = st.dictionaries(
    st.sampled_from(PREFIXES), st.none() | st.sampled_from(ATTRIBUTES), max_size=6
)
families = st.sets(st.sampled_from([IPV4_UNICAST, IPV6_UNICAST]), min_size=1)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("replace"), routes),
        st.tuples(st.just("layered"), st.tuples(routes, changes)),
        st.tuples(st.just("update"), changes),
        st.tuples(st.just("take"), st.integers(1, 5)),
        st.tuples(st.just("resend"), st.sampled_from([IPV4_UNICAST, IPV6_UNICAST])),
        st.tuples(st.just("up"), families),
        st.tuples(st.just("down"), st.none()),
    ),
    max_size=40,
)


@settings(max_examples=400, deadline=None)
@given(initial=routes, ops=operations, final=families)
def test_sliced_takes_reach_exactly_the_desired_state(
    initial: dict[Prefix, RouteAttributes],
    ops: list[tuple[str, object]],
    final: set[tuple[int, int]],
) -> None:
    rib = AdjRibOut(initial)
    model = dict(initial)  # what the owner wants
    peer: dict[Prefix, RouteAttributes] = {}  # what the peer holds from us
    up = False

    def drain(limit: int) -> None:
        batch = rib.take(limit)
        assert up or batch.size == 0
        for route in batch.withdraw:  # route keys: the batch goes to the wire as they are
            prefix = key_prefix(route)
            assert prefix in peer  # never a withdrawal of what the peer does not hold
            del peer[prefix]
        for attributes, routes_ in batch.announce.items():
            for route in routes_:
                peer[key_prefix(route)] = attributes

    for op, arg in ops:
        if op == "replace":
            assert isinstance(arg, dict)
            model = dict(arg)
            rib.replace(arg)
        elif op == "layered":
            assert isinstance(arg, tuple)
            base, layer = arg
            model = {**base, **layer}
            model = {p: a for p, a in model.items() if a is not None}
            rib.replace(LayeredRoutes(
                {prefix_key(p): a for p, a in base.items()},
                {prefix_key(p): a for p, a in layer.items()},
            ))  # fmt: skip
        elif op == "update":
            assert isinstance(arg, dict)
            rib.update(arg)
            for prefix, attributes in arg.items():
                if attributes is None:
                    model.pop(prefix, None)
                else:
                    model[prefix] = attributes
        elif op == "take":
            assert isinstance(arg, int)
            drain(arg)
        elif op == "resend" and up:
            assert isinstance(arg, tuple)
            rib.resend(arg)
        elif op == "up":
            assert isinstance(arg, set)
            up, peer = True, {}
            rib.session_up(arg)
        elif op == "down":
            up, peer = False, {}
            rib.session_down()
        assert dict(rib.desired) == model and len(rib.desired) == len(model)
    up, peer = True, {}
    rib.session_up(final)
    for _ in range(100):
        if rib.synchronised or not rib.pending:
            break
        drain(3)
    rib.take_end_of_rib()
    assert rib.synchronised
    expected = {p: a for p, a in model.items() if family_of(p) in final}
    assert peer == expected and rib.advertised == expected


@settings(max_examples=300, deadline=None)
@given(initial=routes, ops=st.lists(st.tuples(changes | routes, st.integers(1, 4)), max_size=20))
def test_changes_while_up_converge(
    initial: dict[Prefix, RouteAttributes],
    ops: list[tuple[dict[Prefix, RouteAttributes | None], int]],
) -> None:
    """The same while the session stays up: no reset between changes."""
    rib = AdjRibOut(initial)
    model = dict(initial)
    peer: dict[Prefix, RouteAttributes] = {}
    rib.session_up([IPV4_UNICAST, IPV6_UNICAST])
    for i, (change, limit) in enumerate(ops):
        if i % 3 == 2 and all(v is not None for v in change.values()):
            full = {p: a for p, a in change.items() if a is not None}
            rib.replace(full)
            model = dict(full)
        else:
            rib.update(change)
            for prefix, attributes in change.items():
                if attributes is None:
                    model.pop(prefix, None)
                else:
                    model[prefix] = attributes
        batch = rib.take(limit)
        for route in batch.withdraw:
            del peer[key_prefix(route)]
        for attributes, routes_ in batch.announce.items():
            peer.update(dict.fromkeys(map(key_prefix, routes_), attributes))
    while rib.pending:
        batch = rib.take(2)
        for route in batch.withdraw:
            del peer[key_prefix(route)]
        for attributes, routes_ in batch.announce.items():
            peer.update(dict.fromkeys(map(key_prefix, routes_), attributes))
    assert peer == model == rib.advertised
