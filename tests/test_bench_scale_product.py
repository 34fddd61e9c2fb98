"""The pure pieces of bench.scale_product and bench.hostile_peer: the flood UPDATE is the
one issue 11 describes, and the /metrics readers count what they say."""

from __future__ import annotations

import struct

from bench.hostile_peer import flood_update, open_message
from bench.scale_product import lag_histogram, parse_metrics, series_sum
from protocols.bgp import CodecContext
from protocols.bgp.update import decode_update


def attributes(update: bytes) -> list[tuple[int, int, bytes]]:
    """(flags, type, value) of each path attribute of an encoded UPDATE."""
    body = update[19:]
    withdrawn = struct.unpack("!H", body[:2])[0]
    pos = 2 + withdrawn
    total = struct.unpack("!H", body[pos : pos + 2])[0]
    data, pos, out = body[pos + 2 : pos + 2 + total], 0, []
    while pos < len(data):
        flags, kind, length = data[pos], data[pos + 1], data[pos + 2]
        out.append((flags, kind, data[pos + 3 : pos + 3 + length]))
        pos += 3 + length
    return out


def test_flood_update_is_4096_bytes_of_duplicate_origins() -> None:
    update, count = flood_update("198.18.3.1")
    assert len(update) == 4096 == struct.unpack("!H", update[16:18])[0]
    assert update[18] == 2  # UPDATE
    origins = [a for a in attributes(update) if a[1] == 1]
    assert count == 1353 and len(origins) == 1 + count
    assert origins[0][2] == b"\x00" and all(value == b"" for _, _, value in origins[1:])
    # The speaker's core keeps the first ORIGIN and carries on (no session reset).
    decoded = decode_update(update[19:], CodecContext(asn4=True))
    assert [a for a in decoded.update.attributes if a.TYPE == 1]


def test_open_message_carries_the_asn_and_four_octet_capability() -> None:
    msg = open_message(64515, "198.18.3.1")
    assert msg[18] == 1 and struct.unpack("!H", msg[20:22])[0] == 64515
    assert bytes([65, 4]) + struct.pack("!I", 64515) in msg


METRICS = b"""# HELP metallb_bfd_session_down_events x
metallb_bfd_session_down_events{peer="198.18.1.1"} 3.0
speaker_service_healthy{service="s1"} 1.0
speaker_event_loop_lag_seconds_bucket{le="0.001"} 90.0
speaker_event_loop_lag_seconds_bucket{le="0.005"} 99.0
speaker_event_loop_lag_seconds_bucket{le="0.1"} 100.0
speaker_event_loop_lag_seconds_bucket{le="+Inf"} 100.0
speaker_event_loop_lag_seconds_sum 0.2
speaker_event_loop_lag_seconds_count 100.0
"""


def test_parse_metrics_reads_only_the_series_it_needs() -> None:
    m = parse_metrics(METRICS)
    assert series_sum(m, "metallb_bfd_session_down_events") == 3.0
    assert not any(k.startswith("speaker_service_healthy") for k in m)


def test_lag_histogram_between_two_scrapes() -> None:
    lag = lag_histogram({}, parse_metrics(METRICS))
    assert lag is not None
    assert (lag["count"], lag["p50_ms"], lag["p99_ms"], lag["max_ms"]) == (100.0, 1.0, 5.0, 100.0)
    assert lag["mean_ms"] == 2.0
    assert lag_histogram({}, parse_metrics(METRICS.split(b"speaker_event")[0])) is None
