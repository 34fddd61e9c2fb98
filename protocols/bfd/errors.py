"""Errors and discard reasons.

The codec raises :class:`BfdDecodeError` for anything it cannot parse. A session never
lets a receive-side rejection escape as an exception: it returns (and counts) a
:class:`DiscardReason`, one member per check of RFC 5880 §6.8.6 and §6.7.
"""

from __future__ import annotations

import enum


class DiscardReason(enum.Enum):
    """Why a received datagram was dropped; the value is a stable counter/log label."""

    # Codec level (raised by decode as BfdDecodeError.discard_reason).
    MALFORMED = "malformed"
    BAD_VERSION = "bad-version"
    BAD_LENGTH = "bad-length"
    # §6.8.6 header checks.
    ZERO_DETECT_MULT = "zero-detect-mult"
    MULTIPOINT = "multipoint"
    ZERO_MY_DISCRIMINATOR = "zero-my-discriminator"
    YOUR_DISCRIMINATOR_MISMATCH = "your-discriminator-mismatch"
    ZERO_YOUR_DISCRIMINATOR = "zero-your-discriminator"
    POLL_AND_FINAL = "poll-and-final"
    # For the runtime's demultiplexer: no session matches the packet.
    NO_SESSION = "no-session"
    # §6.8.6 / §6.7 authentication checks.
    AUTH_UNEXPECTED = "auth-unexpected"
    AUTH_MISSING = "auth-missing"
    AUTH_TYPE_MISMATCH = "auth-type-mismatch"
    AUTH_KEY_UNKNOWN = "auth-key-unknown"
    AUTH_BAD_LENGTH = "auth-bad-length"
    AUTH_BAD_PASSWORD = "auth-bad-password"
    AUTH_BAD_DIGEST = "auth-bad-digest"
    AUTH_SEQUENCE_OUT_OF_WINDOW = "auth-sequence-out-of-window"
    # §6.8.6: "If bfd.SessionState is AdminDown, discard the packet" (after recording
    # the remote's variables).
    LOCAL_ADMIN_DOWN = "local-admin-down"
    # Echo (our own format, §6.4 / §6.8.8).
    ECHO_MALFORMED = "echo-malformed"
    ECHO_WRONG_DISCRIMINATOR = "echo-wrong-discriminator"
    ECHO_BAD_TAG = "echo-bad-tag"
    ECHO_STALE = "echo-stale"
    ECHO_NOT_ACTIVE = "echo-not-active"


class BfdDecodeError(ValueError):
    """A datagram is not a well-formed BFD packet.

    ``reason`` is a human-readable sentence; ``discard_reason`` is the counter label the
    session records for it.
    """

    def __init__(
        self, reason: str, *, discard_reason: DiscardReason = DiscardReason.MALFORMED
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.discard_reason = discard_reason
