"""RFC 8326 graceful shutdown: the GRACEFUL_SHUTDOWN community and drained attributes."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from hypothesis import given
from hypothesis import strategies as st

from protocols.bgp import (
    GRACEFUL_SHUTDOWN,
    AsPath,
    CodecContext,
    Communities,
    LocalPref,
    MultiExitDisc,
    NextHop,
    Origin,
    OriginAttribute,
    PathAttribute,
    UpdateMessage,
    WellKnownCommunity,
    decode_message,
    format_community,
    has_graceful_shutdown,
    parse_community,
    with_graceful_shutdown,
    without_graceful_shutdown,
)

BASE: tuple[PathAttribute, ...] = (
    OriginAttribute(value=Origin.IGP),
    AsPath(segments=()),
    NextHop(address=IPv4Address("192.0.2.1")),
)


def test_community_value_and_names() -> None:
    assert GRACEFUL_SHUTDOWN == WellKnownCommunity.GRACEFUL_SHUTDOWN == 0xFFFF0000
    assert parse_community("65535:0") == GRACEFUL_SHUTDOWN
    assert parse_community("graceful-shutdown") == GRACEFUL_SHUTDOWN
    assert format_community(GRACEFUL_SHUTDOWN) == "graceful-shutdown"


def test_ebgp_adds_the_community_and_leaves_local_pref_alone() -> None:
    out = with_graceful_shutdown(BASE, internal=False)
    assert out == (*BASE, Communities(values=(GRACEFUL_SHUTDOWN,)))
    assert has_graceful_shutdown(out) and not has_graceful_shutdown(BASE)
    assert not any(isinstance(a, LocalPref) for a in out)


def test_existing_communities_are_kept_and_not_repeated() -> None:
    attrs = (*BASE, Communities(values=(0xFDE80064,)), MultiExitDisc(value=5))
    out = with_graceful_shutdown(attrs, internal=False)
    assert out[3] == Communities(values=(0xFDE80064, GRACEFUL_SHUTDOWN))
    assert out[4] == MultiExitDisc(value=5)
    assert with_graceful_shutdown(out, internal=False) == out


def test_ibgp_sets_local_pref_zero() -> None:
    attrs = (*BASE, LocalPref(value=100))
    out = with_graceful_shutdown(attrs, internal=True)
    assert out == (*BASE, LocalPref(value=0), Communities(values=(GRACEFUL_SHUTDOWN,)))
    added = with_graceful_shutdown(BASE, internal=True)
    assert LocalPref(value=0) in added


def test_undrain() -> None:
    attrs = (*BASE, LocalPref(value=100), Communities(values=(0xFDE80064,)))
    drained = with_graceful_shutdown(attrs, internal=True)
    assert without_graceful_shutdown(drained, local_pref=100) == attrs
    only_gs = with_graceful_shutdown(BASE, internal=False)
    assert without_graceful_shutdown(only_gs) == BASE


def test_drained_update_on_the_wire() -> None:
    ctx = CodecContext(asn4=True)
    msg = UpdateMessage(
        attributes=with_graceful_shutdown(BASE, internal=False),
        nlri=(IPv4Network("198.51.100.0/24"),),
    )
    wire = msg.encode(ctx)
    assert bytes.fromhex("c0 08 04 ffff0000") in wire  # optional transitive, 65535:0
    back = decode_message(wire, ctx)
    assert isinstance(back, UpdateMessage) and has_graceful_shutdown(back.attributes)


@given(
    st.lists(st.integers(0, 0xFFFFFFFF), max_size=8),
    st.booleans(),
    st.one_of(st.none(), st.integers(0, 0xFFFFFFFF)),
)
def test_drain_properties(values: list[int], internal: bool, pref: int | None) -> None:
    attrs: tuple[PathAttribute, ...] = BASE
    if values:
        attrs = (*attrs, Communities(values=tuple(values)))
    if pref is not None:
        attrs = (*attrs, LocalPref(value=pref))
    out = with_graceful_shutdown(attrs, internal=internal)
    assert has_graceful_shutdown(out)
    assert with_graceful_shutdown(out, internal=internal) == out  # idempotent
    (comms,) = [a for a in out if isinstance(a, Communities)]
    assert comms.values.count(GRACEFUL_SHUTDOWN) == max(1, values.count(GRACEFUL_SHUTDOWN))
    prefs = [a.value for a in out if isinstance(a, LocalPref)]
    if internal:
        assert prefs == [0]
    else:
        assert prefs == ([] if pref is None else [pref])
    back = without_graceful_shutdown(out)
    assert not has_graceful_shutdown(back)
