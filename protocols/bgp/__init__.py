"""BGP-4 (RFC 4271 and friends): message codec and finite state machine."""

from __future__ import annotations
