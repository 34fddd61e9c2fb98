"""``Community``: aliases, resolved in place in the advertisements."""

from __future__ import annotations

import re

from speaker.config.describe import show
from speaker.config.model import Community
from speaker.metallb.fields import Fields
from speaker.metallb.manifests import Manifest
from speaker.metallb.report import Context, Origin

__all__ = ["COMMUNITY_LITERAL", "communities"]

COMMUNITY_LITERAL = re.compile(r"^(\d+:\d+|large:\d+:\d+:\d+)$")


def communities(ctx: Context, manifests: list[Manifest]) -> dict[str, str]:
    """Alias -> community, from every Community object."""
    aliases: dict[str, str] = {}
    where: dict[str, Origin] = {}
    for manifest in manifests:
        fields = Fields(manifest, ctx.report)
        entries = fields.spec.get("communities")
        fields.unknown(("communities",))
        if not isinstance(entries, list):
            fields.error("spec.communities", "expected a list of {name, value}")
            continue
        for index, entry in enumerate(entries):
            path = f"spec.communities[{index}]"
            if not isinstance(entry, dict):
                fields.error(path, "expected a mapping {name, value}")
                continue
            name, value = entry.get("name"), entry.get("value")
            if not isinstance(name, str) or not name:
                fields.error(f"{path}.name", "required (a string)")
                continue
            if not isinstance(value, str) or not COMMUNITY_LITERAL.match(value.strip()):
                ctx.broken_names.add(("Community", name))
                fields.error(
                    f"{path}.value",
                    f'{show(value)} is not a community ("65000:100" or "large:1:2:3")',
                )
                continue
            try:
                Community.parse(value)
            except ValueError as exc:
                ctx.broken_names.add(("Community", name))
                fields.error(f"{path}.value", str(exc))
                continue
            if name in aliases and aliases[name] != value.strip():
                fields.error(
                    f"{path}.name",
                    f'community alias "{name}" is also defined as "{aliases[name]}"'
                    f" ({where[name]})",
                )
                continue
            aliases[name] = value.strip()
            where[name] = manifest.origin
    return aliases
