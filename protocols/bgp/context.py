"""Per-session codec parameters negotiated in OPEN (RFC 6793, RFC 8654)."""

from __future__ import annotations

import attrs

from .constants import MAX_EXTENDED_MESSAGE_SIZE, MAX_MESSAGE_SIZE


@attrs.frozen(kw_only=True)
class CodecContext:
    """What encode/decode need to know about the session.

    ``asn4``: both sides advertised the 4-octet AS capability (RFC 6793), so
    AS_PATH/AGGREGATOR carry 4-octet AS numbers; when false the 2-octet encodings
    plus AS4_PATH/AS4_AGGREGATOR are used.
    ``extended_message``: RFC 8654 negotiated, messages other than OPEN and
    KEEPALIVE may be up to 65535 octets.

    ADD-PATH (RFC 7911) NLRI encoding is not supported: path identifiers are never
    expected on the wire.
    """

    asn4: bool = True
    extended_message: bool = False

    @property
    def max_message_size(self) -> int:
        """Largest message (header included) allowed in this context."""
        return MAX_EXTENDED_MESSAGE_SIZE if self.extended_message else MAX_MESSAGE_SIZE


#: Context used before a session is negotiated (OPEN exchange).
DEFAULT_CONTEXT = CodecContext()
