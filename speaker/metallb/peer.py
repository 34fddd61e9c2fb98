"""``BGPPeer`` (v1beta1, v1beta2) -> ``[[peers]]``, and what ``[speaker]`` takes from it.

:func:`peer` reads every field first (:func:`_read_asns` ... :func:`_read_rest`, in
the order MetalLB documents them, so errors come in that order), then writes the
table (:func:`_write`) in the order of docs/configuration.md.

The rules are MetalLB's own (``internal/config``'s peer parsing, the CRDs'
validation): what MetalLB refuses is an error; what it accepts and the speaker cannot
carry over is a comment and a warning. Keys that other parts of the speaker add
(``graceful_restart``, ``vrf``, unnumbered peers: ``interface`` without
``peer_address``) are written when this speaker's :class:`PeerSpec` has them, else
commented with a warning (:func:`speaker_has`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import attrs

from speaker.addresses import IPAddress
from speaker.config.describe import YAML, describe, show
from speaker.config.model import PeerSpec
from speaker.config.selectors import LabelSelector
from speaker.metallb.emit import Table, selector_value
from speaker.metallb.fields import Fields, selectors
from speaker.metallb.manifests import Manifest
from speaker.metallb.report import MAX_U32, Context

__all__ = [
    "PEER_FIELDS_V1BETA1",
    "PEER_FIELDS_V1BETA2",
    "Peer",
    "peer",
    "speaker_has",
    "unnumbered_supported",
]

PEER_FIELDS_V1BETA1 = (
    "myASN",
    "peerASN",
    "peerAddress",
    "sourceAddress",
    "peerPort",
    "holdTime",
    "keepaliveTime",
    "routerID",
    "nodeSelectors",
    "password",
    "bfdProfile",
    "ebgpMultiHop",
)
PEER_FIELDS_V1BETA2 = (
    *PEER_FIELDS_V1BETA1,
    "dynamicASN",
    "localASN",
    "interface",
    "connectTime",
    "passwordSecret",
    "enableGracefulRestart",
    "vrf",
    "disableMP",
    "dualStackAddressFamily",
)


def speaker_has(key: str) -> bool:
    """Whether ``[[peers]]`` has ``key`` in this speaker."""
    return key in attrs.fields_dict(PeerSpec)


def unnumbered_supported() -> bool:
    """Whether a peer may have an ``interface`` and no ``peer_address``."""
    return attrs.fields_dict(PeerSpec)["peer_address"].default is not attrs.NOTHING


@attrs.define
class Peer:
    """A converted BGPPeer: its table, and what ``[speaker]`` is made of."""

    table: Table
    manifest: Manifest
    my_asn: int | None
    router_id: str | None
    address: IPAddress | None
    bfd_profile: str | None
    multihop: bool
    #: The session's families are its own only (no dualStackAddressFamily): MetalLB
    #: sends a session the prefixes of its address's family only.
    own_family_only: bool = True


Duration = tuple[str, timedelta]


@attrs.define
class _Read:
    """The fields of one BGPPeer as read (None: not set, or reported)."""

    my_asn: int | None = None
    peer_asn: int | None = None
    dynamic: str | None = None
    address: IPAddress | None = None
    interface: str | None = None
    source: str | None = None
    port: int | None = None
    hold: Duration | None = None
    keepalive: Duration | None = None
    connect: Duration | None = None
    router_id: str | None = None
    password: str | None = None
    secret_name: str | None = None
    profile_name: str | None = None
    multihop: bool | None = None
    selectors: list[LabelSelector] | None = None
    graceful: bool | None = None
    vrf: str | None = None
    disable_mp: bool | None = None
    dual_stack: bool | None = None
    local_asn: int | None = None
    unknown: list[tuple[str, Any]] = attrs.field(factory=list)
    echo_interface: str | None = None


def peer(
    ctx: Context, manifest: Manifest, profiles: Mapping[str, Mapping[str, Any]]
) -> Peer | None:
    """The converted peer, or None: it had errors (reported)."""
    fields = Fields(manifest, ctx.report)
    v1beta2 = manifest.version == "v1beta2"
    table = Table(manifest.origin, manifest.api_version, ctx.report)
    table.set("name", manifest.name)
    read = _Read()
    _read_asns(fields, v1beta2, read)
    _read_address(fields, v1beta2, read)
    _read_timers(fields, v1beta2, read)
    _read_rest(ctx, fields, v1beta2, read, profiles)
    if fields.failed:
        return None
    _write(ctx, table, read)
    return Peer(
        table=table,
        manifest=manifest,
        my_asn=read.my_asn,
        router_id=read.router_id,
        address=read.address,
        bfd_profile=read.profile_name,
        multihop=bool(read.multihop),
        own_family_only=not (read.dual_stack or read.interface),
    )


def _read_asns(fields: Fields, v1beta2: bool, read: _Read) -> None:
    """MetalLB: myASN is required and not 0; peerASN (0: unset) or dynamicASN, one of
    them; ebgpMultiHop is refused on an iBGP peer."""
    read.my_asn = fields.integer("myASN", 0, MAX_U32)
    if not fields.present("myASN") or read.my_asn == 0:
        fields.error(
            "spec.myASN",
            "required"
            if read.my_asn is None
            else "0 is not an AS number (MetalLB: missing local ASN)",
        )
    peer_asn = fields.integer("peerASN", 0, MAX_U32)
    read.peer_asn = peer_asn or None  # MetalLB's omitempty: 0 is not set
    dynamic = fields.string("dynamicASN") if v1beta2 else None
    if dynamic == "":
        dynamic = None
    if dynamic is not None and dynamic not in ("internal", "external"):
        fields.error("spec.dynamicASN", f'{show(dynamic)} is not "internal" or "external"')
        dynamic = None
    if read.peer_asn is not None and dynamic is not None:
        fields.error("spec.dynamicASN", "set either peerASN or dynamicASN, not both")
    elif read.peer_asn is None and dynamic is None and not fields.present("dynamicASN"):
        fields.error("spec.peerASN", "required" + (" (or dynamicASN)" if v1beta2 else ""))
    read.dynamic = dynamic
    read.local_asn = (fields.integer("localASN", 1, MAX_U32) or None) if v1beta2 else None


def _read_address(fields: Fields, v1beta2: bool, read: _Read) -> None:
    interface = (fields.string("interface") or None) if v1beta2 else None
    address_text = fields.address("peerAddress")
    if interface and fields.present("peerAddress"):
        fields.error("spec.interface", "set either peerAddress or interface, not both")
    elif not interface and not fields.present("peerAddress"):
        fields.error("spec.peerAddress", "required" + (" (or interface)" if v1beta2 else ""))
    read.interface = interface
    read.address = ipaddress.ip_address(address_text) if address_text else None
    read.source = fields.address("sourceAddress")


def _read_timers(fields: Fields, v1beta2: bool, read: _Read) -> None:
    read.port = fields.integer("peerPort", 1 if v1beta2 else 0, 16384)
    hold = fields.duration("holdTime")
    keepalive = fields.duration("keepaliveTime")
    # MetalLB checks the hold time in whole seconds, derived from keepalive x 3 if unset.
    where, given, effective = "", "", timedelta(0)
    if hold is not None:
        where, given, effective = "holdTime", hold[0], hold[1]
    elif keepalive is not None:
        where, given, effective = "keepaliveTime", keepalive[0], keepalive[1] * 3
    whole = timedelta(seconds=effective // timedelta(seconds=1))
    if whole and whole < timedelta(seconds=3):
        fields.error(f"spec.{where}", f"{given}: a hold time below 3s (MetalLB: 0 or >= 3s)")
        hold = keepalive = None
    if hold is not None and keepalive is not None and keepalive[1] > hold[1]:
        fields.error("spec.keepaliveTime", f"{keepalive[0]} is above the holdTime of {hold[0]}")
    connect = fields.duration("connectTime") if v1beta2 else None
    if connect is not None and (
        connect[1] < timedelta(seconds=1)
        or connect[1] > timedelta(seconds=65535)
        or connect[1] % timedelta(seconds=1)
    ):
        fields.error("spec.connectTime", f"{connect[0]} is not 1-65535 whole seconds")
        connect = None
    read.hold, read.keepalive, read.connect = hold, keepalive, connect


def _read_rest(
    ctx: Context,
    fields: Fields,
    v1beta2: bool,
    read: _Read,
    profiles: Mapping[str, Mapping[str, Any]],
) -> None:
    """Router ID, password, BFD profile, the rest, the unknown fields, BFD echo."""
    router_id = fields.string("routerID")
    if router_id:
        try:  # MetalLB parses it as any IP address
            parsed = ipaddress.ip_address(router_id.strip())
        except ValueError:
            fields.error("spec.routerID", f"{show(router_id)} is not an IP address")
        else:
            if parsed.version == 4:
                read.router_id = str(parsed)
            else:
                fields.warn(
                    "spec.routerID",
                    f"not carried over: {parsed} is IPv6, and a BGP identifier is a 32-bit"
                    " IPv4 address (FRR refuses it too); the speaker's router ID is used",
                )

    read.password = fields.string("password") or None
    secret = fields.spec.get("passwordSecret") if v1beta2 else None
    if secret is not None:
        read.secret_name = _secret(ctx, fields, secret)
    if read.password and read.secret_name:
        fields.error("spec.passwordSecret", "set either password or passwordSecret, not both")

    profile_name = read.profile_name = fields.string("bfdProfile") or None
    if (
        profile_name
        and profile_name not in profiles
        and ("BFDProfile", profile_name) not in ctx.broken_names
    ):
        known = ", ".join(f'"{n}"' for n in profiles) or "none"
        fields.error(
            "spec.bfdProfile",
            f'no BFDProfile named "{profile_name}" (defined: {known}); MetalLB does not'
            " configure the peer until it exists",
        )
    read.multihop = fields.boolean("ebgpMultiHop")
    if read.multihop and read.peer_asn is not None and read.peer_asn == read.my_asn:
        fields.error("spec.ebgpMultiHop", "set on an iBGP peer (peerASN = myASN): MetalLB refuses")
    read.selectors = selectors(fields, "nodeSelectors")
    read.graceful = fields.boolean("enableGracefulRestart") if v1beta2 else None
    read.vrf = (fields.string("vrf") or None) if v1beta2 else None
    read.disable_mp = fields.boolean("disableMP") if v1beta2 else None
    read.dual_stack = fields.boolean("dualStackAddressFamily") if v1beta2 else None

    read.unknown = fields.unknown(PEER_FIELDS_V1BETA2 if v1beta2 else PEER_FIELDS_V1BETA1)

    profile = profiles.get(profile_name) if profile_name else None
    if (
        profile is not None
        and profile.get("echo_mode")
        and isinstance(read.address, ipaddress.IPv4Address)
        and not read.multihop
    ):
        # Without --interface the speaker sends echo on the interface of the route to
        # the peer (looked up when the peer starts, followed while it runs), as FRR.
        read.echo_interface = ctx.options.interface_for(fields.manifest.name)


def _secret(ctx: Context, fields: Fields, secret: object) -> str | None:
    """The Secret's name; None when it has none: MetalLB's ``configmaptocrs`` writes
    ``passwordSecret: {}`` on every BGPPeer, and MetalLB reads an empty name as unset."""
    if not isinstance(secret, dict):
        fields.error("spec.passwordSecret", f"expected a mapping, got {describe(secret, YAML)}")
        return None
    name, namespace = secret.get("name"), secret.get("namespace")
    if name is None or name == "":
        return None
    if not isinstance(name, str):
        fields.error("spec.passwordSecret.name", f"expected a string, got {describe(name, YAML)}")
        return None
    if namespace not in (None, "", ctx.options.namespace):
        fields.error(
            "spec.passwordSecret.namespace",
            f'{show(namespace)}: MetalLB only reads Secrets in "{ctx.options.namespace}"',
        )
        return None
    return name


def _write(ctx: Context, table: Table, read: _Read) -> None:
    """The table, in the order of docs/configuration.md."""
    if read.local_asn is not None:
        table.set(
            "my_asn", read.local_asn,
            f"localASN (FRR's local-as {read.local_asn} no-prepend replace-as: the router"
            " sees only this AS); myASN was " + str(read.my_asn),
        )  # fmt: skip
    if read.address is not None:
        table.set("peer_address", str(read.address))
    if read.peer_asn is not None:
        table.set("peer_asn", read.peer_asn)
    else:
        table.set("peer_asn", read.dynamic, "dynamicASN: the AS the router's OPEN brings")
    if read.port and read.port != 179:  # v1beta1's 0 means MetalLB's default, 179
        table.set("peer_port", read.port)
    if read.source:
        table.set("source_address", read.source)
    if read.interface:
        _write_unnumbered(table, read)
    elif read.echo_interface:
        table.set("interface", read.echo_interface, "BFD echo is sent on this interface")
    if read.profile_name:
        table.set("bfd_profile", read.profile_name)
    if read.hold is not None:
        table.set("hold_time", _whole(table, "holdTime", read.hold))
    if read.keepalive is not None:
        table.set("keepalive_time", read.keepalive[0])
    if read.connect is not None:
        # MetalLB's connectTime is FRR's "timers connect": the wait between attempts.
        table.set("connect_retry_max", read.connect[0],
                  "connectTime: retries start after 1s and double up to this")  # fmt: skip
    if read.password:
        table.set("password", read.password)
        table.note("password: consider password_file, so the key is not in this file")
    if read.secret_name is not None:
        secrets_dir = ctx.options.secrets_dir.rstrip("/")
        path = f"{secrets_dir}/{read.secret_name}/password"
        table.note(
            f'passwordSecret "{read.secret_name}" (type kubernetes.io/basic-auth): mount the'
            f' Secret so that its key "password" is this file (in Kubernetes, a secret'
            f" volume at {secrets_dir}/{read.secret_name})"
        )
        table.set("password_file", path)
    if read.multihop:
        table.set("ebgp_multihop", True)
    if read.selectors:
        table.note(
            "node_selectors match [speaker] labels, not Kubernetes node labels: set the"
            " labels of each node there"
        )
        table.set("node_selectors", [selector_value(s) for s in read.selectors])
    if read.disable_mp and read.dual_stack:
        table.note("disableMP: dualStackAddressFamily wins, as in MetalLB: both families")
    elif read.disable_mp:
        table.set("disable_mp", True, "disableMP: this session carries its own family only")
    _write_other_helpers(table, read)
    for key, value in read.unknown:
        table.unknown(key, value)


def _whole(table: Table, key: str, duration: Duration) -> str:
    """A hold time in whole seconds: MetalLB (and FRR, and BGP's OPEN) truncate it."""
    text, value = duration
    if not value % timedelta(seconds=1):
        return text
    seconds = value // timedelta(seconds=1)
    if table.report is not None:
        table.report.warn(
            table.origin, f"spec.{key}", f"{text} is written {seconds}s, as MetalLB truncates it"
        )
    return f"{seconds}s"


def _write_unnumbered(table: Table, read: _Read) -> None:
    assert read.interface is not None
    if unnumbered_supported():
        table.set("interface", read.interface, "unnumbered: the peer's link-local address")
        return
    table.unsupported(
        "interface",
        "BGP unnumbered (no peerAddress) is not in this speaker; the peer is left out (commented)",
        read.interface,
    )
    table.commented = True


def _write_other_helpers(table: Table, read: _Read) -> None:
    """Graceful restart and VRF: written when this speaker has the key."""
    if read.graceful:
        if speaker_has("graceful_restart"):
            table.set("graceful_restart", True)
        else:
            table.unsupported(
                "enableGracefulRestart", "graceful_restart is not in this speaker", read.graceful
            )
    if read.vrf:
        if speaker_has("vrf"):
            table.set("vrf", read.vrf, "the Linux VRF device the session runs in")
        else:
            table.unsupported(
                "vrf",
                "vrf is not in this speaker; the peer is left out (commented), not put in"
                " the default VRF",
                read.vrf,
            )
            table.commented = True
