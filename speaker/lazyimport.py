"""Standard modules imported only when first used: ``ssl``, ``hmac`` and ``hashlib``.

Trio imports ``ssl`` (for ``trio.SSLStream``) and ``hmac`` (for DTLS cookies) when it is
imported itself, and with them OpenSSL's libssl and libcrypto: 5.2 MiB of the idle
speaker's RSS, for features it uses only with BFD authentication or echo (hashlib,
hmac) or an ``https://`` health check (ssl). :func:`defer` puts a placeholder module
in ``sys.modules`` for each: ``import ssl`` binds the placeholder, and its first
attribute read imports the real module and copies its namespace into the
placeholder, so every holder sees the real module from then on.

Importing libcrypto costs a few milliseconds, too long for one step of the Trio loop:
:func:`load_for` imports what a configuration will use before the loop starts and in
a reload's worker thread (:mod:`speaker.daemon`, :mod:`speaker.reload`), so the
first packet or probe that needs it never pays the import on the loop.
"""

from __future__ import annotations

import importlib
import sys
import threading
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

    from speaker.bfd.profile import BfdProfile
    from speaker.config import Config

__all__ = ["DEFERRED", "defer", "deferred", "load", "load_for", "load_for_bfd"]

#: The modules :func:`defer` defers (hmac before hashlib: hmac imports hashlib).
DEFERRED = ("ssl", "hmac", "hashlib")

_lock = threading.RLock()


class _Deferred(types.ModuleType):
    """A module not imported yet: the first attribute read imports it."""

    def __getattr__(self, attr: str) -> Any:
        return getattr(load(self.__name__), attr)


def defer(*names: str) -> None:
    """Defer importing ``names`` (default :data:`DEFERRED`) until first used; a module
    already imported is left as it is."""
    with _lock:
        for name in names or DEFERRED:
            if name not in sys.modules:
                sys.modules[name] = _Deferred(name)


def deferred(name: str) -> bool:
    """Whether ``name`` is still a placeholder (not imported yet)."""
    return isinstance(sys.modules.get(name), _Deferred)


def load(name: str) -> types.ModuleType:
    """The real module ``name``, imported now if it was deferred."""
    with _lock:
        module = sys.modules.get(name)
        if not isinstance(module, _Deferred):
            return importlib.import_module(name)
        del sys.modules[name]
        try:
            real = importlib.import_module(name)
        except BaseException:
            sys.modules[name] = module
            raise
        # Whoever bound the placeholder (``import ssl`` in trio) now holds the real
        # namespace: the same classes and functions, so isinstance() checks agree.
        module.__dict__.update(real.__dict__)
        return real


def load_for(config: Config) -> None:
    """Import now what ``config`` will use: hashlib and hmac for BFD authentication or
    echo, ssl for an ``https://`` health check."""
    load_for_bfd(config.bfd_profiles)
    if any(
        s.health is not None and (s.health.http or "").startswith("https:") for s in config.services
    ):
        load("ssl")


def load_for_bfd(profiles: Iterable[BfdProfile]) -> None:
    """Import hashlib and hmac now if a profile authenticates or runs echo (its
    packets are signed or checked with them)."""
    if any(p.auth is not None or p.echo_mode for p in profiles):
        load("hashlib")
        load("hmac")
