"""Exceptions raised by the BGP core.

Modelled on h11: :class:`LocalProtocolError` means the caller misused the API
(or asked to send something that cannot be encoded); :class:`RemoteProtocolError`
means the peer sent something invalid and carries the NOTIFICATION (RFC 4271
§4.5 / §6) that must be sent in response.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .constants import NotifCode

if TYPE_CHECKING:
    from .messages import NotificationMessage


class BgpError(Exception):
    """Base class of every exception raised by ``protocols.bgp``."""


class LocalProtocolError(BgpError):
    """The local side misused the API (wrong state, unencodable value, bad config text)."""


class RemoteProtocolError(BgpError):
    """The peer violated the protocol; ``to_notification()`` is the prescribed response.

    ``code``/``subcode``/``data`` follow RFC 4271 §4.5 and §6.
    """

    def __init__(self, code: NotifCode, subcode: int, data: bytes = b"", reason: str = "") -> None:
        self.code = code
        self.subcode = subcode
        self.data = data
        self.reason = reason
        super().__init__(f"{code.name}/{subcode}: {reason}" if reason else f"{code.name}/{subcode}")

    def to_notification(self) -> NotificationMessage:
        """The NOTIFICATION message to send to the peer for this error."""
        from .messages import NotificationMessage

        return NotificationMessage(code=self.code, subcode=self.subcode, data=self.data)


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
