"""``speaker import-metallb``: TOML on stdout; errors (exit 2) and warnings on stderr."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from speaker.metallb.convert import convert_files
from speaker.metallb.report import DEFAULT_NAMESPACE, DEFAULT_SECRETS_DIR, ImportOptions

__all__ = ["EXIT_ERRORS", "EXIT_OK", "main", "parse_interfaces"]

EXIT_OK = 0
EXIT_ERRORS = 2


def parse_interfaces(values: Sequence[str]) -> dict[str, str]:
    """``--interface eth0`` (every peer) and ``--interface tor-a=eth1`` (one peer)."""
    out: dict[str, str] = {}
    for value in values:
        peer, sep, name = value.rpartition("=")
        if not name:
            raise ValueError(f"--interface {value!r}: no interface name")
        out[peer if sep else ""] = name
    return out


def main(
    files: Sequence[str],
    *,
    announce_all: bool = False,
    namespace: str = DEFAULT_NAMESPACE,
    secrets_dir: str = DEFAULT_SECRETS_DIR,
    interfaces: Sequence[str] = (),
) -> int:
    """``speaker import-metallb``: TOML on stdout; errors (exit 2) and warnings on stderr."""
    try:
        by_peer = parse_interfaces(interfaces)
    except ValueError as exc:
        print(f"import-metallb: {exc}", file=sys.stderr)
        return EXIT_ERRORS
    options = ImportOptions(
        announce_all=announce_all,
        namespace=namespace,
        secrets_dir=secrets_dir,
        interfaces=by_peer,
    )
    result = convert_files(files, options)
    for line in result.errors:
        print(line, file=sys.stderr)
    for line in result.warnings:
        print("warning: " + line, file=sys.stderr)
    if result.errors:
        count = len(result.errors)
        print(f"import-metallb: {count} error{'s' if count != 1 else ''}", file=sys.stderr)
        return EXIT_ERRORS
    sys.stdout.write(result.toml)
    return EXIT_OK
