"""``speaker allocate``: pool addresses written into the configuration file itself.

Every node that reads one file must give each service the same address, whatever
its own history; so nodes do not allocate (``[speaker] allocation = "config"``, the
default, makes ``check``, ``run`` and ``reload`` refuse a pool service without an
address), and the allocation is done once, here, on the file that is distributed:

* :func:`allocate_text` loads the file (every rule of ``check`` except that one),
  runs :func:`speaker.allocate.allocate` with no state (so the same file always gives
  the same result) and returns the new text. Existing addresses are the input, never
  changed: a service that has one keeps it, an address held by one service is never
  given to another, and the services without one get the lowest free address of
  their pool, in file order.
* :func:`add_addresses` edits the TOML with tomlkit: ``address = "..."`` is inserted
  right after the service's ``pool = "..."``; every other byte (comments, blank
  lines, key order, quoting) is kept. The result is parsed again and checked before
  anything is written.
* ``--adopt-state FILE`` (:func:`adopt_conflicts`) first takes the addresses a node's
  state file (``allocation = "node-local"``) holds, so that migrating keeps what
  that node announces; what contradicts the file is refused, listed in full.
"""

from __future__ import annotations

import contextlib
import difflib
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import tomlkit
import tomlkit.items

from speaker.allocate import AllocationError, StateFileError, allocate, read_state
from speaker.config import ConfigError, ConfigIssue, build_config
from speaker.config.model import Config, IPAddress
from speaker.files import write_atomically

__all__ = [
    "AllocateError",
    "Allocation",
    "add_addresses",
    "adopt_conflicts",
    "allocate_text",
    "main",
]

EXIT_OK = 0
EXIT_CONFIG = 2


class AllocateError(Exception):
    """The file cannot be allocated: ``problems`` says why, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@attrs.frozen
class Allocation:
    """What :func:`allocate_text` did: the new text, and the addresses it gave
    (service name -> address, in file order), of which ``adopted`` came from a
    state file."""

    text: str
    addresses: Mapping[str, IPAddress]
    adopted: frozenset[str] = frozenset()
    #: The file sets ``[speaker] allocation = "node-local"``.
    node_local: bool = False
    config: Config | None = attrs.field(default=None, eq=False, repr=False)


def _config_for_allocation(
    text: str, *, base_dir: Path, source: Path | None
) -> tuple[Config, bool]:
    """The file's effective configuration, with pool services allowed to lack an
    address (what ``speaker allocate`` is for); every other rule applies. The bool:
    the file itself sets ``allocation = "node-local"``.

    Raises:
        ConfigError: a TOML syntax error or any other invalid part.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([ConfigIssue("", f"TOML syntax error: {exc}")]) from None
    speaker = data.get("speaker", {})
    node_local = isinstance(speaker, dict) and speaker.get("allocation") == "node-local"
    if isinstance(speaker, dict) and speaker.get("allocation", "config") == "config":
        data["speaker"] = {**speaker, "allocation": "node-local"}
    return build_config(data, base_dir=base_dir, source=source), node_local


def adopt_conflicts(
    config: Config, adopted: Mapping[str, IPAddress], source: str
) -> tuple[dict[str, IPAddress], list[str], list[str]]:
    """Which of a state file's addresses (``adopted``) can be written into the file.

    Returns ``(usable, conflicts, notes)``: ``usable`` the entries for services of the
    file that have no address yet; ``conflicts`` every entry that contradicts the
    file (another address in the file, an address outside the service's pool or held
    by another service, one address for two services); ``notes`` what is skipped
    (services the file does not have, entries the file already agrees with).
    """
    holders: dict[IPAddress, str] = {
        s.address: s.name for s in config.services if s.address is not None
    }
    by_name = {s.name: s for s in config.services}
    usable: dict[str, IPAddress] = {}
    conflicts: list[str] = []
    notes: list[str] = []
    claimed: dict[IPAddress, str] = {}
    for name, address in adopted.items():
        service = by_name.get(name)
        if service is None:
            notes.append(f'{source}: service "{name}" ({address}) is not in the file: skipped')
            continue
        if service.address is not None:
            if service.address != address:
                conflicts.append(
                    f'service "{name}": the file gives it {service.address}, {source} gives'
                    f" it {address}"
                )
            continue
        assert service.pool is not None
        pool = config.pool(service.pool)
        if address not in pool:
            ranges = ", ".join(str(r) for r in pool.addresses)
            conflicts.append(
                f'service "{name}": {source} gives it {address}, outside its pool'
                f' "{pool.name}" ({ranges})'
            )
            continue
        if address in holders:
            conflicts.append(
                f'service "{name}": {source} gives it {address}, which the file gives to'
                f' service "{holders[address]}"'
            )
            continue
        if address in claimed:
            conflicts.append(
                f'service "{name}": {source} gives it {address}, and also service'
                f' "{claimed[address]}"'
            )
            continue
        claimed[address] = name
        usable[name] = address
    return usable, conflicts, notes


def allocate_text(
    text: str,
    *,
    base_dir: Path,
    source: Path | None = None,
    adopted: Mapping[str, IPAddress] | None = None,
    adopted_from: str = "the state file",
) -> Allocation:
    """The file with an address for every pool service that has none.

    Deterministic: the same ``text`` (and ``adopted``) always gives the same result;
    a file where every pool service has an address comes back unchanged.

    Raises:
        ConfigError: the file is invalid (for another reason than missing addresses).
        AllocateError: a conflict with ``adopted``, or a pool is full.
    """
    config, node_local = _config_for_allocation(text, base_dir=base_dir, source=source)
    usable: dict[str, IPAddress] = {}
    if adopted:
        usable, conflicts, _ = adopt_conflicts(config, adopted, adopted_from)
        if conflicts:
            raise AllocateError(conflicts)
    try:
        addresses = allocate(config.pools, config.services, usable)
    except AllocationError as exc:
        raise AllocateError([str(exc)]) from None
    new_text = add_addresses(text, addresses) if addresses else text
    return Allocation(
        text=new_text,
        addresses=addresses,
        adopted=frozenset(n for n in usable if addresses.get(n) == usable[n]),
        node_local=node_local,
        config=config,
    )


