"""Command-line entry point: ``speaker``.

``speaker check -c FILE`` loads and validates a configuration: errors go to stderr,
one per line as ``FILE: path: message``, and the exit status is 2; a valid file
prints its warnings (``warning: FILE: path: message``) and a one-line summary, and
exits 0. It then asks this host what the peers need (speaker/hostcheck.py): a
missing ``interface`` is an error, a peer without a route or a ``source_address``
the host does not have a warning; ``--host-checks warn`` makes them all warnings,
``off`` skips them (checking a file on another machine).

A file without peers (or none for this node) is an error unless ``--allow-empty``
(as for ``speaker reload``): an empty file is valid TOML.

``speaker run -c FILE`` validates the same way (refusing to start on an invalid
file, exit 2), then runs the speaker until SIGTERM/SIGINT (exit 0): the process root
is speaker/daemon.py; this module only parses the arguments.
"""

from __future__ import annotations

import argparse
import sys

from speaker import __version__
from speaker.config import Config, ConfigError, ConfigIssue, load_config

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
        description="Load and validate a configuration file; exit 0 if valid, 2 if not"
        " (a file without peers is not, unless --allow-empty).",
    )
    check.add_argument("-c", "--config", required=True, metavar="FILE", help="the TOML file")
    check.add_argument(
        "--allow-empty",
        action="store_true",
        help="accept a file without peers (or none for this node), which would run idle;"
        " refused without this flag, as by reload",
    )
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
    _add_allocate(commands)
    from speaker import install

    install.add_parser(commands)
    _add_operation_parsers(commands)
    return parser


# ---- import-metallb (speaker/metallb/) -----------------------------------------------------


def _add_import_metallb(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    imp = commands.add_parser(
        "import-metallb",
        help="convert MetalLB manifests (YAML) to a speaker configuration",
        description="Convert MetalLB BFDProfile, BGPPeer, IPAddressPool, BGPAdvertisement and"
        " Community manifests to a speaker TOML configuration on stdout (or -o FILE); errors"
        " go to stderr (exit 2), and then nothing is written. See"
        " docs/migration-from-metallb.md.",
    )
    imp.add_argument("files", nargs="+", metavar="FILE.yaml", help="MetalLB manifests")
    imp.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write the TOML to FILE instead of stdout: only on success, and atomically"
        " (a new file is mode 0600, an existing one keeps its mode)",
    )
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
        help="the interface towards the peers (or one PEER) whose BFD profile uses echo mode"
        " (optional: the speaker otherwise uses the interface of the route to the peer)",
    )


def _import_metallb(args: argparse.Namespace) -> int:
    import contextlib
    import io
    from pathlib import Path

    from speaker import metallb
    from speaker.files import write_atomically

    out = io.StringIO()
    with contextlib.redirect_stdout(out) if args.output else contextlib.nullcontext():
        status = metallb.main(
            args.files,
            announce_all=args.announce_all,
            namespace=args.namespace,
            secrets_dir=args.secrets_dir,
            interfaces=args.interface,
        )
    if not args.output or status != EXIT_OK:
        return status  # on failure nothing was written: not to stdout, not to -o FILE
    try:
        write_atomically(Path(args.output), out.getvalue())  # new: 0600 (may hold a password)
    except OSError as exc:
        print(f"import-metallb: cannot write {args.output}: {exc.strerror or exc}",
              file=sys.stderr)  # fmt: skip
        return EXIT_ERROR
    return EXIT_OK


# ---- end of import-metallb ------------------------------------------------------------------


# ---- allocate (speaker/allocation_file.py) -------------------------------------------------


