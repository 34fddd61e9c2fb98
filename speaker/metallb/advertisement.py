"""``BGPAdvertisement`` -> ``[[advertisements]]`` (pool selectors resolved, community
aliases replaced by their values)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

from speaker.config.describe import show
from speaker.config.model import Community
from speaker.config.selectors import LabelSelector
from speaker.metallb.community import COMMUNITY_LITERAL
from speaker.metallb.emit import Table
from speaker.metallb.fields import Fields, selectors
from speaker.metallb.manifests import Manifest
from speaker.metallb.report import MAX_U32, Context

__all__ = ["ADVERTISEMENT_FIELDS", "advertisement"]

ADVERTISEMENT_FIELDS = (
    "aggregationLength",
    "aggregationLengthV6",
    "localPref",
    "communities",
    "ipAddressPools",
    "ipAddressPoolSelectors",
    "nodeSelectors",
    "peers",
    "serviceSelectors",
)


def advertisement(
    ctx: Context,
    manifest: Manifest,
    pools: Mapping[str, Manifest],
    peers: Iterable[str],
    aliases: Mapping[str, str],
    *,
    left_out: Collection[str] = (),
) -> Table | None:
    """The table, or None: it had errors (reported). ``left_out``: BGPPeers written
    as comments; an advertisement naming only those is left out too."""
    fields = Fields(manifest, ctx.report)
    table = Table(manifest.origin, manifest.api_version, ctx.report)
    table.set("name", manifest.name)
    length = fields.integer("aggregationLength", 1, 32)
    length_v6 = fields.integer("aggregationLengthV6", 0, 128)
    local_pref = fields.integer("localPref", 0, MAX_U32)
    communities = fields.strings("communities")
    pool_names = fields.strings("ipAddressPools")
    pool_selectors = selectors(fields, "ipAddressPoolSelectors")
    node_selectors = fields.spec.get("nodeSelectors")
    peer_names = fields.strings("peers")
    service_selectors = fields.spec.get("serviceSelectors")
    unknown = fields.unknown(ADVERTISEMENT_FIELDS)
    for key, names in (
        ("ipAddressPools", pool_names),
        ("communities", communities),
        ("peers", peer_names),
    ):
        for index, name in enumerate(names or []):
            if name in (names or [])[:index]:
                fields.error(
                    f"spec.{key}[{index}]", f"{show(name)} is listed twice (MetalLB refuses it)"
                )

    if service_selectors and (length not in (None, 32) or length_v6 not in (None, 128)):
        fields.error(
            "spec.serviceSelectors",
            "MetalLB rejects serviceSelectors together with an aggregation length other"
            " than 32 / 128",
        )
    for index, name in enumerate(pool_names or []):
        if name not in pools:
            known = ", ".join(f'"{n}"' for n in pools) or "none"
            fields.error(
                f"spec.ipAddressPools[{index}]",
                f'no IPAddressPool named "{name}" (defined: {known})',
            )
    known_peers = list(peers)
    for index, name in enumerate(peer_names or []):
        if name not in known_peers:
            known = ", ".join(f'"{n}"' for n in known_peers) or "none"
            fields.error(f"spec.peers[{index}]", f'no BGPPeer named "{name}" (defined: {known})')
    resolved, used_aliases = _communities(ctx, fields, communities or [], aliases)
    if fields.failed:
        return None

    selected = _selected_pools(
        ctx,
        manifest=manifest,
        table=table,
        pools=pools,
        pool_names=pool_names or [],
        pool_selectors=pool_selectors,
    )
    if table.commented:
        return table
    if selected:
        table.set("pools", selected)
    if length is not None:
        table.set("aggregation_length", length)
    if length_v6 is not None:
        table.set("aggregation_length_v6", length_v6)
    if local_pref is not None:
        table.set("local_pref", local_pref, "sent to iBGP peers only, as in MetalLB")
    if resolved:
        if used_aliases:
            table.note("Community aliases: " + ", ".join(used_aliases))
        table.set("communities", resolved)
    if peer_names:
        kept = [name for name in peer_names if name not in left_out]
        for name in peer_names:
            if name in left_out:
                table.note(f'peers: "{name}" is left out (commented) above')
        if kept:
            table.set("peers", kept)
        else:
            table.commented = True
            ctx.report.warn(
                manifest.origin,
                "spec.peers",
                "every peer it names is left out, so it is left out (commented) too",
            )
    _unsupported(table, node_selectors, service_selectors, unknown)
    return table


def _communities(
    ctx: Context, fields: Fields, communities: Sequence[str], aliases: Mapping[str, str]
) -> tuple[list[str], list[str]]:
    """The communities (aliases resolved), and the aliases used (``name = value``)."""
    resolved: list[str] = []
    used_aliases: list[str] = []
    for index, text in enumerate(communities):
        body = text.strip()
        if body in aliases:
            resolved.append(aliases[body])
            used_aliases.append(f"{body} = {aliases[body]}")
        elif COMMUNITY_LITERAL.match(body):
            try:
                Community.parse(body)
            except ValueError as exc:
                fields.error(f"spec.communities[{index}]", str(exc))
                continue
            resolved.append(body)
        elif ("Community", body) in ctx.broken_names:
            fields.failed = True  # its Community object's error says what to fix
        else:
            fields.error(
                f"spec.communities[{index}]",
                f'{show(text)} is neither a community ("65000:100", "large:1:2:3") nor the'
                " name of one in a Community object",
            )
    return resolved, used_aliases


def _selected_pools(
    ctx: Context,
    *,
    manifest: Manifest,
    table: Table,
    pools: Mapping[str, Manifest],
    pool_names: Sequence[str],
    pool_selectors: Sequence[LabelSelector] | None,
) -> list[str]:
    """``ipAddressPools`` and the pools ``ipAddressPoolSelectors`` select; when the
    selectors select nothing, the table is left out (``commented``)."""
    selected: list[str] = list(dict.fromkeys(pool_names))
    if pool_selectors is None:
        return selected
    matched = [
        name for name, pool in pools.items() if any(s.matches(pool.labels) for s in pool_selectors)
    ]
    selected += [name for name in matched if name not in selected]
    table.note(
        "ipAddressPoolSelectors: resolved against the IPAddressPools' labels: "
        + (", ".join(matched) if matched else "no pool matches")
    )
    if not selected:
        ctx.report.warn(
            manifest.origin,
            "spec.ipAddressPoolSelectors",
            "selects no IPAddressPool, so the advertisement announces nothing; it is"
            " left out (commented)",
        )
        table.commented = True
        table.note("left out: it selects no pool, and an empty pools list means all")
    return selected


def _unsupported(
    table: Table,
    node_selectors: object,
    service_selectors: object,
    unknown: Sequence[tuple[str, object]],
) -> None:
    if node_selectors:
        table.unsupported(
            "nodeSelectors",
            "not supported (every node running this configuration announces; deploy it"
            " only on the nodes that should, or select the peers by node with"
            " node_selectors)",
            node_selectors,
        )
    if service_selectors:
        table.unsupported(
            "serviceSelectors",
            "services are declared in [[services]] instead (an advertisement selects"
            " pools, not services)",
            service_selectors,
        )
    for key, value in unknown:
        table.unknown(key, value)