# ---- the TOML edit ---------------------------------------------------------------------


def _entries(doc: tomlkit.TOMLDocument) -> list[Any]:
    services = doc.get("services")
    if isinstance(services, tomlkit.items.AoT | tomlkit.items.Array):
        return list(services)
    return []


def _insert_address(entry: Any, address: str) -> None:
    """``address = "..."`` right after ``pool`` in one service's table (or inline
    table), with the pool line's indentation."""
    item = tomlkit.item(address)
    pool_item = entry.get("pool") if hasattr(entry, "get") else None
    container = getattr(entry, "value", None)
    if isinstance(entry, tomlkit.items.Table) and pool_item is not None:
        with contextlib.suppress(AttributeError):
            item.trivia.indent = pool_item.trivia.indent
    insert_after = getattr(container, "_insert_after", None)
    if pool_item is not None and insert_after is not None:
        # tomlkit has no public "insert after"; Container._insert_after has been
        # there since 0.5, and the result is verified by add_addresses.
        insert_after("pool", "address", item)
    else:
        entry["address"] = item


def add_addresses(text: str, addresses: Mapping[str, IPAddress]) -> str:
    """``text`` with ``address = "..."`` added to each named ``[[services]]`` entry.

    Only those entries change, and only by that line (inline tables: that key).

    Raises:
        AllocateError: a named service is not in the file, already has an address,
            or the edited text does not read back as exactly the intended change.
    """
    doc = tomlkit.parse(text)
    todo = {name: str(address) for name, address in addresses.items()}
    for entry in _entries(doc):
        name = entry.get("name")
        if not isinstance(name, str) or str(name) not in todo:
            continue
        if "address" in entry:
            raise AllocateError([f'service "{name}" already has an address'])
        _insert_address(entry, todo.pop(str(name)))
    if todo:
        raise AllocateError([f'service "{name}" is not in the file' for name in todo])
    new_text = tomlkit.dumps(doc)
    _verify(text, new_text, addresses)
    return new_text


def _verify(old: str, new: str, addresses: Mapping[str, IPAddress]) -> None:
    """The edit read back: the same document, plus exactly the new addresses."""
    before, after = tomllib.loads(old), tomllib.loads(new)
    expected = before
    for entry in expected.get("services", []):
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str) and name in addresses:
            entry["address"] = str(addresses[name])
    if after != expected:
        raise AllocateError(["internal error: the edited file does not read back as intended"])


# ---- the command -----------------------------------------------------------------------


def main(file: str, *, dry_run: bool = False, adopt_state: str | None = None) -> int:
    """``speaker allocate -c FILE [--dry-run] [--adopt-state STATE]``: the exit status
    (0: written, or nothing to do; 2: invalid file, conflicts, a full pool)."""
    path = Path(file)
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{file}: cannot read the file: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    adopted: dict[str, IPAddress] = {}
    notes: list[str] = []
    if adopt_state is not None:
        state = Path(adopt_state)
        if not state.exists():
            print(f"{adopt_state}: no such state file", file=sys.stderr)
            return EXIT_CONFIG
        try:
            adopted = read_state(state)
        except (StateFileError, OSError) as exc:
            print(f"{adopt_state}: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    try:
        result = allocate_text(
            text,
            base_dir=path.parent.resolve(),
            source=path,
            adopted=adopted,
            adopted_from=str(adopt_state),
        )
    except ConfigError as exc:
        for issue in exc.errors:
            print(f"{file}: {issue}", file=sys.stderr)
        count = len(exc.errors)
        print(f"{file}: {count} error{'s' if count != 1 else ''}, nothing written", file=sys.stderr)
        return EXIT_CONFIG
    except AllocateError as exc:
        for problem in exc.problems:
            print(f"{file}: {problem}", file=sys.stderr)
        print(f"{file}: nothing written", file=sys.stderr)
        return EXIT_CONFIG
    if adopt_state is not None and result.config is not None:
        _, _, notes = adopt_conflicts(result.config, adopted, adopt_state)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    config = result.config
    for name, address in result.addresses.items():
        pool = config.service(name).pool if config is not None else None
        how = f"from {adopt_state}" if name in result.adopted else "lowest free"
        print(f'service "{name}": {address} (pool "{pool}", {how})', file=sys.stderr)
    if not result.addresses:
        print(f"{file}: every pool service has an address; nothing to do", file=sys.stderr)
        return EXIT_OK
    if dry_run:
        sys.stdout.writelines(
            difflib.unified_diff(
                text.splitlines(keepends=True),
                result.text.splitlines(keepends=True),
                fromfile=file,
                tofile=f"{file} (allocated)",
            )
        )
        print(f"{file}: --dry-run, nothing written", file=sys.stderr)
        return EXIT_OK
    try:
        write_atomically(path.resolve(), result.text)
    except OSError as exc:
        print(f"{file}: cannot write: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    count = len(result.addresses)
    print(
        f"{file}: {count} address{'es' if count != 1 else ''} written; distribute this file"
        " to every node (then speaker reload)",
        file=sys.stderr,
    )
    if result.node_local:
        print(
            f'note: {file} sets [speaker] allocation = "node-local": services added later'
            " would again be allocated by each node alone; remove it",
            file=sys.stderr,
        )
    return EXIT_OK
