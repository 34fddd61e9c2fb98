"""Service addresses taken from pools, stable across restarts.

Two uses. ``speaker allocate`` (:mod:`speaker.allocation_file`) runs :func:`allocate`
on the configuration file itself, with no state, and writes the addresses into the
file: every node reading that file agrees. With ``[speaker] allocation =
"node-local"`` each node runs it alone with its state file, as described below
(several nodes may then disagree; kept for single-node set-ups and migration).

A service with ``pool`` and no ``address`` gets the lowest free address of its pool
(the pool must have ``auto_assign``).  Assignments are kept in the state file so
that a restart, or a new service added to the pool, never moves an existing one:
:func:`allocate` keeps every previous assignment that is still valid (the address is
still in the service's pool and nobody else holds it) and only then hands out the
lowest free addresses, to the remaining services in file order.

The core (:func:`allocate`) is pure; :func:`read_state` and :func:`write_state` are
the thin file layer (JSON, written atomically: temporary file, fsync, ``os.replace``,
fsync of the directory), and :func:`assign_addresses` glues them for the runtime.
Each also exists as ``*_steps``, a generator of slices (:mod:`speaker.slices`) so a
reload with 10,000+ services keeps the loop's budget: the allocation and the file's
text a slice at a time, the file written and fsync'ed in a worker thread.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from speaker.config.model import Config, IPAddress, Pool, Service
from speaker.files import write_atomically
from speaker.slices import Steps, run_at_once

__all__ = [
    "STATE_VERSION",
    "AllocationError",
    "StateFileError",
    "allocate",
    "allocate_steps",
    "assign_addresses",
    "assign_addresses_steps",
    "read_state",
    "write_state",
]

STATE_VERSION = 1
#: Services (or state file entries) handled between two yields (a few µs each).
SLICE = 256


class AllocationError(Exception):
    """A pool has no free address left (validation prevents it for a loaded Config)."""


class StateFileError(Exception):
    """The state file exists but is not one we wrote."""


def allocate(
    pools: Iterable[Pool],
    services: Iterable[Service],
    previous: Mapping[str, IPAddress],
) -> dict[str, IPAddress]:
    """Addresses for the services that have a ``pool`` and no ``address``.

    Keeps ``previous`` (service name -> address, from the state file) where still
    valid, then gives each remaining service the lowest free address of its pool.
    Returns service name -> address, in the order of ``services``.

    Raises:
        AllocationError: a pool is unknown, not ``auto_assign``, or full.
    """
    return run_at_once(allocate_steps(pools, services, previous))


def allocate_steps(
    pools: Iterable[Pool],
    services: Iterable[Service],
    previous: Mapping[str, IPAddress],
) -> Steps[dict[str, IPAddress]]:
    """:func:`allocate` in slices of :data:`SLICE` services."""
    by_name = {pool.name: pool for pool in pools}
    todo: list[Service] = []
    used: set[IPAddress] = set()
    for n, service in enumerate(services, 1):
        if service.address is not None:
            used.add(service.address)
        elif service.pool is not None:
            todo.append(service)
        if n % SLICE == 0:
            yield None
    result: dict[str, IPAddress] = {}
    pending: list[tuple[Service, Pool]] = []
    for n, service in enumerate(todo, 1):
        if n % SLICE == 0:
            yield None
        assert service.pool is not None
        pool = by_name.get(service.pool)
        if pool is None:
            raise AllocationError(f'service "{service.name}": no pool named "{service.pool}"')
        if not pool.auto_assign:
            raise AllocationError(
                f'service "{service.name}": pool "{pool.name}" has auto_assign = false'
            )
        kept = previous.get(service.name)
        if kept is not None and kept in pool and kept not in used:
            used.add(kept)
            result[service.name] = kept
        else:
            pending.append((service, pool))
    # One ascending cursor per pool: everything behind it is taken, so its next free
    # address is the lowest free one.
    cursors: dict[str, Iterator[IPAddress]] = {}
    for n, (service, pool) in enumerate(pending, 1):
        if n % SLICE == 0:
            yield None
        cursor = cursors.setdefault(pool.name, pool.iter_addresses())
        for address in cursor:
            if address not in used:
                used.add(address)
                result[service.name] = address
                break
        else:
            raise AllocationError(
                f'service "{service.name}": pool "{pool.name}" has no free address left'
            )
    out: dict[str, IPAddress] = {}
    for n, service in enumerate(todo, 1):
        out[service.name] = result[service.name]
        if n % SLICE == 0:
            yield None
    return out


# ---- the state file -----------------------------------------------------------------------


def _load(path: Path) -> object:
    """The state file's JSON, or None when there is no file yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateFileError(f"{path}: not JSON: {exc}") from None


def read_state(path: Path) -> dict[str, IPAddress]:
    """Service name -> address from the state file; ``{}`` when there is none yet.

    Entries that are not an address are dropped (the allocator reassigns them).

    Raises:
        StateFileError: the file is not JSON, or not our format.
        OSError: the file exists but cannot be read.
    """
    return run_at_once(read_state_steps(path))


