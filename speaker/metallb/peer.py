"""``BGPPeer`` (v1beta1, v1beta2) -> ``[[peers]]``, and what ``[speaker]`` takes from it.

:func:`peer` reads every field first (:func:`_read`, in the order MetalLB documents
them, so errors come in that order), then writes the table (:func:`_write`) in the
order of docs/configuration.md.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import attrs

from speaker.addresses import IPAddress
from speaker.config.describe import YAML, describe, show
from speaker.config.selectors import LabelSelector
from speaker.metallb.emit import Table, selector_value
from speaker.metallb.fields import Fields, selectors
from speaker.metallb.manifests import Manifest
from speaker.metallb.report import MAX_U32, Context

__all__ = ["PEER_FIELDS_V1BETA1", "PEER_FIELDS_V1BETA2", "Peer", "peer"]

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


Duration = tuple[str, timedelta]


@attrs.define
class _Read:
    """The fields of one BGPPeer as read (None: not set, or reported)."""

    my_asn: int | None = None
    peer_asn: int | None = None
    dynamic: str | None = None
    address: IPAddress | None = None
    source: str | None = None
    port: int | None = None
    hold: Duration | None = None
    keepalive: Duration | None = None
    connect: Duration | None = None
    router_id: str | None = None
    password: str | None = None
    secret: object = None
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
    table = Table(manifest.origin, manifest.api_version)
    table.set("name", manifest.name)
    read = _Read()
    _read_asns(fields, v1beta2, read)
    _read_address(fields, v1beta2, read)
    _read_timers(fields, v1beta2, read)
    _read_rest(ctx, fields, v1beta2, read, profiles)
    if fields.failed or read.address is None:
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
    )


def _read_asns(fields: Fields, v1beta2: bool, read: _Read) -> None:
    read.my_asn = fields.integer("myASN", 0, MAX_U32)
    if not fields.present("myASN"):
        fields.error("spec.myASN", "required")
    read.peer_asn = fields.integer("peerASN", 0, MAX_U32)
    dynamic = fields.string("dynamicASN") if v1beta2 else None
    if dynamic is not None and dynamic not in ("internal", "external"):
        fields.error("spec.dynamicASN", f'{show(dynamic)} is not "internal" or "external"')
        dynamic = None
    if fields.present("peerASN") and dynamic is not None:
        fields.error("spec.dynamicASN", "set either peerASN or dynamicASN, not both")
    elif dynamic == "external":
        fields.error(
            "spec.dynamicASN",
            '"external" is not supported: the speaker needs the peer\'s AS number; set peerASN',
        )
    elif not fields.present("peerASN") and dynamic is None:
        fields.error("spec.peerASN", "required" + (" (or dynamicASN)" if v1beta2 else ""))
    read.dynamic = dynamic


def _read_address(fields: Fields, v1beta2: bool, read: _Read) -> None:
    interface = fields.string("interface") if v1beta2 else None
    address_text = fields.address("peerAddress")
    if interface and fields.present("peerAddress"):
        fields.error("spec.interface", "set either peerAddress or interface, not both")
    elif interface:
        fields.error(
            "spec.interface",
            "not supported: BGP unnumbered (peering over an interface without an address);"
            " set peerAddress",
        )
    elif not fields.present("peerAddress"):
        fields.error("spec.peerAddress", "required" + (" (or interface)" if v1beta2 else ""))
    read.address = ipaddress.ip_address(address_text) if address_text else None
    read.source = fields.address("sourceAddress")


def _read_timers(fields: Fields, v1beta2: bool, read: _Read) -> None:
    read.port = fields.integer("peerPort", 1 if v1beta2 else 0, 16384)
    hold = fields.duration("holdTime")
    keepalive = fields.duration("keepaliveTime")
    if hold is not None and hold[1] and hold[1] < timedelta(seconds=3):
        fields.error("spec.holdTime", f"{hold[0]} is below 3s (MetalLB: 0 or at least 3s)")
        hold = None
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
        try:
            router_id = str(ipaddress.IPv4Address(router_id.strip()))
        except ValueError:
            fields.error("spec.routerID", f"{show(router_id)} is not an IPv4 address")
            router_id = None
    read.router_id = router_id or None

    read.password = fields.string("password")
    read.secret = fields.spec.get("passwordSecret") if v1beta2 else None
    if read.secret is not None:
        read.secret_name = _secret(ctx, fields, read.secret)
    if read.password and read.secret is not None:
        fields.error("spec.passwordSecret", "set either password or passwordSecret, not both")

    profile_name = read.profile_name = fields.string("bfdProfile")
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
    read.selectors = selectors(fields, "nodeSelectors")
    read.graceful = fields.boolean("enableGracefulRestart") if v1beta2 else None
    read.vrf = fields.string("vrf") if v1beta2 else None
    read.disable_mp = fields.boolean("disableMP") if v1beta2 else None
    read.dual_stack = fields.boolean("dualStackAddressFamily") if v1beta2 else None
    read.local_asn = fields.integer("localASN", 0, MAX_U32) if v1beta2 else None

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
    if not isinstance(secret, dict):
        fields.error("spec.passwordSecret", f"expected a mapping, got {describe(secret, YAML)}")
        return None
    name, namespace = secret.get("name"), secret.get("namespace")
    if not isinstance(name, str) or not name:
        fields.error("spec.passwordSecret.name", "required (a string)")
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
    assert read.address is not None
    table.set("peer_address", str(read.address))
    if read.peer_asn is not None:
        table.set("peer_asn", read.peer_asn)
    else:  # dynamicASN: internal
        assert read.my_asn is not None
        table.set("peer_asn", read.my_asn, 'dynamicASN "internal": iBGP, the peer is in my_asn')
    if read.port and read.port != 179:  # v1beta1's 0 means MetalLB's default, 179
        table.set("peer_port", read.port)
    if read.source:
        table.set("source_address", read.source)
    if read.echo_interface:
        table.set("interface", read.echo_interface, "BFD echo is sent on this interface")
    if read.vrf:
        table.set("vrf", read.vrf, "the Linux VRF device the session runs in")
    if read.profile_name:
        table.set("bfd_profile", read.profile_name)
    if read.hold is not None:
        table.set("hold_time", read.hold[0])
    if read.keepalive is not None:
        table.set("keepalive_time", read.keepalive[0])
    if read.connect is not None:
        # MetalLB's connectTime is FRR's "timers connect": the wait between attempts.
        table.set("connect_retry_max", read.connect[0],
                  "connectTime: retries start after 1s and double up to this")  # fmt: skip
    if read.password:
        table.set("password", read.password)
        table.note("password: consider password_file, so the key is not in this file")
    if read.secret is not None and read.secret_name is not None:
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
    _write_unsupported(ctx, table, read)


def _write_unsupported(ctx: Context, table: Table, read: _Read) -> None:
    """What MetalLB has and the speaker does not: comments (and a warning for
    ``localASN``, which changes what the router sees)."""
    if read.graceful:
        table.unsupported(
            "enableGracefulRestart", "not supported yet (no BGP graceful restart)", read.graceful
        )
    if read.local_asn is not None:
        table.unsupported(
            "localASN", "not supported (FRR's local-as; the speaker uses my_asn)", read.local_asn
        )
        ctx.report.warn(
            table.origin,
            "spec.localASN",
            "not supported: the session uses my_asn; check what AS the router expects",
        )
    if read.dynamic == "internal":
        table.note('dynamicASN: not supported; "internal" is written as peer_asn = my_asn')
    if read.disable_mp:
        table.unsupported(
            "disableMP",
            "not supported (deprecated in MetalLB; the speaker sends the other family over"
            " multiprotocol BGP on the same session)",
            read.disable_mp,
        )
    if read.dual_stack:
        table.unsupported(
            "dualStackAddressFamily",
            "not needed (a session carries both families over multiprotocol BGP when pools"
            " of both are advertised to it)",
            read.dual_stack,
        )
    for key, value in read.unknown:
        table.unsupported(key, "unknown field, ignored", value)
