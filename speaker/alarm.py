"""The sleep of a task that drives a sans-IO core: until the core's next timer, or
until something else gave the core input (a kick).

A core (BFD's ``Session``, BGP's ``Connection``) says when it wants to be called
again (``get_timer()``); its task calls it, sends what it queued, and sleeps until
then. Any other task that feeds the core (a received packet, a command) kicks the
sleeper, so that the core's output goes out and the timer is re-armed at once. A kick
while the task is awake (it is already on its way) makes its next sleep return at
once, after a checkpoint, so no kick is ever lost::

    alarm = Alarm()
    while True:
        if (deadline := core.get_timer()) is not None and now() >= deadline:
            core.handle_timer(now())
        send(core.data_to_send())
        await alarm.sleep_until(core.get_timer())

    # another task:
    core.receive(data, now()); alarm.kick()
"""

from __future__ import annotations

import math

import trio

__all__ = ["Alarm"]


class Alarm:
    """One task's wake-up: :meth:`sleep_until` a deadline, cut short by :meth:`kick`."""

    def __init__(self) -> None:
        self._scope: trio.CancelScope | None = None
        self._pending = False

    @property
    def deadline(self) -> float | None:
        """When the sleeping task wakes (``-inf`` once kicked); None while it is awake."""
        return None if self._scope is None else self._scope.deadline

    def kick(self) -> None:
        """Wake the task now, or make its next sleep return at once if it is awake."""
        if self._scope is not None:
            self._scope.deadline = -math.inf
        else:
            self._pending = True

    async def sleep_until(self, deadline: float | None) -> None:
        """Until ``deadline`` (trio time; None: no deadline) or a kick. A kick that came
        while the task was awake returns at once (still a checkpoint)."""
        with trio.CancelScope(deadline=math.inf if deadline is None else deadline) as scope:
            if self._pending:
                self._pending = False
                scope.deadline = -math.inf
            self._scope = scope
            await trio.sleep_forever()
        self._scope = None
