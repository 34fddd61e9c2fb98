"""RFC 8326 graceful shutdown ("drain"): what the operator drained, and its file.

``speaker drain`` (the whole node), ``speaker drain --peer NAME`` (every route to one
router) and ``speaker drain SERVICE`` (one service's routes to every router) make the
speaker announce the affected routes again with the GRACEFUL_SHUTDOWN community
(65535:0) and, on iBGP, LOCAL_PREF 0, so that the routers move the traffic to other
nodes while the routes stay (RFC 8326 §4); ``speaker undrain`` ends it. What is
drained is a :class:`DrainState`, kept in its own small file beside the state file
(:func:`drain_file`: ``state.json`` -> ``state.drain.json``), written atomically
before it is applied, so a drain survives a reload *and* a restart of the process:
a node drained for maintenance comes back drained until ``speaker undrain``.

The drain of a planned stop (``[speaker] drain_time``, :meth:`speaker.app.Speaker.
drain_before_stop`) is not the operator's and is never written: the next start
announces normally.

How a drain is applied is not here: a peer's (or the node's) by its BGP session, to
every route it sends (:meth:`speaker.bgp.rib.AdjRibOut.set_drained`: an O(1) switch,
the routes then sent again a batch at a time); a service's by the route table
(:meth:`speaker.announce.RouteTable.set_drained`: that service's routes).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import attrs

from speaker.allocate import StateFileError
from speaker.files import write_atomically

__all__ = ["MAX_DRAINED_SERVICES", "DrainState", "drain_file", "read_drain", "write_drain"]

DRAIN_VERSION = 1
#: Services drained one by one at most: what is drained is copied, sorted and written
#: whole on each change (about 0.2 ms at this size, in one step of the loop); for more,
#: drain the node or a peer, which costs nothing per route.
MAX_DRAINED_SERVICES = 1024


def _names_set(names: Iterable[str]) -> frozenset[str]:
    return frozenset(names)


@attrs.frozen(kw_only=True)
class DrainState:
    """What the operator drained: the whole node, some peers, some services."""

    node: bool = False
    peers: frozenset[str] = attrs.field(default=frozenset(), converter=_names_set)
    services: frozenset[str] = attrs.field(default=frozenset(), converter=_names_set)

    def __bool__(self) -> bool:
        return self.node or bool(self.peers) or bool(self.services)

    def peer_drained(self, peer: str) -> bool:
        """Whether every route to ``peer`` is drained (the node or that peer)."""
        return self.node or peer in self.peers

    def changed(
        self, *, drained: bool, peer: str | None = None, service: str | None = None
    ) -> DrainState:
        """This state with the node (neither given), ``peer`` or ``service`` drained
        (``drained``) or not."""
        if peer is not None:
            return attrs.evolve(self, peers=_toggle(self.peers, peer, drained))
        if service is not None:
            return attrs.evolve(self, services=_toggle(self.services, service, drained))
        return attrs.evolve(self, node=drained)

    def record(self) -> dict[str, object]:
        """JSON-ready (``show``, the file)."""
        return {"node": self.node, "peers": sorted(self.peers), "services": sorted(self.services)}


def _toggle(names: frozenset[str], name: str, on: bool) -> frozenset[str]:
    return names | {name} if on else names - {name}


def drain_file(state_file: Path) -> Path:
    """The drain's file for ``[speaker] state_file`` (``state.json`` ->
    ``state.drain.json``, in the same directory)."""
    return state_file.with_name(f"{state_file.stem}.drain.json")


def _names(data: dict[str, object], key: str, path: Path) -> Iterable[str]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise StateFileError(f'{path}: "{key}" is not a list of names')
    return value


def read_drain(path: Path) -> DrainState:
    """The drain kept in ``path``; nothing drained when there is no file.

    Raises:
        StateFileError: the file is not one we wrote.  OSError: it cannot be read.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return DrainState()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateFileError(f"{path}: not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != DRAIN_VERSION:
        raise StateFileError(f"{path}: not a speaker drain file (version {DRAIN_VERSION})")
    node = data.get("node", False)
    if not isinstance(node, bool):
        raise StateFileError(f'{path}: "node" is not true or false')
    return DrainState(
        node=node, peers=_names(data, "peers", path), services=_names(data, "services", path)
    )


def write_drain(path: Path, state: DrainState) -> None:
    """Replace the file atomically (a blocking call: run it in a worker thread from
    the loop). Nothing drained removes the file.

    Raises:
        OSError: the directory is missing or not writable...
    """
    if not state:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({**state.record(), "version": DRAIN_VERSION}, indent=2, sort_keys=True)
    write_atomically(path, text + "\n")
