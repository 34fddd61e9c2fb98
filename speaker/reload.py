"""The half of a reload that does not touch the running speaker: read, validate and
derive the new file (:func:`prepare`).

It reads only the running :class:`Config` (frozen) and the files, and returns a new
:class:`Derived`, so :mod:`speaker.app` runs it in a worker thread while the loop
keeps BFD's timing (see "Latency budget" in docs/architecture.md). Its one write,
the state file of :func:`speaker.allocate.assign_addresses`, is atomic and
serialised with the operator's overrides by the allocator's lock.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Collection, Iterator

import attrs

from speaker import gcpause, lazyimport
from speaker.config import Config, ConfigError, load_config
from speaker.gcpause import paused
from speaker.hostcheck import host_issues
from speaker.plan import Derived, derive

__all__ = ["Prepared", "ReloadRefused", "collections_deferred", "emptied", "prepare"]


class ReloadRefused(Exception):
    """The new file is not applied; ``errors`` says why, one line each."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(errors)
        self.errors = errors


@attrs.frozen
class Prepared:
    derived: Derived
    warnings: tuple[str, ...] = ()


def _n(count: int, what: str) -> str:
    return f"{count} {what}{'s' if count != 1 else ''}"


def emptied(running: Config, new: Config) -> list[str]:
    """Why applying ``new`` over ``running`` would take everything down: no peers for
    this node, or no pools or services where the running file had some. (A truncated
    or half-written file parses as valid TOML; applying it would withdraw every route.)"""
    reasons: list[str] = []
    labels = new.speaker.labels
    if not new.peers:
        reasons.append("the file has no [[peers]]: every BGP session would stop")
    elif not any(peer.applies_to(labels) for peer in new.peers) and any(
        peer.applies_to(running.speaker.labels) for peer in running.peers
    ):
        reasons.append(
            "no peer of the file applies to this node (node_selectors): every BGP session"
            " would stop"
        )
    if running.pools and not new.pools:
        reasons.append(
            f"the file has no [[pools]] (the running configuration has"
            f" {_n(len(running.pools), 'pool')}): every route would be withdrawn"
        )
    if running.services and not new.services:
        reasons.append(
            f"the file has no [[services]] (the running configuration has"
            f" {_n(len(running.services), 'service')}): their routes would be withdrawn"
        )
    return reasons


ALLOW_EMPTY_HINT = "apply it anyway with `speaker reload --allow-empty`"


def prepare(
    path: str | os.PathLike[str],
    running: Config,
    *,
    allow_empty: bool,
    healthy: Collection[str] = frozenset(),
    withdrawn: Collection[str] = frozenset(),
) -> Prepared:
    """Load ``path``, refuse an emptied file (unless ``allow_empty``), derive it.

    Runs in a worker thread: touches nothing of the running speaker but ``running``.
    ``healthy``/``withdrawn`` (frozen copies of the speaker's) are what the new route
    table starts from, so the sessions then get only what differs.
    The empty-file rule comes before :func:`derive`, which would otherwise already
    have dropped every address assignment from the state file.

    Raises:
        ReloadRefused: invalid file, emptied file, allocation or state file problem.
    """
    try:
        config = load_config(path)
    except ConfigError as exc:
        raise ReloadRefused([str(issue) for issue in exc.errors]) from None
    reasons = emptied(running, config)
    if reasons and not allow_empty:
        raise ReloadRefused([*reasons, ALLOW_EMPTY_HINT])
    lazyimport.load_for(config)  # in this thread: OpenSSL's import is no loop step
    warnings = [str(issue) for issue in config.warnings]
    warnings += [str(issue) for issue in host_issues(config, strict=False).warnings]
    try:
        derived = derive(config, healthy=healthy, withdrawn=withdrawn)
    except Exception as exc:  # allocation or state file problems, an unreachable peer
        raise ReloadRefused([str(exc)]) from None
    return Prepared(derived=derived, warnings=tuple(warnings))


@contextlib.contextmanager
def collections_deferred() -> Iterator[None]:
    """No garbage collection while the body runs (:func:`speaker.gcpause.paused`);
    then what it allocated joins the oldest generation without being scanned.

    The worker thread's allocations (hundreds of thousands of objects at 10,000
    services) would otherwise trigger collections, tens of ms each, in which the loop
    cannot run. ``gc.freeze()`` + ``gc.unfreeze()`` are two list splices (O(1)) that
    move every tracked object to the oldest generation, so the next young collection
    on the loop does not scan the new config either. With a frozen heap (``gc.freeze()``
    at start, as ``speaker run`` does), the new objects join it instead.
    """
    with paused():
        try:
            yield
        finally:
            gc.freeze()
            if not gcpause.frozen():
                gc.unfreeze()
