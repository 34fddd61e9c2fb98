"""Command-line entry point: ``speaker``.

``speaker check -c FILE`` loads and validates a configuration: errors go to stderr,
one per line as ``FILE: path: message``, and the exit status is 2; a valid file
prints its warnings (``warning: FILE: path: message``) and a one-line summary, and
exits 0.

``speaker run -c FILE`` validates the same way (refusing to start on an invalid
file, exit 2), then runs the speaker until SIGTERM/SIGINT (exit 0).
"""

from __future__ import annotations

import argparse
import logging
import sys

from speaker import __version__
from speaker.config import ConfigError, ConfigIssue, load_config

EXIT_OK = 0
EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speaker",
        description="BGP + BFD speaker announcing service IP pools to routers.",
    )
    parser.add_argument("--version", action="version", version=f"speaker {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = commands.add_parser(
        "check",
        help="validate a configuration file and exit",
        description="Load and validate a configuration file; exit 0 if valid, 2 if not.",
    )
    check.add_argument("-c", "--config", required=True, metavar="FILE", help="the TOML file")
    run = commands.add_parser(
        "run",
        help="run the speaker",
        description="Run the speaker with a configuration file until SIGTERM/SIGINT.",
    )
    run.add_argument("-c", "--config", required=True, metavar="FILE", help="the TOML file")
    run.add_argument("--log-format", choices=("logfmt", "json"), default="logfmt")
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    _add_import_metallb(commands)
    return parser


# ---- import-metallb (speaker/metallb.py) ---------------------------------------------------


def _add_import_metallb(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    imp = commands.add_parser(
        "import-metallb",
        help="convert MetalLB manifests (YAML) to a speaker configuration",
        description="Convert MetalLB BFDProfile, BGPPeer, IPAddressPool, BGPAdvertisement and"
        " Community manifests to a speaker TOML configuration on stdout; errors go to stderr"
        " (exit 2). See docs/migration-from-metallb.md.",
    )
    imp.add_argument("files", nargs="+", metavar="FILE.yaml", help="MetalLB manifests")
    imp.add_argument(
        "--announce-all",
        action="store_true",
        help="set announce_all = true on every pool (instead of declaring [[services]])",
    )
    imp.add_argument(
        "--namespace", default="metallb-system", help="MetalLB's namespace (metallb-system)"
    )
    imp.add_argument(
        "--secrets-dir",
        default="/etc/speaker/secrets",
        metavar="DIR",
        help="where passwordSecret Secrets are mounted, one directory each (DIR/NAME/password)",
    )
    imp.add_argument(
        "--interface",
        action="append",
        default=[],
        metavar="[PEER=]IFNAME",
        help="the interface towards the peers (or one PEER) whose BFD profile uses echo mode",
    )


def _import_metallb(args: argparse.Namespace) -> int:
    from speaker import metallb

    return metallb.main(
        args.files,
        announce_all=args.announce_all,
        namespace=args.namespace,
        secrets_dir=args.secrets_dir,
        interfaces=args.interface,
    )


# ---- end of import-metallb ------------------------------------------------------------------


def _line(file: str, issue: ConfigIssue) -> str:
    return f"{file}: {issue}"


def check(file: str) -> int:
    """``speaker check``: returns the exit status."""
    try:
        config = load_config(file)
    except ConfigError as exc:
        for issue in exc.errors:
            print(_line(file, issue), file=sys.stderr)
        for issue in exc.warnings:
            print("warning: " + _line(file, issue), file=sys.stderr)
        count = len(exc.errors)
        print(f"{file}: {count} error{'s' if count != 1 else ''}", file=sys.stderr)
        return EXIT_CONFIG
    for issue in config.warnings:
        print("warning: " + _line(file, issue), file=sys.stderr)

    def n(count: int, what: str) -> str:
        return f"{count} {what}{'s' if count != 1 else ''}"

    print(
        f"ok: {n(len(config.peers), 'peer')}, {n(len(config.pools), 'pool')},"
        f" {n(len(config.services), 'service')}"
    )
    return EXIT_OK


def run(file: str, *, log_format: str = "logfmt", log_level: str = "info") -> int:
    """``speaker run``: returns the exit status."""
    import trio

    from speaker.allocate import AllocationError, StateFileError
    from speaker.app import Speaker
    from speaker.log import setup_logging
    from speaker.plan import derive

    try:
        config = load_config(file)
    except ConfigError as exc:
        for issue in exc.errors:
            print(_line(file, issue), file=sys.stderr)
        print(f"{file}: invalid configuration, not starting", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(log_format, log_level)
    log = logging.getLogger("speaker")
    for issue in config.warnings:
        log.warning("config: %s", issue)
    try:
        speaker = Speaker(derive(config), config_path=file)
    except (AllocationError, StateFileError, OSError) as exc:
        print(f"{file}: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    async def main_task() -> None:
        await speaker.run()

    trio.run(main_task)
    log.info("speaker stopped")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    if args.command == "check":
        return check(args.config)
    if args.command == "run":
        return run(args.config, log_format=args.log_format, log_level=args.log_level)
    if args.command == "import-metallb":
        return _import_metallb(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
