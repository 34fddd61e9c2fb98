"""Statistics records as the runtime makes them, for the ``show`` formatters' tests."""

from __future__ import annotations

import ipaddress
from typing import Any

from protocols.bfd import Diag
from protocols.bfd import State as BfdState
from speaker import view
from speaker.bfd.profile import BfdProfile
from speaker.bfd.runtime import BfdStatistics, SessionKey
from speaker.bgp.session import BgpStatistics, ErrorRecord

KEY = SessionKey(
    peer=ipaddress.IPv4Address("198.18.1.1"),
    local=ipaddress.IPv4Address("198.18.1.2"),
    interface="to-rtr1",
)


PROFILE = BfdProfile(name="fast", transmit_interval=50, receive_interval=50)


def bfd_stats(**changes: Any) -> BfdStatistics:
    """An Up session's statistics, ``changes`` on top."""
    values: dict[str, Any] = {
        "key": KEY, "profile": "fast", "state": BfdState.UP, "remote_state": BfdState.UP,
        "local_discriminator": 1234, "remote_discriminator": 5678,
        "local_diag": Diag.NO_DIAGNOSTIC, "remote_diag": 0, "up_since": 100.0,
        "last_change": 100.0, "detect_mult": 3, "desired_min_tx_us": 50_000,
        "required_min_rx_us": 50_000, "echo_rx_us": 0, "tx_interval_us": 50_000,
        "detection_time_us": 150_000, "echo_tx_interval_us": None, "remote_detect_mult": 3,
        "remote_desired_min_tx_us": 300_000, "remote_required_min_rx_us": 50_000,
        "remote_echo_rx_us": 50_000, "control_rx": 74, "control_tx": 75, "echo_rx": 0,
        "echo_tx": 0, "up_events": 1, "down_events": 0,
        "discards": {"ttl-below-minimum": 3, "auth-bad-digest": 2, "bad-version": 0},
    }  # fmt: skip
    values.update(changes)
    return BfdStatistics(**values)


def bgp_stats(**changes: Any) -> BgpStatistics:
    """An Established session's statistics, ``changes`` on top."""
    values: dict[str, Any] = {
        "name": "rtr1", "peer": "198.18.1.1", "state": "Established", "established_at": 10.0,
        "uptime": 83.5, "flaps": 0, "local_address": "198.18.1.2",
        "remote_address": "198.18.1.1", "next_hops": {"ipv4": "198.18.1.2", "ipv6": None},
        "hold_time": 9, "keepalive_time": 3.0, "families": ("ipv4-unicast",),
        "messages_in": {"open": 1, "keepalive": 5}, "messages_out": {"open": 1, "update": 2},
        "updates_in": 0, "updates_out": 2, "prefixes_announced": 2, "prefixes_withdrawn": 0,
        "prefixes_received": {"ipv4-unicast": 3}, "prefixes_withdrawn_received": {},
        "treated_as_withdraw": 0, "adj_rib_in": {}, "adj_rib_out_desired": 2,
        "adj_rib_out_advertised": 2, "adj_rib_out_pending": 0,
        "end_of_rib_sent": ("ipv4-unicast",), "end_of_rib_received": ("ipv4-unicast",),
        "last_error_sent": ErrorRecord(code=6, subcode=10, text="", at=5.0),
        "last_error_received": ErrorRecord(code=6, subcode=2, text="maintenance", at=6.0),
        "connect_attempts": 3, "connect_failures": 1, "cancelled_at": None,
        "notification_written_at": None, "closed_at": None,
    }  # fmt: skip
    values.update(changes)
    return BgpStatistics(**values)


TOTALS = {"in:open": 2, "in:keepalive": 40, "in:update": 1, "out:open": 2, "out:update": 4,
          "out:keepalive": 41, "out:notification": 1, "flaps": 1}  # fmt: skip


def summary(stats: BgpStatistics | None = None, bfd: str | None = "up") -> dict[str, Any]:
    """Our ``show bgp summary`` row for rtr1 with :data:`TOTALS`."""
    return view.bgp_summary_row(
        name="rtr1", peer="198.18.1.1", remote_as=64512, local_as=64513,
        stats=stats, totals=TOTALS, bfd_status=bfd, sessions=2,
    )  # fmt: skip
