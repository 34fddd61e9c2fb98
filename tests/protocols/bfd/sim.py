"""Two sessions wired back to back through an in-memory link, on a simulated clock.

Like h11's ConnectionPair, but driven by explicit time: :meth:`Link.run_until`
advances the clock to the earliest of both sessions' ``get_timer()`` and the next
in-flight delivery, so a whole run is deterministic for a given seed. The link checks
invariants on every step and collects violations in ``Link.violations``.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable

import attrs

from protocols.bfd import (
    ControlPacket,
    Diag,
    Event,
    Session,
    SessionConfig,
    State,
    StateChanged,
)

#: (sender name, "control" | "echo", now) -> True to drop the datagram.
DropRule = Callable[[str, str, float], bool]

_EPS = 1e-9


def no_drop(sender: str, kind: str, now: float) -> bool:
    return False


@attrs.define
class Endpoint:
    name: str
    session: Session
    events: list[Event] = attrs.Factory(list)
    sent: list[tuple[float, ControlPacket]] = attrs.Factory(list)
    sent_raw: list[bytes] = attrs.Factory(list)
    # For each packet of ``sent``: the smallest transmit interval (us) the session
    # had between its previous packet and this one (what the spacing may rely on).
    sent_interval_us: list[int] = attrs.Factory(list)
    interval_floor_us: int | None = None
    last_valid_rx: float | None = None
    received_valid: int = 0
    # Detection Time just before the last handle_timer call, for the diag-1 check.
    detection_before: int | None = None

    def state_changes(self) -> list[StateChanged]:
        return [e for e in self.events if isinstance(e, StateChanged)]

    def first_up(self) -> float | None:
        return next((e.at for e in self.state_changes() if e.new is State.UP), None)


class Link:
    """Sessions ``a`` (discriminator 1) and ``b`` (discriminator 2) on a shared clock."""

    def __init__(
        self,
        a_config: SessionConfig,
        b_config: SessionConfig,
        *,
        seed: int = 0,
        latency: float = 0.001,
        latency_jitter: float = 0.0,
        jitter_until: float = float("inf"),
        drop: DropRule = no_drop,
        duplicate: float = 0.0,
        duplicate_delay: float = 0.0,
        duplicate_until: float = float("inf"),
        b_starts_at: float = 0.0,
    ) -> None:
        """``duplicate``: chance that a Control packet is delivered once more (again
        and again: 0.5 means one extra copy on average), each copy up to
        ``duplicate_delay`` seconds later than the original, until ``duplicate_until``.
        """
        self.now = 0.0
        self.duplicate = duplicate
        self.duplicate_delay = duplicate_delay
        self.duplicate_until = duplicate_until
        self._duplicate_rng = random.Random(seed + 3)
        self.latency = latency
        self.latency_jitter = latency_jitter
        self.jitter_until = jitter_until
        self._delay_rng = random.Random(seed + 2)
        self.drop = drop
        self.violations: list[str] = []
        self._seq = 0
        self._flight: list[tuple[float, int, str, str, bytes]] = []
        self.a = Endpoint(
            "a", Session(a_config, rng=random.Random(seed), now=0.0, local_discriminator=1)
        )
        self._b_config = b_config
        self._b_seed = seed + 1
        self._b_starts_at = b_starts_at
        self.b: Endpoint | None = None
        self._collect(self.a)
        self._start_b_if_due()

    # -------------------------------------------------------------- helpers

    def peer(self, ep: Endpoint) -> Endpoint | None:
        return self.b if ep is self.a else self.a

    def endpoints(self) -> list[Endpoint]:
        return [ep for ep in (self.a, self.b) if ep is not None]

    def _start_b_if_due(self) -> None:
        if self.b is None and self.now >= self._b_starts_at:
            session = Session(
                self._b_config, rng=random.Random(self._b_seed), now=self.now, local_discriminator=2
            )
            self.b = Endpoint("b", session)
            self._collect(self.b)

    def _push(self, at: float, dst: str, kind: str, data: bytes) -> None:
        self._seq += 1
        heapq.heappush(self._flight, (at, self._seq, dst, kind, data))

    def _collect(self, ep: Endpoint) -> None:
        other = "b" if ep.name == "a" else "a"
        interval = ep.session.tx_interval_us
        floor = interval if ep.interval_floor_us is None else min(ep.interval_floor_us, interval)
        ep.interval_floor_us = floor
        for data in ep.session.datagrams_to_send():
            ep.sent.append((self.now, ControlPacket.decode(data)))
            ep.sent_raw.append(data)
            ep.sent_interval_us.append(floor)
            ep.interval_floor_us = interval
            if not self.drop(ep.name, "control", self.now):
                delay = self.latency
                if self.now < self.jitter_until:  # variable delay: reordering
                    delay += self.latency_jitter * self._delay_rng.random()
                self._push(self.now + delay, other, "control", data)
                while self.now < self.duplicate_until and (
                    self._duplicate_rng.random() < self.duplicate
                ):
                    extra = self.duplicate_delay * self._duplicate_rng.random()
                    self._push(self.now + delay + extra, other, "control", data)
        for data in ep.session.echo_datagrams_to_send():
            # An echo crosses the link, is looped back by the peer, and comes home.
            if not self.drop(ep.name, "echo", self.now):
                self._push(self.now + 2 * self.latency, ep.name, "echo", data)
        while (event := ep.session.next_event()) is not None:
            ep.events.append(event)
            self._check_event(ep, event)

    def _check_event(self, ep: Endpoint, event: Event) -> None:
        if not isinstance(event, StateChanged):
            return
        if event.new is State.UP and ep.received_valid == 0:
            self.violations.append(f"{ep.name} Up at {event.at} without a valid packet")
        if event.diag is Diag.CONTROL_DETECTION_TIME_EXPIRED and event.new is State.DOWN:
            detection = ep.detection_before
            last = ep.last_valid_rx
            if last is None or detection is None:
                self.violations.append(f"{ep.name} detection expiry with nothing received")
            elif event.at - last < detection / 1e6 - _EPS:
                self.violations.append(
                    f"{ep.name} Down (diag 1) at {event.at}, only {event.at - last:.6f}s "
                    f"after the last packet, detection {detection}us"
                )

    def _by_name(self, name: str) -> Endpoint | None:
        return self.a if name == "a" else self.b

    def next_time(self) -> float | None:
        times = [t for ep in self.endpoints() if (t := ep.session.get_timer()) is not None]
        if self._flight:
            times.append(self._flight[0][0])
        if self.b is None:
            times.append(self._b_starts_at)
        return min(times) if times else None

    # -------------------------------------------------------------- driving

    def flush(self) -> None:
        """Collect output after calling a session method directly (admin, profile)."""
        for ep in self.endpoints():
            self._collect(ep)

    def deliver(self, ep: Endpoint, data: bytes) -> None:
        """Hand ``data`` to ``ep`` as a Control packet now (also used for replays)."""
        if ep.session.receive_packet(data, self.now) is None:
            ep.last_valid_rx = self.now
            ep.received_valid += 1
        self._collect(ep)

    def step(self, until: float) -> bool:
        t = self.next_time()
        if t is None or t > until:
            self.now = until
            return False
        self.now = max(self.now, t)
        self._start_b_if_due()
        while self._flight and self._flight[0][0] <= self.now:
            _, _, dst, kind, data = heapq.heappop(self._flight)
            ep = self._by_name(dst)
            if ep is None:
                continue
            if kind == "control":
                self.deliver(ep, data)
            else:
                ep.session.receive_echo(data, self.now)
                self._collect(ep)
        for ep in self.endpoints():
            timer = ep.session.get_timer()
            if timer is not None and timer <= self.now:
                ep.detection_before = ep.session.detection_time_us
                ep.session.handle_timer(self.now)
                self._collect(ep)
        return True

    def run_until(self, until: float, *, max_steps: int = 1_000_000) -> None:
        for _ in range(max_steps):
            if not self.step(until):
                return
        raise AssertionError("simulation did not make progress")

    def run_while(self, predicate: Callable[[], bool], *, limit: float) -> float:
        """Run until ``predicate()`` is false or time ``limit``; returns the time."""
        while predicate() and self.now < limit:
            if not self.step(limit):
                break
        return self.now
