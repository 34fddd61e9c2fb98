"""Service address allocation: lowest free, stable across restarts, atomic state file."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from speaker.allocate import (
    AllocationError,
    StateFileError,
    allocate,
    assign_addresses,
    read_overrides,
    read_state,
    write_overrides,
    write_state,
)
from speaker.config import AddressRange, Pool, Service, loads_config

ip = ipaddress.ip_address


def pool(*ranges: str, name: str = "web", auto_assign: bool = True) -> Pool:
    return Pool(
        name=name,
        addresses=tuple(AddressRange.parse(r) for r in ranges),
        auto_assign=auto_assign,
    )


def svc(name: str, pool: str | None = "web", address: str | None = None) -> Service:
    return Service(name=name, pool=pool, address=ip(address) if address else None)


def test_lowest_free_address_skipping_fixed_ones() -> None:
    pools = [pool("192.0.2.0/30")]
    services = [svc("fixed", address="192.0.2.0"), svc("a"), svc("b")]
    assert allocate(pools, services, {}) == {"a": ip("192.0.2.1"), "b": ip("192.0.2.2")}


def test_ranges_are_taken_lowest_first_whatever_their_order() -> None:
    pools = [pool("192.0.2.100-192.0.2.101", "192.0.2.10-192.0.2.11")]
    assert allocate(pools, [svc("a"), svc("b"), svc("c")], {}) == {
        "a": ip("192.0.2.10"),
        "b": ip("192.0.2.11"),
        "c": ip("192.0.2.100"),
    }


def test_previous_assignments_are_kept() -> None:
    pools = [pool("192.0.2.0/29")]
    previous = {"b": ip("192.0.2.5")}
    assert allocate(pools, [svc("a"), svc("b")], previous) == {
        "a": ip("192.0.2.0"),
        "b": ip("192.0.2.5"),
    }


def test_new_service_does_not_move_existing_ones() -> None:
    pools = [pool("192.0.2.0/29")]
    first = allocate(pools, [svc("b"), svc("c")], {})
    second = allocate(pools, [svc("a"), svc("b"), svc("c")], first)
    assert second["b"] == first["b"] and second["c"] == first["c"]
    assert second["a"] == ip("192.0.2.2")


def test_invalid_previous_assignments_are_dropped() -> None:
    pools = [pool("192.0.2.0/30"), pool("198.51.100.0/30", name="other")]
    previous = {
        "outside": ip("198.51.100.1"),  # now in another pool
        "taken": ip("192.0.2.0"),  # now the fixed address of another service
        "dup1": ip("192.0.2.3"),
        "dup2": ip("192.0.2.3"),  # a corrupt state: the first keeps it
    }
    services = [
        svc("fixed", address="192.0.2.0"),
        svc("outside"),
        svc("taken"),
        svc("dup1"),
        svc("dup2"),
    ]
    with pytest.raises(AllocationError, match='pool "web" has no free address left'):
        allocate(pools, services, previous)
    services = services[:-1]
    assert allocate(pools, services, previous) == {
        "outside": ip("192.0.2.1"),
        "taken": ip("192.0.2.2"),
        "dup1": ip("192.0.2.3"),
    }


def test_services_with_fixed_addresses_are_not_allocated() -> None:
    assert allocate([pool("192.0.2.0/30")], [svc("f", address="192.0.2.1")], {}) == {}


def test_pool_errors() -> None:
    with pytest.raises(AllocationError, match='no pool named "nope"'):
        allocate([], [svc("a", pool="nope")], {})
    with pytest.raises(AllocationError, match="auto_assign = false"):
        allocate([pool("192.0.2.0/30", auto_assign=False)], [svc("a")], {})


def test_ipv6_pool() -> None:
    pools = [pool("2001:db8::/64")]
    assert allocate(pools, [svc("a"), svc("b")], {}) == {
        "a": ip("2001:db8::"),
        "b": ip("2001:db8::1"),
    }


@given(
    st.integers(1, 40),
    st.lists(st.integers(0, 39), max_size=10),
    st.dictionaries(st.integers(0, 20), st.integers(0, 60), max_size=20),
)
def test_never_assigns_an_address_twice(
    wanted: int, fixed: list[int], previous_raw: dict[int, int]
) -> None:
    base = int(ip("192.0.2.0"))
    pools = [pool("192.0.2.0-192.0.2.39")]
    fixed_services = [
        svc(f"f{i}", address=str(ipaddress.IPv4Address(base + n)))
        for i, n in enumerate(dict.fromkeys(fixed))
    ]
    wanted = min(wanted, 40 - len(fixed_services))
    services = fixed_services + [svc(f"s{i}") for i in range(wanted)]
    previous = {f"s{k}": ipaddress.IPv4Address(base + v) for k, v in previous_raw.items()}
    result = allocate(pools, services, previous)
    taken = list(result.values()) + [s.address for s in fixed_services]
    assert len(taken) == len(set(taken))
    assert all(a in pools[0] for a in result.values())
    assert set(result) == {f"s{i}" for i in range(wanted)}
    # Stable: allocating again from the result changes nothing.
    assert allocate(pools, services, result) == result


@given(st.lists(st.integers(0, 39), unique=True, max_size=40), st.integers(0, 10))
def test_valid_previous_assignments_all_survive(kept: list[int], extra: int) -> None:
    base = int(ip("192.0.2.0"))
    pools = [pool("192.0.2.0-192.0.2.39")]
    previous = {f"s{i}": ipaddress.IPv4Address(base + n) for i, n in enumerate(kept)}
    extra = min(extra, 40 - len(kept))
    services = [svc(f"new{i}") for i in range(extra)] + [svc(name) for name in previous]
    result = allocate(pools, services, previous)
    assert {k: result[k] for k in previous} == previous
    free = sorted(set(range(40)) - set(kept))[:extra]
    assert [result[f"new{i}"] for i in range(extra)] == [
        ipaddress.IPv4Address(base + n) for n in free
    ]


# ---- the state file ----------------------------------------------------------------------


def test_state_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.json"
    assert read_state(path) == {}
    addresses = {"a": ip("192.0.2.1"), "b": ip("2001:db8::1")}
    write_state(path, addresses)
    assert read_state(path) == addresses
    assert json.loads(path.read_text()) == {
        "version": 1,
        "addresses": {"a": "192.0.2.1", "b": "2001:db8::1"},
        "overrides": {},
    }
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temporary left


def test_overrides_survive_address_writes(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_state(path, {"a": ip("192.0.2.1")})
    write_overrides(path, {"a": "withdraw", "b": "announce", "c": "bogus"})
    assert read_overrides(path) == {"a": "withdraw", "b": "announce"}
    write_state(path, {"a": ip("192.0.2.2")})  # the allocator rewriting addresses
    assert read_overrides(path) == {"a": "withdraw", "b": "announce"}
    assert read_state(path) == {"a": ip("192.0.2.2")}


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.json"
    write_state(path, {"a": ip("192.0.2.1")})

    def crash(src: object, dst: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr("speaker.files.os.replace", crash)
    with pytest.raises(OSError, match="disk on fire"):
        write_state(path, {"a": ip("192.0.2.9")})
    assert read_state(path) == {"a": ip("192.0.2.1")}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_corrupt_state_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{not json")
    with pytest.raises(StateFileError, match="not JSON"):
        read_state(path)
    path.write_text('{"version": 1}')
    with pytest.raises(StateFileError, match='no "addresses" table'):
        read_state(path)
    path.write_text('{"version": 7, "addresses": {}}')
    with pytest.raises(StateFileError, match="version 7, expected 1"):
        read_state(path)


def test_bad_entries_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"version": 1, "addresses": {"a": "192.0.2.1", "b": "nope", "c": 5}}')
    assert read_state(path) == {"a": ip("192.0.2.1")}


CONFIG = """
[speaker]
my_asn = 64512
node_name = "lb-1"
state_file = "state.json"
allocation = "node-local"

[[pools]]
name = "web"
addresses = ["203.0.113.0/29"]

[[services]]
name = "www"
address = "203.0.113.0"
"""


def test_stable_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "state.json"

    def start(*names: str) -> dict[str, ipaddress.IPv4Address | ipaddress.IPv6Address]:
        services = "".join(f'[[services]]\nname = "{n}"\npool = "web"\n' for n in names)
        config = loads_config(CONFIG + services, base_dir=tmp_path)
        return assign_addresses(config)

    first = start("b", "c")
    assert first == {"b": ip("203.0.113.1"), "c": ip("203.0.113.2")}
    assert read_state(path) == first
    # Restart with a new service listed first, and one removed: nobody moves.
    second = start("a", "c")
    assert second == {"a": ip("203.0.113.1"), "c": ip("203.0.113.2")}
    third = start("a", "b", "c")
    assert third["a"] == second["a"] and third["c"] == second["c"]
    assert third["b"] == ip("203.0.113.3")
    mtime = path.stat().st_mtime_ns
    assert start("a", "b", "c") == third
    assert path.stat().st_mtime_ns == mtime  # unchanged: not rewritten