def _add_allocate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    alloc = commands.add_parser(
        "allocate",
        help="write an address into the file for every pool service that has none",
        description="Give every [[services]] entry with a pool and no address the lowest free"
        " address of its pool, written into the file (address = ... after its pool, comments"
        " and layout kept), so that every node reading the file agrees. Existing addresses"
        " never move. Exit 0 (written, or nothing to do) or 2. See docs/configuration.md.",
    )
    alloc.add_argument("-c", "--config", required=True, metavar="FILE", help="the TOML file")
    alloc.add_argument(
        "--dry-run", action="store_true", help="print the change as a diff, write nothing"
    )
    alloc.add_argument(
        "--adopt-state",
        metavar="STATE",
        help='first take the addresses of a node\'s state file (allocation = "node-local"),'
        " refusing any that contradicts the file",
    )


def _allocate(args: argparse.Namespace) -> int:
    from speaker import allocation_file

    return allocation_file.main(args.config, dry_run=args.dry_run, adopt_state=args.adopt_state)


# ---- end of allocate ------------------------------------------------------------------------


def _line(file: str, issue: ConfigIssue) -> str:
    return f"{file}: {issue}"


HOST_CHECKS = ("on", "warn", "off")


def check(file: str, host_checks: str = "on", *, allow_empty: bool = False) -> int:
    """``speaker check``: returns the exit status."""
    try:
        config = load_config(file)
    except ConfigError as exc:
        return _invalid(file, exc.errors, exc.warnings)
    errors = [] if allow_empty else idle_issues(config)
    warnings = list(config.warnings)
    if host_checks != "off":
        from speaker.hostcheck import host_issues

        found = host_issues(config, strict=host_checks == "on")
        errors += found.errors
        warnings += found.warnings
    if errors:
        return _invalid(file, errors, warnings)
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


def idle_issues(config: Config) -> list[ConfigIssue]:
    """Why a valid file would run idle: no peers, or none for this node. ``check``
    refuses it unless ``--allow-empty`` (as ``reload``): an empty or truncated file,
    such as ``speaker import-metallb in.yaml > FILE`` leaves when the import fails, is
    valid TOML."""
    hint = "accept it with --allow-empty"
    if not config.peers:
        return [
            ConfigIssue(
                "peers",
                f"the file has no [[peers]]: the speaker would open no BGP session and"
                f" announce nothing ({hint})",
            )
        ]
    if not config.local_peers:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(config.speaker.labels.items()))
        return [
            ConfigIssue(
                "peers",
                f"no peer applies to this node (node_selectors select none of the"
                f" {len(config.peers)} peers for [speaker] labels {{{labels}}}): the speaker"
                f" would open no BGP session ({hint})",
            )
        ]
    return []


def _invalid(file: str, errors: list[ConfigIssue], warnings: list[ConfigIssue]) -> int:
    for issue in errors:
        print(_line(file, issue), file=sys.stderr)
    for issue in warnings:
        print("warning: " + _line(file, issue), file=sys.stderr)
    count = len(errors)
    print(f"{file}: {count} error{'s' if count != 1 else ''}", file=sys.stderr)
    return EXIT_CONFIG


# ---- operating a running speaker: control socket, metrics, systemd ---------------------

OPERATION_COMMANDS = (
    "show", "clear", "reload", "announce", "withdraw", "clear-override", "restart", "drain",
    "undrain",
)  # fmt: skip
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
    from speaker.commands import add_parsers

    add_parsers(commands, common)  # show ... / clear ...: from the command table

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
    commands.add_parser(
        "restart",
        parents=[common],
        help="end the running speaker on the restart path (routers with graceful restart"
        " keep its routes; systemd starts it again)",
    )
    stop_hook = commands.add_parser(
        "systemd-stop",
        help="the unit's ExecStop: SIGUSR2 (restart path) to PID during a restart job,"
        " else SIGTERM (stop path); waits for it to exit",
    )
    stop_hook.add_argument("--unit", default="speaker.service", help="the unit (%%n)")
    stop_hook.add_argument("pid", nargs="?", default="", help="$MAINPID (empty: nothing runs)")
    for name, text in (
        ("announce", "announce SERVICE whatever its health (until clear-override)"),
        ("withdraw", "withdraw SERVICE whatever its health (until clear-override)"),
        ("clear-override", "let SERVICE's health decide again"),
    ):
        sub = commands.add_parser(name, parents=[common], help=text)
        sub.add_argument("service", metavar="SERVICE")
    _add_drain_parsers(commands, common)


