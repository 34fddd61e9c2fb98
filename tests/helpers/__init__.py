"""Helpers the tests share, one module per concern; a test module imports from here,
never from another test module (a test file holds tests and what only it uses).

- ``tests.helpers``: :data:`IN_CI`, :data:`Require`, :func:`log_fields`.
- :mod:`tests.helpers.bgp_peer`: an in-process BGP router on loopback (the sans-IO core
  behind a socket) and our side's config.
- :mod:`tests.helpers.bgp_core`: a pair of sans-IO BGP connections wired together.
- :mod:`tests.helpers.bfd_core`: one sans-IO BFD session driven packet by packet.
- :mod:`tests.helpers.running`: a whole speaker in the test's process, with its control
  socket.
- :mod:`tests.helpers.metrics`: reading the Prometheus text format.
- :mod:`tests.helpers.show`: statistics records for the ``show`` formatters.
- :mod:`tests.helpers.configs`: configuration texts more than one module loads.
- :mod:`tests.helpers.interop`: our speaker and the routers in a netns lab.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
#: The ``lab_require`` fixture's type: ``lab_require("frr", "gobgp")`` skips (or in CI fails).
Require = Callable[..., None]


def log_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a record carries (``extra=speaker.log.fields(...)``)."""
    extra = getattr(record, "fields", None)
    return dict(extra) if isinstance(extra, dict) else {}
