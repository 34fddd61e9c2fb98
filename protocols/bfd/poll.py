"""Poll Sequence bookkeeping for timer changes (RFC 5880 §6.5, §6.8.3).

:class:`IntervalNegotiation` holds the advertised bfd.DesiredMinTxInterval and
bfd.RequiredMinRxInterval, the values actually in use for the transmit interval and
the Detection Time, and whether a Poll Sequence is outstanding. The session tells it
where the values should be (``request``) and when a Final arrives (``finish``).
"""

from __future__ import annotations

import attrs

__all__ = ["IntervalNegotiation"]


@attrs.define
class IntervalNegotiation:
    """Advertised and in-use intervals (microseconds) plus the Poll flag."""

    advertised_tx_us: int
    advertised_rx_us: int
    in_use_tx_us: int
    in_use_rx_us: int
    polling: bool = False

    @classmethod
    def start(cls, tx_us: int, rx_us: int) -> IntervalNegotiation:
        return cls(tx_us, rx_us, tx_us, rx_us)

    def request(self, tx_us: int, rx_us: int, *, up: bool) -> bool:
        """Move towards (tx_us, rx_us); returns True when a Poll Sequence starts.

        Only one Poll runs at a time: while one is outstanding the request is ignored,
        and the caller asks again once :meth:`finish` has run (it recomputes its
        targets then, so the latest wish wins). While Up, a larger DesiredMinTx only
        governs transmission after the Final (so the peer widened its Detection Time
        first), and a smaller RequiredMinRx only shortens our Detection Time after
        the Final (so the peer already sends faster). Anything else applies at once.
        """
        if self.polling or (tx_us, rx_us) == (self.advertised_tx_us, self.advertised_rx_us):
            return False
        self.in_use_tx_us = self.advertised_tx_us if up and tx_us > self.advertised_tx_us else tx_us
        self.in_use_rx_us = self.advertised_rx_us if up and rx_us < self.advertised_rx_us else rx_us
        self.advertised_tx_us, self.advertised_rx_us = tx_us, rx_us
        self.polling = True
        return True

    def finish(self) -> None:
        """A Final arrived (or the Poll is abandoned): the advertised values rule."""
        self.polling = False
        self.in_use_tx_us, self.in_use_rx_us = self.advertised_tx_us, self.advertised_rx_us