def read_state_steps(path: Path) -> Steps[dict[str, IPAddress]]:
    """:func:`read_state` with the addresses parsed in slices (the file is read and
    its JSON decoded in one step: C code, about 1.5 ms for 10,000 entries)."""
    data = _load(path)
    if data is None:
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("addresses"), dict):
        raise StateFileError(f'{path}: no "addresses" table (not a speaker state file?)')
    if data.get("version") != STATE_VERSION:
        raise StateFileError(f"{path}: version {data.get('version')!r}, expected {STATE_VERSION}")
    out: dict[str, IPAddress] = {}
    for n, (name, text_address) in enumerate(data["addresses"].items(), 1):
        if isinstance(text_address, str):
            with contextlib.suppress(ValueError):
                out[str(name)] = ipaddress.ip_address(text_address)
        if n % SLICE == 0:
            yield None
    return out


OVERRIDE_MODES = ("announce", "withdraw")

#: Held around each read-modify-write of a state file: a reload writes the addresses
#: from a worker thread (keeping the file's overrides) while ``speaker withdraw`` may
#: write the overrides from the loop (keeping the file's addresses); without it one
#: could write back what it read before the other's write, losing that write.
_STATE_LOCK = threading.Lock()


def read_overrides(path: Path) -> dict[str, str]:
    """Operator overrides (service -> "announce" | "withdraw") from the state file.

    Raises:
        StateFileError, OSError: as :func:`read_state`.
    """
    data = _load(path)
    raw = data.get("overrides", {}) if isinstance(data, dict) else {}
    if not isinstance(raw, dict):
        raise StateFileError(f'{path}: "overrides" is not a table')
    return {str(k): v for k, v in raw.items() if v in OVERRIDE_MODES}


def write_overrides(path: Path, overrides: Mapping[str, str]) -> None:
    """Replace the overrides in the state file (atomically, addresses kept)."""
    with _STATE_LOCK:
        write_state(path, read_state(path), overrides)


def write_state(
    path: Path, addresses: Mapping[str, IPAddress], overrides: Mapping[str, str] | None = None
) -> None:
    """Replace the state file atomically: a reader (or a crash) sees the old file or
    the new one, never a mix. ``overrides`` None keeps the file's current ones."""
    run_at_once(write_state_steps(path, addresses, overrides))


def write_state_steps(
    path: Path, addresses: Mapping[str, IPAddress], overrides: Mapping[str, str] | None = None
) -> Steps[None]:
    """:func:`write_state`: the text in slices, then the write as one blocking call.
    With ``overrides`` None, the file's overrides are read and kept inside that call,
    under the state file lock (the caller of explicit ``overrides`` holds it)."""
    # The layout json.dumps(indent=2) gives, addresses in allocation order, built a
    # slice at a time (one dumps of 10,000 entries is a 4 ms step).
    lines: list[str] = []
    for n, (name, address) in enumerate(addresses.items(), 1):
        lines.append(f"    {json.dumps(name)}: {json.dumps(str(address))}")
        if n % SLICE == 0:
            yield None
    table = "{\n" + ",\n".join(lines) + "\n  }" if lines else "{}"

    def text(overrides: Mapping[str, str]) -> str:
        rest = json.dumps(dict(overrides), indent=2, sort_keys=True).replace("\n", "\n  ")
        return (
            f'{{\n  "addresses": {table},\n  "overrides": {rest},\n  "version": {STATE_VERSION}\n}}'
        )

    def write() -> None:
        if overrides is not None:
            _write_state(path, text(overrides))
            return
        with _STATE_LOCK:
            _write_state(path, text(read_overrides(path)))

    yield write


def _write_state(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, text + "\n")


def assign_addresses(config: Config, state_file: Path | None = None) -> dict[str, IPAddress]:
    """Read the state file, allocate, and write it back if anything changed.

    Only with ``[speaker] allocation = "node-local"``; otherwise every pool service
    has its address in the file (``speaker allocate``) and this returns ``{}``.
    ``state_file`` defaults to ``[speaker] state_file``.

    Raises:
        StateFileError, OSError: see :func:`read_state` and :func:`write_state`.
        AllocationError: see :func:`allocate`.
    """
    return run_at_once(assign_addresses_steps(config, state_file))


def assign_addresses_steps(
    config: Config, state_file: Path | None = None
) -> Steps[dict[str, IPAddress]]:
    """:func:`assign_addresses` in slices (for :func:`speaker.slices.run_in_slices`)."""
    if config.speaker.allocation != "node-local":
        # Addresses come from the file (``speaker allocate``): nodes never allocate,
        # and the state file's addresses are neither read nor rewritten.
        missing = [s.name for s in config.services if s.address is None]
        if missing:
            raise AllocationError(
                f'service "{missing[0]}" has no address (run `speaker allocate`, or set'
                ' [speaker] allocation = "node-local")'
            )
        return {}
    path = state_file or config.speaker.state_file
    previous = yield from read_state_steps(path)
    addresses = yield from allocate_steps(config.pools, config.services, previous)
    if addresses != previous:
        yield from write_state_steps(path, addresses)  # keeps the file's overrides
    return addresses
