"""The view layer: the records operators see (peers, BGP neighbours, BFD sessions,
routes, services, the config with secrets redacted), in one place that the control
socket (:mod:`speaker.control`, :mod:`speaker.commands`), the text layouts
(:mod:`speaker.show`) and the metrics read.

- :mod:`speaker.view.records`: pure functions from statistics snapshots to JSON-ready
  records (FRR's key names), and :func:`redact`.
- :mod:`speaker.view.live`: reading the running speaker in its Trio loop, in slices.
- :mod:`speaker.view.frr`: FRR 8.4's JSON shapes for the BGP commands (pure), and
  :mod:`speaker.view.frr_live` reading the speaker for them (and ``clear bgp``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from speaker.view.errors import RequestError

if TYPE_CHECKING:
    from speaker.view.frr_live import (
        advertised_routes,
        bfd_peer,
        bgp_neighbors,
        clear_bgp,
        frr_summary,
    )
    from speaker.view.live import (
        EncodedArray,
        bfd_counters,
        bfd_peers,
        bfd_record,
        bfd_runners,
        bfd_status,
        bgp_neighbor,
        bgp_summary,
        config_view,
        explain_routes,
        find_runner,
        routes,
        status,
    )
    from speaker.view.records import (
        DIAG_TEXT,
        REDACTED,
        STATUS_TEXT,
        bfd_counters_record,
        bfd_peer_record,
        bgp_neighbor_record,
        bgp_summary_row,
        diag_text,
        error_record,
        redact,
        redact_fields,
        route_record,
    )

#: Where each name lives: imported on first use, so that the CLI (which reads the
#: command table) does not load the runtime to print ``speaker --help``.
_HOME = {
    "advertised_routes": "speaker.view.frr_live",
    "bfd_peer": "speaker.view.frr_live",
    "bgp_neighbors": "speaker.view.frr_live",
    "clear_bgp": "speaker.view.frr_live",
    "frr_summary": "speaker.view.frr_live",
    "EncodedArray": "speaker.view.live",
    "bfd_counters": "speaker.view.live",
    "bfd_peers": "speaker.view.live",
    "bfd_record": "speaker.view.live",
    "bfd_runners": "speaker.view.live",
    "bfd_status": "speaker.view.live",
    "bgp_neighbor": "speaker.view.live",
    "bgp_summary": "speaker.view.live",
    "config_view": "speaker.view.live",
    "explain_routes": "speaker.view.live",
    "find_runner": "speaker.view.live",
    "routes": "speaker.view.live",
    "status": "speaker.view.live",
    "DIAG_TEXT": "speaker.view.records",
    "REDACTED": "speaker.view.records",
    "STATUS_TEXT": "speaker.view.records",
    "bfd_counters_record": "speaker.view.records",
    "bfd_peer_record": "speaker.view.records",
    "bgp_neighbor_record": "speaker.view.records",
    "bgp_summary_row": "speaker.view.records",
    "diag_text": "speaker.view.records",
    "error_record": "speaker.view.records",
    "redact": "speaker.view.records",
    "redact_fields": "speaker.view.records",
    "route_record": "speaker.view.records",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)


__all__ = [
    "DIAG_TEXT",
    "REDACTED",
    "STATUS_TEXT",
    "EncodedArray",
    "RequestError",
    "advertised_routes",
    "bfd_counters",
    "bfd_counters_record",
    "bfd_peer",
    "bfd_peer_record",
    "bfd_peers",
    "bfd_record",
    "bfd_runners",
    "bfd_status",
    "bgp_neighbor",
    "bgp_neighbor_record",
    "bgp_neighbors",
    "bgp_summary",
    "bgp_summary_row",
    "clear_bgp",
    "config_view",
    "diag_text",
    "error_record",
    "explain_routes",
    "find_runner",
    "frr_summary",
    "redact",
    "redact_fields",
    "route_record",
    "routes",
    "status",
]
