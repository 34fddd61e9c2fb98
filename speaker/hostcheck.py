"""What the configuration asks of *this host*, checked before it goes wrong at run time.

The file can be valid and still fail where it runs: a misspelled ``interface`` (the
peer then fails with ENODEV), a peer whose address has no route (ENETUNREACH on
connect), a ``source_address`` that is not one of the host's (EADDRNOTAVAIL on bind).
:func:`host_issues` asks the kernel, sending no packet: the interface list, a UDP
``connect()`` (a route lookup, as :func:`speaker.plan.local_address_for` does) and a
UDP ``bind()``.

A peer with ``vrf``: the VRF device must exist and be a VRF, its ``interface`` must
be enslaved to it (both errors, as a missing interface), and its route and source
address are asked in the VRF (a socket bound to the VRF device). A peer without
``vrf`` whose interface is in a VRF is warned about: its sessions would look in the
default VRF's table.

Run by ``speaker check`` (a missing interface or VRF is an error there, the rest warnings)
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
from speaker.netlookup import LinkInfo, links
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


def _route_error_in(peer: IPAddress, vrf: str) -> OSError | None:
    try:
        local_address_for(peer, vrf=vrf)
    except OSError as exc:
        return exc
    return None


def _bind_error(address: IPAddress, vrf: str | None = None) -> OSError | None:
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            if vrf is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, vrf.encode())
            sock.bind((str(address), 0))
        except OSError as exc:
            return exc
    return None


@attrs.frozen
class Host:
    """The questions asked of the kernel (tests replace them). ``links``: every device
    with its kind and master (VRFs); ``route_error_in`` / ``bind_error_in``: the route
    and bind checks in a VRF."""

    interfaces: Callable[[], Collection[str]] = _interface_names
    route_error: Callable[[IPAddress], OSError | None] = _route_error
    bind_error: Callable[[IPAddress], OSError | None] = _bind_error
    links: Callable[[], Collection[LinkInfo]] = links
    route_error_in: Callable[[IPAddress, str], OSError | None] = _route_error_in
    bind_error_in: Callable[[IPAddress, str], OSError | None] = _bind_error


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
    devices: dict[str, LinkInfo] | None = None
    for index, peer in enumerate(config.peers):
        if not peer.applies_to(config.speaker.labels):
            continue  # it runs on other nodes
        path = f"peers[{index}]"
        vrf_usable = True
        if peer.vrf is not None or peer.interface is not None:
            if devices is None:
                try:
                    devices = {d.name: d for d in host.links()}
                except OSError:
                    devices = {}
            vrf_usable = _vrf_issues(
                path, vrf=peer.vrf, interface=peer.interface, devices=devices, strict=strict,
                errors=errors, warnings=warnings,
            )  # fmt: skip
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
        if not vrf_usable:
            continue  # its route and address cannot be asked in a VRF that is not there
        if peer.source_address is not None:
            failed = (
                host.bind_error(peer.source_address)
                if peer.vrf is None
                else host.bind_error_in(peer.source_address, peer.vrf)
            )
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
        failed = (
            None
            if peer.unnumbered
            else host.route_error(peer.peer_address)
            if peer.vrf is None
            else host.route_error_in(peer.peer_address, peer.vrf)
        )
        if failed is not None:
            where = f" in VRF {peer.vrf}" if peer.vrf else " on this host"
            warnings.append(ConfigIssue(
                f"{path}.peer_address",
                f"no route to {peer.peer_address}{where} ({_reason(failed)}): the"
                " session cannot connect until there is one",
            ))  # fmt: skip
    return HostIssues(errors=tuple(errors), warnings=tuple(warnings))


def _vrf_issues(
    path: str,
    *,
    vrf: str | None,
    interface: str | None,
    devices: dict[str, LinkInfo],
    strict: bool,
    errors: list[ConfigIssue],
    warnings: list[ConfigIssue],
) -> bool:
    """The VRF checks of one peer; returns whether its VRF (if any) is usable."""
    by_index = {d.index: d for d in devices.values()}
    serious = errors if strict else warnings
    if vrf is not None:
        device = devices.get(vrf)
        if device is None:
            known = sorted(d.name for d in devices.values() if d.kind == "vrf")
            hint = suggest(vrf, known)
            message = f'no VRF "{vrf}" on this host' + (
                f' (did you mean "{hint}"?)'
                if hint
                else f" (VRFs: {', '.join(known)})"
                if known
                else f" (create it: ip link add {vrf} type vrf table N)"
            )
            serious.append(ConfigIssue(f"{path}.vrf", message))
            return False
        if device.kind != "vrf":
            serious.append(ConfigIssue(
                f"{path}.vrf", f'"{vrf}" is a device of kind {device.kind or "none"}, not a VRF'
            ))  # fmt: skip
            return False
    if interface is None or interface not in devices:
        return True  # a missing interface is reported by the interface check
    master = by_index.get(devices[interface].master or 0)
    in_vrf = master.name if master is not None and master.kind == "vrf" else None
    if vrf is not None and in_vrf != vrf:
        now = f"it is in VRF {in_vrf}" if in_vrf else "it is in the default VRF"
        serious.append(ConfigIssue(
            f"{path}.interface",
            f'interface "{interface}" is not enslaved to VRF "{vrf}" ({now}; ip link set'
            f" {interface} master {vrf})",
        ))  # fmt: skip
    elif vrf is None and in_vrf is not None:
        warnings.append(ConfigIssue(
            f"{path}.interface",
            f'interface "{interface}" is in VRF "{in_vrf}" but the peer has no vrf: its'
            f' sessions would use the default VRF (set vrf = "{in_vrf}")',
        ))  # fmt: skip
    return True
