"""``IPAddressPool`` -> ``[[pools]]``."""

from __future__ import annotations

import ipaddress

from speaker.config.describe import show
from speaker.config.model import AddressRange
from speaker.metallb.emit import Table
from speaker.metallb.fields import Fields
from speaker.metallb.manifests import Manifest
from speaker.metallb.report import Context

__all__ = ["POOL_FIELDS", "pool"]

POOL_FIELDS = ("addresses", "autoAssign", "avoidBuggyIPs", "serviceAllocation")


def pool(ctx: Context, manifest: Manifest) -> Table | None:
    fields = Fields(manifest, ctx.report)
    table = Table(manifest.origin, manifest.api_version, ctx.report)
    table.set("name", manifest.name)
    addresses = fields.strings("addresses")
    if not fields.present("addresses") or addresses == []:
        fields.error("spec.addresses", "required (at least one CIDR or range)")
    converted: list[str] = []
    notes: list[str] = []
    for index, text in enumerate(addresses or []):
        entry, note = _address(fields, f"spec.addresses[{index}]", text)
        if entry is not None:
            converted.append(entry)
        if note:
            notes.append(note)
    auto = fields.boolean("autoAssign")
    buggy = fields.boolean("avoidBuggyIPs")
    allocation = fields.spec.get("serviceAllocation")
    unknown = fields.unknown(POOL_FIELDS)
    if fields.failed:
        return None
    for note in notes:
        table.note(note)
    table.set("addresses", converted)
    if auto is False:
        table.set("auto_assign", False)
    if ctx.options.announce_all:
        table.set("announce_all", True, "--announce-all: every address, whatever the services")
    if buggy:
        table.unsupported(
            "avoidBuggyIPs",
            "not supported (the speaker may hand out addresses ending in .0 and .255:"
            " leave them out of addresses, or give services fixed addresses)",
            buggy,
        )
    if allocation is not None:
        table.unsupported(
            "serviceAllocation",
            "not supported (services are declared in [[services]] with pool or address;"
            " there are no namespaces, selectors or priorities)",
            allocation,
        )
    for key, value in unknown:
        table.unknown(key, value)
    return table


def _address(fields: Fields, path: str, text: str) -> tuple[str | None, str | None]:
    """A MetalLB pool entry -> ours (and a note when it had to be rewritten)."""
    body = text.strip()
    if "-" in body:
        first, _, last = (part.strip() for part in body.partition("-"))
        body = f"{first}-{last}"
    elif "/" in body:
        try:
            net = ipaddress.ip_network(body, strict=False)
        except ValueError:
            fields.error(path, f"{show(text)} is not a CIDR")
            return None, None
        if str(net) != body:  # Go's net.ParseCIDR masks host bits; we reject them
            try:
                AddressRange.parse(body)
            except ValueError:
                note = f"addresses: {show(text)} had host bits set; MetalLB used {net}"
                return str(net), note
    try:
        AddressRange.parse(body)
    except ValueError as exc:
        fields.error(path, str(exc))
        return None, None
    return body, None
