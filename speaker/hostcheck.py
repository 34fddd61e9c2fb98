"""What the configuration asks of *this host*, checked before it goes wrong at run time.

The file can be valid and still fail where it runs: a misspelled ``interface`` (the
peer then fails with ENODEV), a peer whose address has no route (ENETUNREACH on
connect), a ``source_address`` that is not one of the host's (EADDRNOTAVAIL on bind).
:func:`host_issues` asks the kernel, sending no packet: the interface list, a UDP
``connect()`` (a route lookup, as :func:`speaker.plan.local_address_for` does) and a
UDP ``bind()``.

Run by ``speaker check`` (a missing interface is an error there, the rest warnings)
and by reload validation (everything a warning), never by ``speaker run``: routes and
addresses may appear after the speaker starts, and the peer retries meanwhile.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Collection

import attrs

from speaker.config import Config, ConfigIssue, IPAddress
from speaker.config.load import suggest
from speaker.plan import local_address_for

__all__ = ["Host", "HostIssues", "host_issues"]


def _interface_names() -> list[str]:
    return [name for _, name in socket.if_nameindex()]


def _route_error(peer: IPAddress) -> OSError | None:
    try:
        local_address_for(peer)
    except OSError as exc:
        return exc
    return None


def _bind_error(address: IPAddress) -> OSError | None:
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((str(address), 0))
        except OSError as exc:
            return exc
    return None


@attrs.frozen
class Host:
    """The three questions asked of the kernel (tests replace them)."""

    interfaces: Callable[[], Collection[str]] = _interface_names
    route_error: Callable[[IPAddress], OSError | None] = _route_error
    bind_error: Callable[[IPAddress], OSError | None] = _bind_error


@attrs.frozen
class HostIssues:
    errors: tuple[ConfigIssue, ...] = ()
    warnings: tuple[ConfigIssue, ...] = ()


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def host_issues(config: Config, *, strict: bool = True, host: Host | None = None) -> HostIssues:
    """The problems this host would give the peers of ``config`` that apply to it.

    ``strict``: a missing interface is an error (``speaker check``); otherwise every
    finding is a warning (reload validation, ``check --host-checks warn``).
    """
    host = host or Host()
    errors: list[ConfigIssue] = []
    warnings: list[ConfigIssue] = []
    names: Collection[str] | None = None
    for index, peer in enumerate(config.peers):
        if not peer.applies_to(config.speaker.labels):
            continue  # it runs on other nodes
        path = f"peers[{index}]"
        if peer.interface is not None:
            names = host.interfaces() if names is None else names
            if peer.interface not in names:
                known = sorted(names)
                hint = suggest(peer.interface, known)
                message = f'no interface "{peer.interface}" on this host' + (
                    f' (did you mean "{hint}"?)' if hint else f" (interfaces: {', '.join(known)})"
                )
                issue = ConfigIssue(f"{path}.interface", message)
                (errors if strict else warnings).append(issue)
        if peer.source_address is not None:
            failed = host.bind_error(peer.source_address)
            if failed is not None:
                why = (
                    "is not an address of this host"
                    if failed.errno == errno.EADDRNOTAVAIL
                    else f"cannot be bound ({_reason(failed)})"
                )
                warnings.append(ConfigIssue(
                    f"{path}.source_address",
                    f"{peer.source_address} {why}: the session cannot start until it is",
                ))  # fmt: skip
        # An unnumbered peer's address is learnt on its interface (checked above).
        failed = None if peer.unnumbered else host.route_error(peer.peer_address)
        if failed is not None:
            warnings.append(ConfigIssue(
                f"{path}.peer_address",
                f"no route to {peer.peer_address} on this host ({_reason(failed)}): the"
                " session cannot connect until there is one",
            ))  # fmt: skip
    return HostIssues(errors=tuple(errors), warnings=tuple(warnings))
