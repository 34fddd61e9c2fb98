"""Rules across fields and objects, and the effective :class:`Config`.

:func:`build` takes what the loader could structure (a :class:`Draft`) and checks
every rule that needs more than one value: references by name, duplicate names,
timers (hold/keepalive, BFD detection time against the hold time), passwords,
pools (overlaps, capacity), advertisements (aggregation, local_pref conflicts,
echo with IPv6) and services (address in its pool).  It reports each problem once,
at the TOML path where it is best fixed, and only builds the :class:`Config` when
there is none.  MetalLB's rules are followed where they exist (see
``docs/configuration.md``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path

import attrs

from speaker.addresses import is_unnumbered_address, unnumbered_address
from speaker.bfd.profile import BfdProfile
from speaker.config.durations import format_duration
from speaker.config.model import (
    NO_PEER_ADDRESS,
    AddressRange,
    Advertisement,
    Config,
    ConfigIssue,
    ControlSettings,
    IPAddress,
    MetricsSettings,
    Peer,
    PeerSpec,
    Pool,
    Service,
    SpeakerSettings,
)
from speaker.config.selectors import selects

__all__ = ["ANNOUNCE_ALL_LIMIT", "MD5_KEY_MAX", "Draft", "build"]

#: The most routes one ``announce_all`` pool may expand to in one advertisement.
ANNOUNCE_ALL_LIMIT = 65536
#: Longest TCP MD5 key (RFC 2385; Linux ``TCP_MD5SIG_MAXKEYLEN``).
MD5_KEY_MAX = 80
#: MetalLB's BFD interval floor (ms): allowed, with a warning.
BFD_FLOOR_MS = 10
DEFAULT_HOLD = timedelta(seconds=90)


@attrs.define(kw_only=True)
class Draft:
    """What the loader structured: each object with its index in the file, plus the
    names found in the file (also of objects that failed to structure, so that a
    broken peer does not make every reference to it an error too)."""

    speaker: SpeakerSettings | None
    bfd_profiles: list[tuple[int, BfdProfile]] = attrs.Factory(list)
    peers: list[tuple[int, PeerSpec]] = attrs.Factory(list)
    pools: list[tuple[int, Pool]] = attrs.Factory(list)
    advertisements: list[tuple[int, Advertisement]] = attrs.Factory(list)
    services: list[tuple[int, Service]] = attrs.Factory(list)
    control: ControlSettings | None = None
    metrics: MetricsSettings | None = None
    names: dict[str, list[tuple[int, str]]] = attrs.Factory(dict)
    #: Sections of which something failed to structure: rules that need all of a
    #: section (e.g. "this address is in no pool") are skipped rather than guessed.
    broken: set[str] = attrs.Factory(set)

    def known(self, section: str) -> list[str]:
        return [name for _, name in self.names.get(section, [])]


def _defined(names: list[str]) -> str:
    return f"defined: {', '.join(names)}" if names else "none defined"


def _q(name: str) -> str:
    return f'"{name}"'


class _Checker:
    def __init__(self, draft: Draft, base_dir: Path, read_text: Callable[[Path], str]) -> None:
        self.draft = draft
        self.base_dir = base_dir
        self.read_text = read_text
        self.errors: list[ConfigIssue] = []
        self.warnings: list[ConfigIssue] = []
        self.speaker = draft.speaker or SpeakerSettings(node_name="unknown")
        self.profiles = {p.name: p for _, p in draft.bfd_profiles}
        self.pools = {p.name: p for _, p in draft.pools}
        self.peers: dict[str, Peer] = {}

    def error(self, path: str, message: str) -> None:
        self.errors.append(ConfigIssue(path, message))

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(ConfigIssue(path, message))

    # -- names -----------------------------------------------------------------------------

    def duplicate_names(self) -> None:
        for section, entries in self.draft.names.items():
            first: dict[str, int] = {}
            for index, name in entries:
                if name in first:
                    self.error(
                        f"{section}[{index}].name",
                        f"duplicate name {_q(name)} (also {section}[{first[name]}])",
                    )
                else:
                    first[name] = index

    # -- BFD profiles ----------------------------------------------------------------------

    def bfd_profiles(self) -> None:
        for index, profile in self.draft.bfd_profiles:
            path = f"bfd_profiles[{index}]"
            for key in ("transmit_interval", "receive_interval", "echo_interval"):
                if key == "echo_interval" and not profile.echo_mode:
                    continue
                if getattr(profile, key) == BFD_FLOOR_MS:
                    self.warn(
                        f"{path}.{key}",
                        f"{BFD_FLOOR_MS} ms is the floor; timers this short cause false"
                        " positives under load (CPU starvation, busy links)",
                    )
            if profile.detect_multiplier == 2:
                self.warn(
                    f"{path}.detect_multiplier",
                    "2 declares the session down after only two lost packets; expect false"
                    " positives under load (3 is usual)",
                )

    # -- peers -----------------------------------------------------------------------------

    def peer(self, index: int, spec: PeerSpec) -> None:
        path = f"peers[{index}]"
        errors_before = len(self.errors)
        address = self.unnumbered(path, spec)
        if address is None:
            return
        spec = attrs.evolve(spec, peer_address=address)

        my_asn = spec.my_asn if spec.my_asn is not None else self.speaker.my_asn
        if my_asn is None and "speaker" not in self.draft.broken:
            self.error(f"{path}.my_asn", "not set (set it here or as my_asn in [speaker])")

        profile: BfdProfile | None = None
        if spec.bfd_profile is not None:
            profile = self.profiles.get(spec.bfd_profile)
            known = self.draft.known("bfd_profiles")
            if spec.bfd_profile not in known:
                self.error(
                    f"{path}.bfd_profile",
                    f"no BFD profile named {_q(spec.bfd_profile)} ({_defined(known)})",
                )

        hold, keepalive = self.timers(path, spec)

        if profile is not None:
            self.bfd_for_peer(path, spec, profile, hold)
        elif spec.bfd_strict and spec.bfd_profile is None:
            self.error(f"{path}.bfd_strict", "needs a bfd_profile (BGP would wait for BFD)")

        if (
            spec.source_address is not None
            and spec.peer_address is not None
            and spec.source_address.version != spec.peer_address.version
        ):
            self.error(
                f"{path}.source_address",
                f"{spec.source_address} is IPv{spec.source_address.version} but peer_address"
                f" {spec.peer_address} is IPv{spec.peer_address.version}",
            )

        password = self.password(path, spec)

        if spec.passive and not spec.listen:
            self.error(f"{path}.listen", "false with passive = true: nothing would connect")
        if spec.connect_retry_max < spec.connect_retry:
            self.error(
                f"{path}.connect_retry_max",
                f"{format_duration(spec.connect_retry_max)} is below connect_retry"
                f" ({format_duration(spec.connect_retry)})",
            )

        if len(self.errors) == errors_before and my_asn is not None:
            self.peers[spec.name] = Peer.resolved(
                spec,
                my_asn=my_asn,
                bfd_profile=profile,
                hold_time=hold,
                keepalive_time=keepalive,
                password=password,
                password_file=self._path(spec.password_file) if spec.password_file else None,
            )

    def unnumbered(self, path: str, spec: PeerSpec) -> IPAddress | None:
        """The peer's address: ``peer_address``, or for an unnumbered peer (no
        ``peer_address``, an ``interface``) ``fe80::%IFNAME``, the router on that link
        (its link-local address is learnt from its Router Advertisements). None (and
        an error) when neither is set. What an unnumbered peer cannot have is an error
        here: a source address (it is our link-local address on the interface) and
        eBGP multihop (the router is on the link)."""
        if spec.peer_address is not None:
            return spec.peer_address
        if spec.interface is None:
            self.error(f"{path}.peer_address", NO_PEER_ADDRESS)
            return None
        if spec.source_address is not None:
            self.error(
                f"{path}.source_address",
                f"not with an unnumbered peer (interface {_q(spec.interface)}, no"
                " peer_address): the session runs from our IPv6 link-local address on"
                " that interface",
            )
        if spec.ebgp_multihop is True or (
            not isinstance(spec.ebgp_multihop, bool) and spec.ebgp_multihop > 1
        ):
            self.error(
                f"{path}.ebgp_multihop",
                f"not with an unnumbered peer (interface {_q(spec.interface)}, no"
                " peer_address): the router is directly on that link",
            )
        return unnumbered_address(spec.interface)

    def timers(self, path: str, spec: PeerSpec) -> tuple[timedelta, timedelta]:
        """Hold and keepalive, the missing one derived (x3 or ÷3) as in MetalLB."""
        hold, keepalive = spec.hold_time, spec.keepalive_time
        if hold is None and keepalive is None:
            return DEFAULT_HOLD, DEFAULT_HOLD / 3
        if keepalive is None:
            assert hold is not None
            return hold, hold / 3
        if hold is None:
            derived = keepalive * 3
            if derived and derived < timedelta(seconds=3):
                self.error(
                    f"{path}.keepalive_time",
                    f"{format_duration(keepalive)} gives a hold time of"
                    f" {format_duration(derived)} (3 x keepalive), below the minimum of 3s;"
                    " set hold_time too",
                )
            # BGP carries the hold time in whole seconds (RFC 4271 §4.2).
            hold = timedelta(seconds=derived // timedelta(seconds=1))
            if hold > timedelta(seconds=65535):
                self.error(
                    f"{path}.keepalive_time",
                    f"{format_duration(keepalive)} gives a hold time above the maximum of 65535s",
                )
        if keepalive > hold:
            self.error(
                f"{path}.keepalive_time",
                f"{format_duration(keepalive)} is above the hold time of {format_duration(hold)}",
            )
        elif not keepalive and hold:
            self.error(
                f"{path}.keepalive_time",
                f"0 sends no keepalives, so the peer's hold timer ({format_duration(hold)})"
                " would expire; use 0 only with hold_time 0",
            )
        return hold, keepalive

    def bfd_for_peer(self, path: str, spec: PeerSpec, profile: BfdProfile, hold: timedelta) -> None:
        interval = max(profile.receive_interval, profile.transmit_interval)
        detection_ms = profile.detect_multiplier * interval
        if hold and timedelta(milliseconds=detection_ms) >= hold:
            self.error(
                f"{path}.bfd_profile",
                f"BFD detection time {detection_ms} ms ({profile.detect_multiplier} x {interval}"
                f" ms) of profile {_q(profile.name)} is not below the hold time of"
                f" {format_duration(hold)}, so BFD would not detect a failure before BGP does",
            )
        if profile.echo_mode:
            multihop = spec.ebgp_multihop is True or (
                not isinstance(spec.ebgp_multihop, bool) and spec.ebgp_multihop > 1
            )
            if spec.peer_address is None or is_unnumbered_address(spec.peer_address):
                self.error(
                    f"{path}.bfd_profile",
                    f"profile {_q(profile.name)} has echo_mode, which is IPv4 only, but"
                    f" this peer is unnumbered (an IPv6 link-local session on"
                    f" {_q(spec.interface or '')})",
                )
            elif spec.peer_address.version == 6:
                self.error(
                    f"{path}.bfd_profile",
                    f"profile {_q(profile.name)} has echo_mode, which is IPv4 only, but"
                    f" peer_address {spec.peer_address} is IPv6",
                )
            elif multihop:
                self.warn(
                    f"{path}.bfd_profile",
                    f"profile {_q(profile.name)} has echo_mode, which is single-hop only"
                    " (RFC 5883); it is ignored for this multihop peer",
                )
            # Without ``interface`` echo goes out on the interface of the route to the
            # peer, looked up when the peer starts and followed while it runs.

    def password(self, path: str, spec: PeerSpec) -> str | None:
        if spec.password is not None and spec.password_file is not None:
            self.error(f"{path}.password_file", "password and password_file are both set; use one")
            return None
        password = spec.password
        where = f"{path}.password"
        if spec.password_file is not None:
            file = self._path(spec.password_file)
            where = f"{path}.password_file"
            try:
                password = self.read_text(file).rstrip("\r\n")
            except UnicodeDecodeError as exc:  # its str() shows a byte of the secret
                self.error(where, f"cannot read {file}: not UTF-8 text (at byte {exc.start})")
                return None
            except OSError as exc:
                self.error(where, f"cannot read {file}: {exc.strerror or exc}")
                return None
        if password is not None:
            if not password:
                self.error(where, "the password is empty")
            elif len(password.encode()) > MD5_KEY_MAX:
                self.error(
                    where,
                    f"the password is {len(password.encode())} bytes; TCP MD5 keys are at most"
                    f" {MD5_KEY_MAX}",
                )
        return password

    def peer_addresses(self) -> None:
        """Two peers of this node at the same address and port would fight over one
        session (the same address in two VRFs is two peers)."""
        seen: dict[tuple[str | None, IPAddress, int], str] = {}
        for index, spec in self.draft.peers:
            if not selects(spec.node_selectors, self.speaker.labels):
                continue
            key: tuple[str | None, IPAddress, int]
            if spec.peer_address is None and spec.interface is not None:
                key = (spec.vrf, unnumbered_address(spec.interface), spec.peer_port)
                if key in seen:
                    self.error(
                        f"peers[{index}].interface",
                        f"peer {_q(seen[key])} is also the unnumbered peer on"
                        f" {_q(spec.interface)} on this node (one router per interface)",
                    )
                else:
                    seen[key] = spec.name
                continue
            if spec.peer_address is None:
                continue  # reported by unnumbered()
            key = (spec.vrf, spec.peer_address, spec.peer_port)
            if key in seen:
                where = f" in VRF {_q(spec.vrf)}" if spec.vrf else ""
                self.error(
                    f"peers[{index}].peer_address",
                    f"{spec.peer_address} (port {spec.peer_port}) is also the address of peer"
                    f" {_q(seen[key])}{where} on this node",
                )
            else:
                seen[key] = spec.name

    # -- pools -----------------------------------------------------------------------------

    def pool_overlaps(self) -> None:
        entries: list[tuple[AddressRange, int, int, str]] = [
            (r, index, j, pool.name)
            for index, pool in self.draft.pools
            for j, r in enumerate(pool.addresses)
        ]
        entries.sort(key=lambda e: (e[0].version, e[0].first, e[1], e[2]))
        widest: tuple[AddressRange, int, int, str] | None = None
        for entry in entries:
            r, index, j, _ = entry
            if widest is not None and widest[0].overlaps(r):
                other, o_index, o_j, o_name = widest
                if o_index == index:
                    where = f"addresses[{o_j}] of the same pool"
                else:
                    where = f"pool {_q(o_name)} (pools[{o_index}].addresses[{o_j}])"
                self.error(f"pools[{index}].addresses[{j}]", f"{r} overlaps {other} of {where}")
            if (
                widest is None
                or widest[0].version != r.version
                or int(r.last) > int(widest[0].last)
            ):
                widest = entry

    # -- advertisements ----------------------------------------------------------------------

    def advertisement(self, index: int, ad: Advertisement) -> None:
        path = f"advertisements[{index}]"
        known_pools = self.draft.known("pools")
        for j, name in enumerate(ad.pools):
            if name not in known_pools:
                self.error(
                    f"{path}.pools[{j}]", f"no pool named {_q(name)} ({_defined(known_pools)})"
                )
        known_peers = self.draft.known("peers")
        for j, name in enumerate(ad.peers):
            if name not in known_peers:
                self.error(
                    f"{path}.peers[{j}]", f"no peer named {_q(name)} ({_defined(known_peers)})"
                )

        for pool in self._pools_of(ad):
            for version, key in ((4, "aggregation_length"), (6, "aggregation_length_v6")):
                length = ad.length_for(version)
                nets = [n for n in pool.networks() if n.version == version]
                if not nets:
                    continue
                narrowest = max(nets, key=lambda n: n.prefixlen)
                if narrowest.prefixlen > length:
                    self.error(
                        f"{path}.{key}",
                        f"{length} is shorter than {narrowest} in pool {_q(pool.name)}; a /{length}"
                        " would attract traffic for addresses outside the pool",
                    )
                elif pool.announce_all:
                    count = sum(1 << (length - n.prefixlen) for n in nets)
                    if count > ANNOUNCE_ALL_LIMIT:
                        self.error(
                            f"{path}.{key}",
                            f"pool {_q(pool.name)} has announce_all, which at /{length} makes"
                            f" {count} routes (the limit is {ANNOUNCE_ALL_LIMIT}); use a shorter"
                            " aggregation length",
                        )

        v6_pools = [p.name for p in self._pools_of(ad) if 6 in p.versions]
        if v6_pools:
            for peer in self._peers_of(ad):
                profile = peer.bfd_profile
                if profile is not None and profile.echo_mode and not peer.multihop:
                    self.error(
                        f"{path}.peers" if ad.peers else f"{path}.pools",
                        f"sends IPv6 pool {_q(v6_pools[0])} to peer {_q(peer.name)}, whose BFD"
                        f" profile {_q(profile.name)} has echo_mode (IPv4 only; as in MetalLB,"
                        " list the peers or pools explicitly)",
                    )

        if ad.peers:  # a peer named on purpose: say what its disable_mp leaves out
            for peer in self._peers_of(ad):
                own = peer.peer_address.version
                other = 6 if own == 4 else 4
                left = [p.name for p in self._pools_of(ad) if other in p.versions]
                if peer.disable_mp and left:
                    self.warn(
                        f"{path}.peers",
                        f"the IPv{other} addresses of pool {_q(left[0])} are not sent to peer"
                        f" {_q(peer.name)}: it has disable_mp, so its session carries IPv{own}"
                        f" only (peer at an IPv{other} address for them)",
                    )

    def _pools_of(self, ad: Advertisement) -> list[Pool]:
        if not ad.pools:
            return list(self.pools.values())
        return [self.pools[name] for name in dict.fromkeys(ad.pools) if name in self.pools]

    def _peers_of(self, ad: Advertisement) -> list[Peer]:
        if not ad.peers:
            return list(self.peers.values())
        return [self.peers[name] for name in dict.fromkeys(ad.peers) if name in self.peers]

    def local_pref_conflicts(self) -> None:
        """Two advertisements giving the same prefix to the same peer with different
        local_pref.  Pools do not overlap and no aggregate is wider than a pool's
        prefix, so a prefix can only be shared through the same pool at the same
        aggregation length."""
        ads = [(i, ad) for i, ad in self.draft.advertisements if ad.local_pref is not None]
        for n, (i, a) in enumerate(ads):
            for j, b in ads[n + 1 :]:
                if a.local_pref == b.local_pref:
                    continue
                shared_peers = [p.name for p in self._peers_of(a) if b.selects_peer(p.name)]
                if not shared_peers:
                    continue
                for pool in self._pools_of(a):
                    if not b.selects_pool(pool.name):
                        continue
                    same = [v for v in sorted(pool.versions) if a.length_for(v) == b.length_for(v)]
                    if same:
                        self.error(
                            f"advertisements[{j}].local_pref",
                            f"{b.local_pref} conflicts with local_pref {a.local_pref} of"
                            f" advertisement {_q(a.name)} (advertisements[{i}]): both send pool"
                            f" {_q(pool.name)} at /{a.length_for(same[0])} to peer"
                            f" {_q(shared_peers[0])}",
                        )
                        break

    # -- services ----------------------------------------------------------------------------

    def services(self) -> list[Service]:
        out: list[Service] = []
        known_pools = self.draft.known("pools")
        fixed: dict[IPAddress, str] = {}
        demand: dict[str, int] = {}
        for index, service in self.draft.services:
            path = f"services[{index}]"
            pool: Pool | None = None
            if service.pool is not None:
                pool = self.pools.get(service.pool)
                if service.pool not in known_pools:
                    self.error(
                        f"{path}.pool",
                        f"no pool named {_q(service.pool)} ({_defined(known_pools)})",
                    )
            if service.address is None and service.pool is None:
                self.error(path, "needs an address or a pool to take one from")
                continue
            if service.address is not None:
                address = service.address
                if address in fixed:
                    self.error(
                        f"{path}.address",
                        f"{address} is also the address of service {_q(fixed[address])}",
                    )
                fixed.setdefault(address, service.name)
                if pool is not None and address not in pool:
                    ranges = ", ".join(str(r) for r in pool.addresses)
                    self.error(
                        f"{path}.address",
                        f"{address} is outside its pool {_q(pool.name)} ({ranges})",
                    )
                    continue
                if service.pool is None:
                    pool = next((p for p in self.pools.values() if address in p), None)
                    if pool is None and "pools" in self.draft.broken:
                        continue
                    if pool is None:
                        self.error(
                            f"{path}.address",
                            f"{address} is in no pool ({_defined(list(self.pools))});"
                            " advertisements announce pools",
                        )
                        continue
            elif pool is not None and not pool.auto_assign:
                self.error(
                    f"{path}.pool",
                    f"pool {_q(pool.name)} has auto_assign = false; give the service an address",
                )
                continue
            elif (
                pool is not None
                and self.speaker.allocation != "node-local"
                and "speaker" not in self.draft.broken
            ):
                # Each node allocating alone gives one service different addresses on
                # different nodes (see speaker/allocation_file.py): the file decides.
                self.error(
                    f"{path}.address",
                    f"missing: service {_q(service.name)} takes its address from pool"
                    f" {_q(pool.name)}, and every node must give it the same one; run"
                    " `speaker allocate -c FILE` to write it into this file (or set"
                    ' allocation = "node-local" in [speaker]: each node allocates alone,'
                    " unsafe with more than one node)",
                )
            health = service.health
            if health is not None and health.timeout > health.interval:
                self.warn(
                    f"{path}.health.timeout",
                    f"{format_duration(health.timeout)} is longer than the interval"
                    f" {format_duration(health.interval)}; a slow probe delays the next one",
                )
            if pool is None:
                continue
            demand[pool.name] = demand.get(pool.name, 0) + 1
            if demand[pool.name] == pool.size + 1:
                self.error(
                    f"{path}.pool" if service.address is None else f"{path}.address",
                    f"pool {_q(pool.name)} is full: its {pool.size} addresses are all taken by"
                    " the services before this one",
                )
            out.append(attrs.evolve(service, pool=pool.name))
        return out

    # -- everything --------------------------------------------------------------------------

    def run(self, source: Path | None) -> Config | None:
        self.duplicate_names()
        self.bfd_profiles()
        for index, spec in self.draft.peers:
            self.peer(index, spec)
        self.peer_addresses()
        self.pool_overlaps()
        for index, ad in self.draft.advertisements:
            self.advertisement(index, ad)
        self.local_pref_conflicts()
        services = self.services()
        if self.errors or self.draft.speaker is None:
            return None
        speaker = attrs.evolve(self.speaker, state_file=self._path(self.speaker.state_file))
        control = self.draft.control or ControlSettings()
        peers = tuple(self.peers[spec.name] for _, spec in self.draft.peers)
        return Config(
            speaker=speaker,
            router_id=speaker.router_id or _derive_router_id(peers, speaker),
            bfd_profiles=tuple(p for _, p in self.draft.bfd_profiles),
            peers=peers,
            pools=tuple(p for _, p in self.draft.pools),
            advertisements=tuple(a for _, a in self.draft.advertisements),
            services=tuple(services),
            control=attrs.evolve(control, socket=self._path(control.socket)),
            metrics=self.draft.metrics or MetricsSettings(),
            warnings=tuple(self.warnings),
            source=source,
        )

    def _path(self, path: Path) -> Path:
        return path if path.is_absolute() else self.base_dir / path


def _derive_router_id(
    peers: Iterable[Peer], speaker: SpeakerSettings
) -> ipaddress.IPv4Address | None:
    """The first IPv4 source_address among this node's peers, in file order."""
    for peer in peers:
        if isinstance(peer.source_address, ipaddress.IPv4Address) and peer.applies_to(
            speaker.labels
        ):
            return peer.source_address
    return None


def build(
    draft: Draft,
    *,
    base_dir: Path,
    source: Path | None = None,
    read_text: Callable[[Path], str],
) -> tuple[Config | None, list[ConfigIssue], list[ConfigIssue]]:
    """Check every rule; returns ``(config or None, errors, warnings)``."""
    checker = _Checker(draft, base_dir, read_text)
    config = checker.run(source)
    return config, checker.errors, checker.warnings
