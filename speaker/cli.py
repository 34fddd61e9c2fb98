"""Command-line entry point: ``speaker``.

``speaker check -c FILE`` loads and validates a configuration: errors go to stderr,
one per line as ``FILE: path: message``, and the exit status is 2; a valid file
prints its warnings (``warning: FILE: path: message``) and a one-line summary, and
exits 0. It then asks this host what the peers need (speaker/hostcheck.py): a
missing ``interface`` is an error, a peer without a route or a ``source_address``
the host does not have a warning; ``--host-checks warn`` makes them all warnings,
``off`` skips them (checking a file on another machine).

``speaker run -c FILE`` validates the same way (refusing to start on an invalid
file, exit 2), then runs the speaker until SIGTERM/SIGINT (exit 0).
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from typing import TYPE_CHECKING, Any

from speaker import __version__
from speaker.config import ConfigError, ConfigIssue, load_config

if TYPE_CHECKING:
    from speaker.app import Speaker
    from speaker.looplag import LoopMonitor

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
    _add_allocate(commands)
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
    return EXIT_OK


def _invalid(file: str, errors: list[ConfigIssue], warnings: list[ConfigIssue]) -> int:
    for issue in errors:
        print(_line(file, issue), file=sys.stderr)
    for issue in warnings:
        print("warning: " + _line(file, issue), file=sys.stderr)
    count = len(errors)
    print(f"{file}: {count} error{'s' if count != 1 else ''}", file=sys.stderr)
    return EXIT_CONFIG


def run(file: str, *, log_format: str = "logfmt", log_level: str = "info") -> int:
    """``speaker run``: returns the exit status."""
    import trio

    from speaker import gcpause
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
    # Once, for the process: a reload's worker thread gives the GIL back to the loop
    # within this interval (see speaker.app.GIL_SWITCH_INTERVAL).
    from speaker.app import GIL_SWITCH_INTERVAL

    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    log = logging.getLogger("speaker")
    for issue in config.warnings:
        log.warning("config: %s", issue)
    try:
        speaker = Speaker(derive(config), config_path=file)
    except (AllocationError, StateFileError, OSError) as exc:
        print(f"{file}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    # What start-up built (config, route table: ~46 MiB at 65,536 routes) lives until a
    # reload replaces it: move it out of the collector's reach, so a full collection,
    # which holds the loop for its whole length, scans only what came after
    # (speaker.reload.collections_deferred does the same for each reload).
    gcpause.freeze()

    # Imported before the loop starts, not lazily inside a task: importing
    # prometheus-client and the control server is one 20-30 ms step.
    from speaker import control, metrics, sdnotify  # noqa: F401
    from speaker.looplag import LoopMonitor

    async def main_task() -> None:
        with LoopMonitor().installed() as monitor:  # the loop's lag: status, metrics, log
            await _serve(speaker, monitor)

    try:
        trio.run(main_task)
    except _StartupError as exc:
        print(f"{file}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    log.info("speaker stopped")
    return EXIT_OK


# ---- operating a running speaker: control socket, metrics, systemd ---------------------

OPERATION_COMMANDS = ("show", "clear", "reload", "announce", "withdraw", "clear-override")
EXIT_ERROR = 1


class _StartupError(Exception):
    """The control socket or the metrics port could not be opened."""


async def _serve(speaker: Speaker, monitor: LoopMonitor | None = None) -> None:
    """The speaker plus its control socket, metrics endpoint and systemd notifications;
    both sockets are bound before the speaker starts (so READY=1 means all is up)."""
    import functools

    import trio

    from speaker.config.model import DEFAULT_CONTROL_SOCKET, DEFAULT_METRICS_ADDRESS
    from speaker.control import ControlServer
    from speaker.metrics import serve_metrics

    config = speaker.config
    log = logging.getLogger("speaker")

    def busy_default(exc: OSError, value: object, default: object) -> bool:
        """Another speaker holds a *default* socket (e.g. one per network namespace on
        one host): run without it rather than not at all. A configured one is fatal."""
        if exc.errno != errno.EADDRINUSE or value != default:
            return False
        log.error("%s is in use by another process: running without it (set another in"
                  " the configuration)", value)  # fmt: skip
        return True

    failure: list[str] = []
    async with trio.open_nursery() as nursery:
        if monitor is not None:
            nursery.start_soon(monitor.run)

        async def start(what: str, value: object, default: object, *args: Any) -> bool:
            try:
                await nursery.start(*args)
            except OSError as exc:
                if not busy_default(exc, value, default):
                    failure.append(f"{what} {value}: {exc}")
                    nursery.cancel_scope.cancel()
                    return False
            return True

        control = ControlServer(
            speaker, config.control.socket, config.control.mode_bits, monitor=monitor
        )
        started = await start(
            "control socket", config.control.socket, DEFAULT_CONTROL_SOCKET, control.serve
        )
        if started and config.metrics.enabled:
            host, port = config.metrics.host_port
            started = await start(
                "metrics address", config.metrics.address, DEFAULT_METRICS_ADDRESS,
                functools.partial(serve_metrics, monitor=monitor), speaker, host, port,
            )  # fmt: skip
        if started:
            nursery.start_soon(_run_speaker, speaker, nursery)
    if failure:
        raise _StartupError(failure[0])


async def _run_speaker(speaker: Speaker, nursery: Any) -> None:
    """The speaker, then systemd's READY=1, STOPPING=1 and watchdog around it; when
    the speaker stops, everything else stops too."""
    import trio

    from speaker import sdnotify

    async def stopping() -> None:
        await speaker.shutting_down.wait()
        sdnotify.notify("STOPPING=1")

    try:
        async with trio.open_nursery() as tasks:

            async def run(*, task_status: trio.TaskStatus[Speaker]) -> None:
                try:
                    await speaker.run(task_status=task_status)
                finally:
                    tasks.cancel_scope.cancel()

            tasks.start_soon(stopping)
            await tasks.start(run)
            sdnotify.notify(f"READY=1\nSTATUS=running: {len(speaker.peers)} peers")
            interval = sdnotify.watchdog_interval()
            if interval is not None:
                tasks.start_soon(sdnotify.watchdog, interval)
    finally:
        nursery.cancel_scope.cancel()


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
        return run(args.config, log_format=args.log_format, log_level=args.log_level)
    if args.command == "import-metallb":
        return _import_metallb(args)
    if args.command == "allocate":
        return _allocate(args)
    if args.command in OPERATION_COMMANDS:
        return operate(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
