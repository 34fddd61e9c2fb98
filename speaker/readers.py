"""Who still reads a replaced configuration, so that it is freed in slices, not by them.

A ``show`` reply or a metrics scrape reads the running configuration over many loop
steps, holding it (or its services, its addresses) in local variables. Should a
reload replace the configuration meanwhile, the background free of the old one
(:meth:`speaker.looplag.Slicer.free`) only lets go of its own references, and the
reader drops the last one when it returns: the whole old configuration, 65,536
services, is then freed in that one step (13-15 ms, measured with
``python -m bench.reload_steps --socket``). So readers say when they read, and the
free of a configuration waits until every reader that started before it was
replaced has finished. It is the read-side critical section of RCU, counted per
configuration generation.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

import trio

__all__ = ["Readers"]


class Readers:
    """The readers of each configuration generation still running."""

    def __init__(self) -> None:
        #: The running configuration's generation; :meth:`replaced` advances it.
        self.generation = 0
        self._active: Counter[int] = Counter()
        self._finished = trio.Event()

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Around work that reads the running configuration across loop steps."""
        generation = self.generation
        self._active[generation] += 1
        try:
            yield
        finally:
            self._active[generation] -= 1
            if not self._active[generation]:
                del self._active[generation]
                self._finished.set()

    def replaced(self) -> int:
        """The running configuration was replaced: its generation (to wait for)."""
        old = self.generation
        self.generation += 1
        return old

    def active(self, generation: int) -> int:
        """Readers still running that started while ``generation`` or an older one ran."""
        return sum(n for g, n in self._active.items() if g <= generation)

    async def finished(self, generation: int) -> None:
        """Until no reader that started while ``generation`` (or older) ran is left."""
        while self.active(generation):
            if self._finished.is_set():
                self._finished = trio.Event()
            await self._finished.wait()
