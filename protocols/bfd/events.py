"""Events a session reports through ``Session.next_event()``."""

from __future__ import annotations

import attrs

from .constants import Diag, State

__all__ = ["Event", "StateChanged", "TimersChanged"]


@attrs.frozen(kw_only=True)
class StateChanged:
    """bfd.SessionState changed from ``old`` to ``new`` at time ``at`` (seconds).

    ``diag`` is bfd.LocalDiag after the change. ``remote_admin_down`` is True when the
    change was caused by the peer signalling AdminDown: RFC 5882 §3.2 says clients must
    not treat that as a forwarding failure. :attr:`path_failure` folds this in.
    """

    old: State
    new: State
    diag: Diag
    reason: str
    at: float
    remote_admin_down: bool = False

    @property
    def path_failure(self) -> bool:
        """True when an Up session went Down for a reason clients should act upon."""
        return self.old is State.UP and self.new is State.DOWN and not self.remote_admin_down


@attrs.frozen(kw_only=True)
class TimersChanged:
    """The negotiated intervals changed (all microseconds).

    ``detection_time_us`` is ``None`` until a packet from the peer has been accepted
    (and again after a Detection Time without one); ``echo_tx_interval_us`` is ``None``
    while the Echo function is not active.
    """

    tx_interval_us: int
    detection_time_us: int | None
    echo_tx_interval_us: int | None
    at: float


Event = StateChanged | TimersChanged
