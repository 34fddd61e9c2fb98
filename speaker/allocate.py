"""Service addresses taken from pools, stable across restarts.

A service with ``pool`` and no ``address`` gets the lowest free address of its pool
(the pool must have ``auto_assign``).  Assignments are kept in the state file so
that a restart, or a new service added to the pool, never moves an existing one:
:func:`allocate` keeps every previous assignment that is still valid (the address is
still in the service's pool and nobody else holds it) and only then hands out the
lowest free addresses, to the remaining services in file order.

The core (:func:`allocate`) is pure; :func:`read_state` and :func:`write_state` are
the thin file layer (JSON, written atomically: temporary file, fsync, ``os.replace``,
fsync of the directory), and :func:`assign_addresses` glues them for the runtime.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from speaker.config.model import Config, IPAddress, Pool, Service

__all__ = [
    "STATE_VERSION",
    "AllocationError",
    "StateFileError",
    "allocate",
    "assign_addresses",
    "read_state",
    "write_state",
]

STATE_VERSION = 1


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
    by_name = {pool.name: pool for pool in pools}
    todo = [s for s in services if s.address is None and s.pool is not None]
    used: set[IPAddress] = {s.address for s in services if s.address is not None}
    result: dict[str, IPAddress] = {}
    pending: list[tuple[Service, Pool]] = []
    for service in todo:
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
    for service, pool in pending:
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
    return {s.name: result[s.name] for s in todo}


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
    data = _load(path)
    if data is None:
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("addresses"), dict):
        raise StateFileError(f'{path}: no "addresses" table (not a speaker state file?)')
    if data.get("version") != STATE_VERSION:
        raise StateFileError(f"{path}: version {data.get('version')!r}, expected {STATE_VERSION}")
    out: dict[str, IPAddress] = {}
    for name, text_address in data["addresses"].items():
        if isinstance(text_address, str):
            with contextlib.suppress(ValueError):
                out[str(name)] = ipaddress.ip_address(text_address)
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
    if overrides is None:
        overrides = read_overrides(path)
    text = json.dumps(
        {
            "version": STATE_VERSION,
            "addresses": {k: str(v) for k, v in addresses.items()},
            "overrides": dict(overrides),
        },
        indent=2,
        sort_keys=True,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def assign_addresses(config: Config, state_file: Path | None = None) -> dict[str, IPAddress]:
    """Read the state file, allocate, and write it back if anything changed.

    ``state_file`` defaults to ``[speaker] state_file``.

    Raises:
        StateFileError, OSError: see :func:`read_state` and :func:`write_state`.
        AllocationError: see :func:`allocate`.
    """
    path = state_file or config.speaker.state_file
    previous = read_state(path)
    addresses = allocate(config.pools, config.services, previous)
    if addresses != previous:
        with _STATE_LOCK:
            write_state(path, addresses)  # keeps the file's overrides
    return addresses
