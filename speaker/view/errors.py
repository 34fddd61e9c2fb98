"""The one error a view or a command raises for a request it refuses."""

from __future__ import annotations

__all__ = ["RequestError"]


class RequestError(Exception):
    """A request the server refuses (unknown command, service, peer...): its message
    is the reply's ``error``, fit for the operator."""
