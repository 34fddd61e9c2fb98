"""Keeping the cyclic garbage collector out of the loop's latency budget.

A collection holds the GIL from start to end, in whichever thread allocation
triggers it, and a full one (generation 2) scans every tracked object that is not
frozen: 30-80 ms at 65,536 routes while a big reply is being built, measured with
the loop monitor. So: what start-up builds is frozen (``speaker run``,
``gc.freeze()``), and work that builds many short-lived objects over several loop
steps (a reload in its worker thread, a scrape, a ``show`` reply) runs with automatic
collection paused. Its objects are freed by reference counting as always; only
cyclic garbage waits for the next collection after the pause.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Iterator

__all__ = ["freeze", "frozen", "paused"]


class _Pauses:
    """How many ``paused()`` blocks run, and whether collection was on before."""

    lock = threading.Lock()
    count = 0
    resume = False
    frozen = False
    started = 0.0


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No automatic collection while any ``paused()`` block runs (they nest and may
    overlap, in tasks and threads); collection resumes as it was when the last ends."""
    with _Pauses.lock:
        if _Pauses.count == 0:
            _Pauses.resume = gc.isenabled()
            _Pauses.started = time.monotonic()
            gc.disable()
        _Pauses.count += 1
    try:
        yield
    finally:
        with _Pauses.lock:
            _Pauses.count -= 1
            if _Pauses.count == 0 and _Pauses.resume:
                _age_survivors(time.monotonic() - _Pauses.started >= LONG_PAUSE)
                gc.enable()


#: Tracked objects a pause may leave in the youngest generation before they are aged.
YOUNG_SURVIVORS = 20_000
#: A pause this long is aged whatever the count says (see _age_survivors).
LONG_PAUSE = 0.05


def _age_survivors(long: bool) -> None:
    """What a pause made and kept (a scrape's rebuilt tables after a reload: 65,536
    entries) sits in the youngest generation, so the first young collection after the
    pause would scan all of it in one step (8-19 ms measured in the lab). Moved to the
    oldest generation instead, or to the frozen heap when there is one (as
    speaker.reload.collections_deferred does: two list splices); frozen objects are
    still freed by reference counting when they go.

    The count undercounts: every older object freed meanwhile takes one off it, so a
    pause in which a replaced config was freed may end with a count of a few thousand
    and hundreds of thousands of young objects (the lab: a young collection of 52 ms
    right after one). So a ``long`` pause (LONG_PAUSE: a big reply, a reload) is aged
    whatever the count."""
    if not long and gc.get_count()[0] <= YOUNG_SURVIVORS:
        return
    gc.freeze()
    if not _Pauses.frozen:
        gc.unfreeze()


def freeze() -> None:
    """``gc.freeze()``, remembered: :func:`frozen` says so without counting the
    frozen heap (``gc.get_freeze_count()`` walks it: 21 ms at 65,536 services)."""
    gc.freeze()
    _Pauses.frozen = True


def frozen() -> bool:
    """Whether :func:`freeze` ran in this process."""
    return _Pauses.frozen
