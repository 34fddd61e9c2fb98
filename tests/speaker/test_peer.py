"""A failure inside one peer is logged with its name and that peer restarts with
backoff; the other peers never notice (virtual time)."""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from typing import Any

import pytest
import trio

from speaker import peer as peer_module
from speaker.bgp.config import BgpPeerConfig
from speaker.peer import PeerPlan, PeerRunner

starts: Counter[str] = Counter()
start_times: dict[str, list[float]] = {}


class FakeSession:
    """Stands in for BgpSession: "bad" crashes on its first two runs."""

    def __init__(self, config: BgpPeerConfig, *, routes: Any) -> None:
        self.config = config
        self.cancelled_at = self.notification_written_at = self.closed_at = None

    async def run(self) -> None:
        name = self.config.name
        starts[name] += 1
        start_times.setdefault(name, []).append(trio.current_time())
        if name == "bad" and starts[name] <= 2:
            raise RuntimeError("boom: a bug in this peer")
        await trio.sleep_forever()

    def statistics(self) -> Any:
        return None

    def set_routes(self, routes: Any) -> int:
        return 0


def plan(name: str, n: int) -> PeerPlan:
    return PeerPlan(
        name=name,
        bgp=BgpPeerConfig(
            name=name, peer_address=ipaddress.IPv4Address(f"198.18.9.{n}"), peer_asn=64512,
            local_asn=64513, router_id="198.18.9.100",
        ),
    )  # fmt: skip


async def test_a_crashing_peer_restarts_with_backoff_and_others_never_notice(
    autojump_clock: Any, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    monkeypatch.setattr(peer_module, "BgpSession", FakeSession)
    monkeypatch.setattr(peer_module, "_session_counters", lambda stats: Counter())
    starts.clear()
    start_times.clear()
    runners = [PeerRunner(plan(n, i), endpoint=None, routes=lambda p: {}) for i, n in
               enumerate(["good", "bad"], start=1)]  # fmt: skip
    with caplog.at_level(logging.ERROR, logger="speaker.peer"):
        for r in runners:
            nursery.start_soon(r.run)
        await trio.sleep(10)
    good, bad = runners
    assert starts["good"] == 1 and good.crashes == 0
    assert starts["bad"] == 3 and bad.crashes == 2
    gaps = [b - a for a, b in zip(start_times["bad"], start_times["bad"][1:], strict=False)]
    assert gaps == pytest.approx([1.0, 2.0])  # RESTART_BACKOFF
    messages = [r.getMessage() for r in caplog.records]
    assert any("peer bad crashed" in m for m in messages)
    assert not any("peer good" in m for m in messages)
    nursery.cancel_scope.cancel()
