"""Log lines of a BGP session: one line per event, every one naming the peer the
same way (``bgp NAME: ...`` and ``peer=NAME`` in the fields), so that the lines
around a failover read with it (issue 16, logs)."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from protocols.bgp import CeaseSubcode, NotificationReceived
from speaker.bgp import BgpSession
from tests.helpers import log_fields
from tests.helpers.bgp_peer import Peer, host_routes, our_config, peer_core, wait_for


def bgp_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "speaker.bgp"]


def assert_one_label(records: list[logging.LogRecord], name: str) -> None:
    for record in records:
        assert record.getMessage().startswith(f"bgp {name}: "), record.getMessage()
        assert log_fields(record).get("peer") == name, record.getMessage()
        assert log_fields(record)["protocol"] == "bgp", record.getMessage()


async def run_until_cease(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, subcode: int, message: str | None
) -> tuple[Peer, BgpSession]:
    peer = Peer(peer_core())
    port = await nursery.start(peer.serve)
    session = BgpSession(our_config(port), routes=host_routes(10))
    owner = trio.CancelScope()

    async def run_guarded() -> None:
        with owner, session.cease_on_cancel(owner, subcode, message):
            await session.run()

    with caplog.at_level(logging.DEBUG, logger="speaker.bgp"):
        nursery.start_soon(run_guarded)
        await session.wait_synchronised()
        if subcode == CeaseSubcode.BFD_DOWN:
            assert session.cease_now(subcode) is True  # the BFD teardown's fast path
        owner.cancel()
        await wait_for(peer.closed.is_set)
        await session.wait_stopped()
    (notification,) = peer.of(NotificationReceived)
    assert (notification.code, notification.subcode) == (6, subcode)
    return peer, session


async def test_a_bfd_teardown_logs_its_cease_once_with_the_peer_label(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    await run_until_cease(nursery, caplog, CeaseSubcode.BFD_DOWN, None)
    records = bgp_lines(caplog)
    assert_one_label(records, "t")
    cease = [r for r in records if "6/10" in r.getMessage() or "Cease" in r.getMessage()]
    assert [r.getMessage() for r in cease] == ["bgp t: NOTIFICATION sent 6/10 (stop: bfd down)"]
    assert cease[0].levelno == logging.WARNING
    assert log_fields(cease[0])["error"] == "cease/bfd-down"  # as the failover line has it
    stops = [r.getMessage() for r in records if "-> Idle" in r.getMessage()]
    assert stops == ["bgp t: Established -> Idle (stop: bfd down)"]


async def test_a_planned_stop_logs_its_cease_once_with_the_message(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    await run_until_cease(nursery, caplog, CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, "maintenance")
    records = bgp_lines(caplog)
    assert_one_label(records, "t")
    cease = [r for r in records if "6/2" in r.getMessage() or "Cease" in r.getMessage()]
    assert [r.getMessage() for r in cease] == [
        'bgp t: NOTIFICATION sent 6/2 (stop: administrative shutdown), message "maintenance"'
    ]
    assert cease[0].levelno == logging.INFO  # planned: not a warning
    assert log_fields(cease[0])["error"] == "cease/administrative-shutdown"