def _add_drain_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """``speaker drain|undrain [--peer NAME | SERVICE]`` (RFC 8326, speaker/drain.py)."""
    for name, text in (
        ("drain", "RFC 8326 graceful shutdown: announce the routes again with the"
                  " GRACEFUL_SHUTDOWN community 65535:0 (and LOCAL_PREF 0 on iBGP), so"
                  " that routers move the traffic elsewhere; the whole node, or one peer"
                  " (--peer) or SERVICE. Kept across reloads and restarts until undrain."),
        ("undrain", "end a drain: the node's (no argument), a peer's (--peer) or a"
                    " SERVICE's; --all: every drain"),
    ):  # fmt: skip
        sub = commands.add_parser(name, parents=[common], help=text, description=text)
        sub.add_argument("service", metavar="SERVICE", nargs="?", help="only this service")
        sub.add_argument("--peer", metavar="NAME", help="only this peer (name or address)")
        sub.add_argument("--json", action="store_true", help="print JSON")
        if name == "undrain":
            sub.add_argument("--all", action="store_true", help="end every drain")


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


def operate(args: argparse.Namespace) -> int:
    """``speaker show|clear|reload|announce|withdraw|clear-override``: the exit status."""
    from speaker import commands
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
        if command == "restart":
            result = request(path, "restart")
            if not result["restarting"]:
                print("speaker: already shutting down")
                return EXIT_OK
            without = [name for name, gr in result["graceful_restart"].items() if not gr]
            print("speaker restarting (the restart path)")
            if without:
                print(f"warning: no graceful_restart for {', '.join(without)}: these routers"
                      " drop our routes until we are back", file=sys.stderr)  # fmt: skip
            return EXIT_OK
        if command in ("announce", "withdraw", "clear-override"):
            result = request(path, command, service=args.service)
            mode = result["override"] or "cleared (health decides)"
            print(f"service {result['service']}: override {mode}")
            return EXIT_OK
        if command in ("drain", "undrain"):
            return _drain(args, path)
        return commands.operate(args, path)  # show ... / clear ...
    except ControlError as exc:
        print(f"speaker: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def _drain(args: argparse.Namespace, path: str) -> int:
    import json
    from typing import Any

    from speaker.commands import BY_NAME
    from speaker.control import request

    if args.peer is not None and args.service is not None:
        print(f"speaker {args.command}: give --peer NAME or SERVICE, not both", file=sys.stderr)
        return EXIT_CONFIG
    params: dict[str, Any] = {"peer": args.peer, "service": args.service}
    if args.command == "undrain":
        params["all"] = args.all
    result = request(path, args.command, **params)
    text = BY_NAME[args.command].text
    print(json.dumps(result, indent=2) if args.json or text is None else text(result), end="")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    if args.command == "check":
        return check(args.config, args.host_checks, allow_empty=args.allow_empty)
    if args.command == "run":
        from speaker import daemon  # the process root: imports all of the runtime

        return daemon.run(args.config, log_format=args.log_format, log_level=args.log_level)
    if args.command == "import-metallb":
        return _import_metallb(args)
    if args.command == "allocate":
        return _allocate(args)
    if args.command == "install-systemd":
        from speaker import install

        return install.main(args)
    if args.command in OPERATION_COMMANDS:
        return operate(args)
    if args.command == "systemd-stop":
        from speaker.shutdown_mode import systemd_stop

        pid = int(args.pid) if args.pid.strip().isdigit() else None
        mode = systemd_stop(args.unit, pid)
        print(f"{args.unit}: {mode.value} path")
        return EXIT_OK
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
