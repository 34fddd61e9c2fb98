"""Command-line entry point: ``speaker``."""

from __future__ import annotations

import argparse
import sys

from speaker import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speaker",
        description="BGP + BFD speaker announcing service IP pools to routers.",
    )
    parser.add_argument("--version", action="version", version=f"speaker {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return 0  # pragma: no cover - subcommands arrive with the speaker issue


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
