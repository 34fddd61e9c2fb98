"""BFD (RFC 5880, 5881, 5883): control packet codec and session state machine."""

from __future__ import annotations
