"""Fixtures for the runtime's tests."""

from __future__ import annotations

import pytest

from speaker import peer as peer_module


@pytest.fixture
def bfd_not_held(monkeypatch: pytest.MonkeyPatch) -> None:
    """For :func:`tests.helpers.running.running_speaker`: that speaker hears its own BFD
    and never gets BGP Established, so enable BFD at once rather than after the hold for
    BGP (speaker/peer.py BFD_HOLD_MAX). A module asks with
    ``pytestmark = pytest.mark.usefixtures("bfd_not_held")``."""
    monkeypatch.setattr(peer_module, "BFD_HOLD_MAX", 0.0)
