"""``BFDProfile`` -> ``[[bfd_profiles]]``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from speaker.metallb.emit import Table
from speaker.metallb.fields import Fields
from speaker.metallb.manifests import Manifest
from speaker.metallb.report import Context

__all__ = ["BFD_FIELDS", "BFD_INTERVAL", "bfd_profiles"]

BFD_INTERVAL = (10, 60000)

#: MetalLB's integer fields: (camelCase, our key, lowest, highest).
BFD_FIELDS: tuple[tuple[str, str, int, int], ...] = (
    ("receiveInterval", "receive_interval", *BFD_INTERVAL),
    ("transmitInterval", "transmit_interval", *BFD_INTERVAL),
    ("detectMultiplier", "detect_multiplier", 2, 255),
    ("echoInterval", "echo_interval", *BFD_INTERVAL),
    ("minimumTtl", "minimum_ttl", 1, 254),
)
#: MetalLB's flags: (camelCase, our key).
BFD_FLAGS: tuple[tuple[str, str], ...] = (
    ("echoMode", "echo_mode"),
    ("passiveMode", "passive_mode"),
)


def bfd_profiles(
    ctx: Context, manifests: list[Manifest]
) -> tuple[list[Table], dict[str, Mapping[str, Any]]]:
    """The tables of the valid profiles, and their values by name (peers read them)."""
    tables: list[Table] = []
    profiles: dict[str, Mapping[str, Any]] = {}
    for manifest in manifests:
        fields = Fields(manifest, ctx.report)
        table = Table(manifest.origin, manifest.api_version, ctx.report)
        table.set("name", manifest.name)
        for camel, snake, low, high in BFD_FIELDS:
            value = fields.integer(camel, low, high)
            if value is not None:
                table.set(snake, value)
        for camel, snake in BFD_FLAGS:
            flag = fields.boolean(camel)
            if flag is not None:
                table.set(snake, flag)
        known = [f[0] for f in BFD_FIELDS] + [f[0] for f in BFD_FLAGS]
        for key, value in fields.unknown(known):
            table.unknown(key, value)
        if fields.failed:
            ctx.broken_names.add(("BFDProfile", manifest.name))
        else:
            tables.append(table)
            profiles[manifest.name] = table.values
    return tables, profiles
