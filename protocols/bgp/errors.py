"""Exceptions raised by the BGP core.

Modelled on h11: :class:`LocalProtocolError` means the caller misused the API
(or asked to send something that cannot be encoded); :class:`RemoteProtocolError`
means the peer sent something invalid and carries what the NOTIFICATION (RFC 4271
§4.5 / §6) sent in response says (``NotificationMessage.from_error`` builds it).

A leaf, as h11's errors are: this module imports nothing from ``protocols.bgp``
(a test checks), so every codec module can raise these without an import cycle.
"""

from __future__ import annotations


class BgpError(Exception):
    """Base class of every exception raised by ``protocols.bgp``."""


class LocalProtocolError(BgpError):
    """The local side misused the API (wrong state, unencodable value, bad config text)."""


class RemoteProtocolError(BgpError):
    """The peer violated the protocol; ``NotificationMessage.from_error(exc)`` is the
    prescribed response.

    ``code``/``subcode``/``data`` follow RFC 4271 §4.5 and §6; ``code`` is a
    ``NotifCode`` (an ``int``: typed so here, to keep this module a leaf).
    """

    def __init__(self, code: int, subcode: int, data: bytes = b"", reason: str = "") -> None:
        self.code = code
        self.subcode = subcode
        self.data = data
        self.reason = reason
        name = getattr(code, "name", code)
        super().__init__(f"{name}/{subcode}: {reason}" if reason else f"{name}/{subcode}")


class MalformedAttributeError(BgpError):
    """A path attribute value could not be decoded.

    ``subcode`` is the RFC 4271 §6.3 UPDATE Message Error subcode that applies;
    the RFC 7606 action is chosen by the caller from the attribute type.
    """

    def __init__(self, subcode: int, reason: str) -> None:
        self.subcode = subcode
        self.reason = reason
        super().__init__(f"UPDATE subcode {subcode}: {reason}")


#: Alias: decoders raise this; it is the same class as :class:`RemoteProtocolError`.
DecodeError = RemoteProtocolError
