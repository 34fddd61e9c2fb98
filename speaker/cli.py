"""Command-line entry point: ``speaker``.

``speaker check -c FILE`` loads and validates a configuration: errors go to stderr,
one per line as ``FILE: path: message``, and the exit status is 2; a valid file
prints its warnings (``warning: FILE: path: message``) and a one-line summary, and
exits 0. It then asks this host what the peers need (speaker/hostcheck.py): a
missing ``interface`` is an error, a peer without a route or a ``source_address``
the host does not have a warning; ``--host-checks warn`` makes them all warnings,
``off`` skips them (checking a file on another machine).

``speaker run -c FILE`` validates the same way (refusing to start on an invalid
file, exit 2), then runs the speaker until SIGTERM/SIGINT (exit 0): the process root
is speaker/daemon.py; this module only parses the arguments.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

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
    check.add_argument(
        "--host-checks",
        choices=HOST_CHECKS,
        default="on",
        help="ask this host about the peers' interfaces, routes and source addresses:"
        " on (a missing interface is an error; the default), warn (all warnings), off"
        " (the file is checked on another machine)",
    )
    run = commands.add_parser(
        "run",
        help="run the speaker",
        description="Run the speaker with a configuration file until SIGTERM/SIGINT.",
    )
    run.add_argument("-c", "--config", required=True, metavar="FILE", help="the TOML file")
    run.add_argument("--log-format", choices=("logfmt", "json"), default="logfmt")
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    _add_import_metallb(commands)
    _add_operation_parsers(commands)
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


HOST_CHECKS = ("on", "warn", "off")


def check(file: str, host_checks: str = "on") -> int:
    """``speaker check``: returns the exit status."""
    try:
        config = load_config(file)
    except ConfigError as exc:
        return _invalid(file, exc.errors, exc.warnings)
    warnings = list(config.warnings)
    if host_checks != "off":
        from speaker.hostcheck import host_issues

        found = host_issues(config, strict=host_checks == "on")
        if found.errors:
            return _invalid(file, list(found.errors), warnings + list(found.warnings))
        warnings += found.warnings
    for issue in warnings:
        print("warning: " + _line(file, issue), file=sys.stderr)

    def n(count: int, what: str) -> str:
        return f"{count} {what}{'s' if count != 1 else ''}"

    print(
        f"ok: {n(len(config.peers), 'peer')}, {n(len(config.pools), 'pool')},"
        f" {n(len(config.services), 'service')}"
    )
    from speaker.routerid import choose_router_id

    print(f"router ID: {choose_router_id(config)}")
    return EXIT_OK


def _invalid(file: str, errors: list[ConfigIssue], warnings: list[ConfigIssue]) -> int:
    for issue in errors:
        print(_line(file, issue), file=sys.stderr)
    for issue in warnings:
        print("warning: " + _line(file, issue), file=sys.stderr)
    count = len(errors)
    print(f"{file}: {count} error{'s' if count != 1 else ''}", file=sys.stderr)
    return EXIT_CONFIG


# ---- operating a running speaker: control socket, metrics, systemd ---------------------

OPERATION_COMMANDS = ("show", "clear", "reload", "announce", "withdraw", "clear-override")
EXIT_ERROR = 1


def _add_operation_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("where the speaker is")
    where.add_argument("-s", "--socket", metavar="PATH",
                       help="the control socket (default: [control] socket of -c, else"
                            " /run/speaker/speaker.sock)")  # fmt: skip
    where.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="read the control socket's path from this configuration file",
    )
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON")

    show = commands.add_parser("show", help="show the state of the running speaker")
    what = show.add_subparsers(dest="what", metavar="WHAT", required=True)
    bfd = what.add_parser("bfd", help="BFD sessions").add_subparsers(
        dest="bfd_what", metavar="peers", required=True
    )
    peers = bfd.add_parser("peers", parents=[common, as_json],
                           help="BFD peers, as FRR's show bfd peers")  # fmt: skip
    peers.add_argument("counters", nargs="?", choices=["counters"],
                       help="packet counters instead")  # fmt: skip
    bgp = what.add_parser("bgp", help="BGP sessions").add_subparsers(
        dest="bgp_what", metavar="summary|neighbor", required=True
    )
    bgp.add_parser("summary", parents=[common, as_json], help="one line per neighbour")
    neighbor = bgp.add_parser("neighbor", parents=[common, as_json],
                              help="one neighbour in detail")  # fmt: skip
    neighbor.add_argument("name", metavar="NAME", help="peer name (or its address)")
    what.add_parser("routes", parents=[common, as_json],
                    help="what is announced to each peer, and why (not)")  # fmt: skip
    what.add_parser("config", parents=[common, as_json],
                    help="the effective configuration, secrets redacted")  # fmt: skip
    what.add_parser("status", parents=[common, as_json],
                    help="version, reloads, and the event loop's worst recent stall")  # fmt: skip

    clear = commands.add_parser("clear", help="zero counters shown by the show commands")
    clear_bfd = clear.add_subparsers(dest="clear_what", metavar="bfd", required=True).add_parser(
        "bfd", help="BFD"
    )
    clear_peers = clear_bfd.add_subparsers(dest="bfd_what", metavar="peers", required=True)
    counters = clear_peers.add_parser(
        "peers", parents=[common],
        help="clear bfd peers counters [--peer NAME]: as FRR's (metrics keep counting)",
    )  # fmt: skip
    counters.add_argument("counters", choices=["counters"])
    counters.add_argument("--peer", metavar="NAME", help="only this peer (name or address)")

    reload = commands.add_parser(
        "reload",
        parents=[common],
        help="re-read the configuration file (as SIGHUP); exit 2 if rejected",
    )
    reload.add_argument(
        "--allow-empty",
        action="store_true",
        help="apply a file without peers (or without the pools or services the running"
        " one has), which withdraws everything; refused without this flag",
    )
    for name, text in (
        ("announce", "announce SERVICE whatever its health (until clear-override)"),
        ("withdraw", "withdraw SERVICE whatever its health (until clear-override)"),
        ("clear-override", "let SERVICE's health decide again"),
    ):
        sub = commands.add_parser(name, parents=[common], help=text)
        sub.add_argument("service", metavar="SERVICE")


def _socket_path(args: argparse.Namespace) -> str:
    """``-s``, else ``[control] socket`` of ``-c`` (relative to the file), else the
    default. Only that key is read: the rest of the file may be unreadable to us."""
    import tomllib
    from pathlib import Path

    from speaker.config.model import DEFAULT_CONTROL_SOCKET
    from speaker.control import ControlError

    if args.socket:
        return str(args.socket)
    if args.config:
        file = Path(args.config)
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ControlError(f"{file}: cannot read the control socket's path: {exc}") from None
        control = data.get("control", {})
        value = control.get("socket") if isinstance(control, dict) else None
        if isinstance(value, str):
            path = Path(value)
            return str(path if path.is_absolute() else file.parent.resolve() / path)
    return str(DEFAULT_CONTROL_SOCKET)


def _print_json(data: Any) -> None:
    import json

    print(json.dumps(data, indent=2, default=str))


def operate(args: argparse.Namespace) -> int:
    """``speaker show|clear|reload|announce|withdraw|clear-override``: the exit status."""
    from speaker import show
    from speaker.control import ControlError, request

    try:
        path = _socket_path(args)
        command = args.command
        if command == "reload":
            result = request(path, "reload", allow_empty=args.allow_empty)
            print(result["summary"])
            for error in result["errors"]:
                print(f"error: {error}", file=sys.stderr)
            for warning in result.get("warnings", ()):
                print(f"warning: {warning}", file=sys.stderr)
            return EXIT_OK if result["applied"] else EXIT_CONFIG
        if command == "clear":
            result = request(path, "clear bfd peers counters", name=args.peer)
            print(f"bfd counters cleared: {', '.join(result['cleared']) or 'no BFD peers'}")
            return EXIT_OK
        if command in ("announce", "withdraw", "clear-override"):
            result = request(path, command, service=args.service)
            mode = result["override"] or "cleared (health decides)"
            print(f"service {result['service']}: override {mode}")
            return EXIT_OK
        text: str | None = None
        data: Any
        if args.what == "bfd" and args.counters:
            counters = request(path, "show bfd peers counters")
            data = counters["peers"]
            text = show.format_bfd_counters(counters["peers"], counters["unmatched"])
        elif args.what == "bfd":
            data = request(path, "show bfd peers")
            text = show.format_bfd_peers(data)
        elif args.what == "bgp" and args.bgp_what == "summary":
            data = request(path, "show bgp summary")
            text = show.format_bgp_summary(data)
        elif args.what == "bgp":
            data = request(path, "show bgp neighbor", name=args.name)
            text = show.format_bgp_neighbor(data)
        elif args.what == "routes":
            data = request(path, "show routes")
            text = show.format_routes(data)
        elif args.what == "status":
            data = request(path, "status")
            text = show.format_status(data)
        else:
            data = request(path, "show config")
            text = show.format_config(data)
        if args.json:
            _print_json(data)
        else:
            print(text, end="")
    except ControlError as exc:
        print(f"speaker: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    if args.command == "check":
        return check(args.config, args.host_checks)
    if args.command == "run":
        from speaker import daemon  # the process root: imports all of the runtime

        return daemon.run(args.config, log_format=args.log_format, log_level=args.log_level)
    if args.command == "import-metallb":
        return _import_metallb(args)
    if args.command in OPERATION_COMMANDS:
        return operate(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
