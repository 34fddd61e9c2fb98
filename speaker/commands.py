"""The command table: every request the control socket answers, and how the CLI's
``speaker show ...`` / ``speaker clear ...`` words map to it and print its reply.

One :class:`Command` per request: its name on the socket (``"show bgp summary"``),
its parameters, the function that answers it inside the speaker (a view of
:mod:`speaker.view` or an action: reload, overrides, clears), and, for the CLI, the
words that ask for it (``show bgp summary``; ``NAME``-like upper-case words take a
parameter) and the text layout of :mod:`speaker.show` that prints it. The control
server (:func:`dispatch`) and the CLI (:func:`add_parsers`, :func:`operate`) read this
one table; there is no other list of commands.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from speaker import show, show_frr, view
from speaker.log import fields
from speaker.view import RequestError

if TYPE_CHECKING:
    from speaker.app import Speaker
    from speaker.looplag import LoopMonitor

__all__ = [
    "BY_NAME",
    "COMMANDS",
    "Command",
    "Context",
    "Form",
    "Param",
    "add_parsers",
    "dispatch",
    "match",
    "operate",
]

log = logging.getLogger("speaker.control")


@attrs.frozen
class Param:
    """A request parameter: a string (``required``: present and not empty; one of
    ``choices`` when given, ``what`` naming them in the error) or a boolean (false
    when absent)."""

    name: str
    kind: type = str
    required: bool = True
    choices: tuple[str, ...] = ()
    what: str = ""


@attrs.frozen
class Context:
    """What a command's function gets: the speaker, the loop monitor, the request's
    parameters (checked against :attr:`Command.params`)."""

    speaker: Speaker
    monitor: LoopMonitor | None
    args: Mapping[str, Any]

    def text(self, name: str) -> str:
        value = self.args.get(name)
        assert isinstance(value, str)
        return value

    def opt(self, name: str) -> str | None:
        value = self.args.get(name)
        return value if isinstance(value, str) else None


@attrs.frozen
class Form:
    """CLI words asking for a command: ``("bgp", "neighbor", "NAME")`` after ``show``
    (an upper-case word takes the parameter of that name, lower-cased), with
    ``fixed`` parameters this form sets."""

    verb: str
    words: tuple[str, ...]
    fixed: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def usage(self) -> str:
        return " ".join((self.verb, *self.words))


@attrs.frozen
class Command:
    name: str
    run: Callable[[Context], Awaitable[Any]]
    help: str
    params: tuple[Param, ...] = ()
    forms: tuple[Form, ...] = ()
    #: The text layout (the CLI prints it without ``--json``).
    text: Callable[[Any], str] | None = None
    #: What ``--json`` prints, from the reply's data and the request's parameters
    #: (default: all of the data).
    shown: Callable[[Any, Mapping[str, Any]], Any] | None = None


def _check(command: Command, request: Mapping[str, Any]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for param in command.params:
        value = request.get(param.name)
        if param.kind is bool:
            if value is None:
                value = False
            elif not isinstance(value, bool):
                raise RequestError(f'"{param.name}" must be true or false')
        elif param.required:
            if not isinstance(value, str) or not value:
                raise RequestError(f'missing "{param.name}"')
        elif value is not None and not isinstance(value, str):
            raise RequestError(f'"{param.name}" must be a string')
        args[param.name] = value
    for param in command.params:  # after every presence check, as a command's own would
        value = args[param.name]
        if param.choices and value is not None and value not in param.choices:
            raise RequestError(f'unknown {param.what} "{value}" ({" or ".join(param.choices)})')
    return args


async def dispatch(
    speaker: Speaker, request: Mapping[str, Any], *, monitor: LoopMonitor | None = None
) -> dict[str, Any]:
    """One request -> one reply (``{"ok": true, "data": ...}`` or an error)."""
    name = request.get("command")
    try:
        if not isinstance(name, str):
            raise RequestError('missing "command"')
        command = BY_NAME.get(name)
        if command is None:
            raise RequestError(f'unknown command "{name}"')
        context = Context(speaker, monitor, _check(command, request))
        return {"ok": True, "data": await command.run(context)}
    except RequestError as exc:
        return {"ok": False, "error": str(exc)}


# ---- actions ----------------------------------------------------------------------------------


def clear_bfd_counters(speaker: Speaker, name: str | None) -> dict[str, Any]:
    """``clear bfd peers counters`` (every peer, and the unmatched packets) or one
    peer's: what ``show bfd peers counters`` prints starts again from zero."""
    runners = view.bfd_runners(speaker) if name is None else [view.find_runner(speaker, name)]
    for runner in runners:
        runner.clear_bfd_counters()
    if name is None and speaker.endpoint is not None:
        speaker.unmatched_cleared = Counter(speaker.endpoint.discards)
    cleared = [r.name for r in runners]
    log.info("bfd counters cleared: %s", ", ".join(cleared) or "no BFD peers",
             extra=fields(peers=cleared))  # fmt: skip
    return {"cleared": cleared}


def _override(speaker: Speaker, service: str, mode: str | None) -> dict[str, Any]:
    try:
        speaker.set_override(service, mode)
    except KeyError:
        known = ", ".join(speaker.derived.services) or "none"
        raise RequestError(f'no service named "{service}" (services: {known})') from None
    except OSError as exc:
        raise RequestError(f"cannot write the state file: {exc}") from None
    return {"service": service, "override": mode}


async def _drain(ctx: Context, drained: bool) -> dict[str, Any]:
    """``drain`` / ``undrain``: the node (no parameter), a peer (name or address) or
    a service; ``all`` (undrain): every drain. The reply: what is drained now."""
    speaker = ctx.speaker
    peer, service = ctx.opt("peer"), ctx.opt("service")
    if peer is not None and service is not None:
        raise RequestError("give a peer or a service, not both")
    every = bool(ctx.args.get("all"))
    if every and (peer is not None or service is not None):
        raise RequestError("--all ends every drain: give no peer or service with it")
    if peer is not None:
        peer = view.find_runner(speaker, peer).name
    try:
        if every:
            return {"drain": (await speaker.undrain_all()).record(), "changed": "all"}
        state = await speaker.set_drain(drained=drained, peer=peer, service=service)
    except KeyError:
        known = ", ".join(speaker.derived.services) or "none"
        raise RequestError(f'no service named "{service}" (services: {known})') from None
    except OSError as exc:
        raise RequestError(f"cannot write the drain file: {exc}") from None
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    what = f"peer {peer}" if peer else f"service {service}" if service else "node"
    return {"drain": state.record(), "changed": what, "drained": drained}


def _drained_text(data: Any) -> str:
    drain = data["drain"]
    if data["changed"] == "all":
        head = "every drain ended"
    else:
        head = f"{data['changed']}: {'drained' if data['drained'] else 'undrained'}"
    parts = ["node"] if drain["node"] else []
    parts += [f"peer {p}" for p in drain["peers"]] + [f"service {s}" for s in drain["services"]]
    return f"{head}\ndrained now: {', '.join(parts) or 'nothing'}\n"


async def _reload(ctx: Context) -> dict[str, Any]:
    allow_empty = bool(ctx.args["allow_empty"])
    log.info("reload requested on the control socket%s",
             " (allow_empty)" if allow_empty else "")  # fmt: skip
    result = await ctx.speaker.reload_file(allow_empty=allow_empty)
    return {
        "applied": result.ok,
        "summary": result.summary(),
        "errors": list(result.errors),
        "warnings": list(result.warnings),
    }


async def _restart(ctx: Context) -> dict[str, Any]:
    """``speaker restart``: the process ends on the restart path (the reply goes out
    first; under systemd the unit starts it again, exit status 75)."""
    from speaker.shutdown_mode import ShutdownMode

    log.info("restart requested on the control socket")
    speaker = ctx.speaker
    peers = {name: runner.plan.bgp.graceful_restart for name, runner in speaker.peers.items()}
    started = speaker.request_shutdown(ShutdownMode.RESTART, "speaker restarting")
    return {"restarting": started, "graceful_restart": peers}


# ---- the table --------------------------------------------------------------------------------


def _sync(function: Callable[[Context], Any]) -> Callable[[Context], Awaitable[Any]]:
    async def run(ctx: Context) -> Any:
        return function(ctx)

    return run


def _cleared(data: Any) -> str:
    return f"bfd counters cleared: {', '.join(data['cleared']) or 'no BFD peers'}\n"


def _bgp_cleared(data: Any) -> str:
    if data["cleared"] == "reset":
        return f"bgp {data['peer']}: session reset\n"
    return f"bgp {data['peer']}: Adj-RIB-Out sent again ({', '.join(data['families'])})\n"


_FAMILY_KEYS = {"ipv4": "ipv4Unicast", "ipv6": "ipv6Unicast"}


async def _summary(ctx: Context) -> dict[str, Any]:
    """Our rows (``routerId``, ``as``, ``peers``: a list by name, with BFD) and FRR's
    ``ipv4Unicast`` / ``ipv6Unicast`` (only FAMILY's when given)."""
    family = ctx.opt("family")
    data = await view.bgp_summary(ctx.speaker)
    families = await view.frr_summary(ctx.speaker)
    if family is not None:
        key = _FAMILY_KEYS[family]
        families = {key: families[key]} if key in families else {}
    data.update(families)
    return data


def _summary_shown(data: Any, args: Mapping[str, Any]) -> Any:
    """``show bgp ipv4 unicast summary json`` is the family's object, as FRR's."""
    family = args.get("family")
    if family is None:
        return data
    return data.get(_FAMILY_KEYS.get(family, ""), {})


def _counters_text(data: Any) -> str:
    return show.format_bfd_counters(data["peers"], data["unmatched"])


NAME = Param("name")
SERVICE = Param("service")
FAMILY = Param("family", choices=tuple(_FAMILY_KEYS), what="address family")

COMMANDS: tuple[Command, ...] = (
    Command(
        "status",
        _sync(lambda c: view.status(c.speaker, c.monitor)),
        "version, reloads, and the event loop's worst recent stall",
        forms=(Form("show", ("status",)),),
        text=show.format_status,
    ),
    Command(
        "show bfd peers",
        lambda c: view.bfd_peers(c.speaker),
        "BFD peers, as FRR's show bfd peers",
        forms=(Form("show", ("bfd", "peers")),),
        text=show.format_bfd_peers,
    ),
    Command(
        "show bfd peer",
        _sync(lambda c: view.bfd_peer(c.speaker, c.text("name"))),
        "one BFD session: the peer's name or address",
        params=(NAME,),
        forms=(Form("show", ("bfd", "peer", "NAME")),),
        text=lambda data: show.format_bfd_peers([data], header="BFD Peer:"),
    ),
    Command(
        "show bfd peers brief",
        lambda c: view.bfd_peers(c.speaker),
        "one line per BFD session, as FRR's",
        forms=(Form("show", ("bfd", "peers", "brief")),),
        text=show_frr.format_bfd_brief,
    ),
    Command(
        "show bfd peers counters",
        lambda c: view.bfd_counters(c.speaker),
        "BFD packet counters, as FRR's show bfd peers counters",
        forms=(Form("show", ("bfd", "peers", "counters")),),
        text=_counters_text,
        shown=lambda data, _: data["peers"],
    ),
    Command(
        "show bgp summary",
        _summary,
        "FRR's layout: one block per address family (FAMILY: ipv4 or ipv6 only)",
        params=(attrs.evolve(FAMILY, required=False),),
        forms=(
            Form("show", ("bgp", "summary")),
            Form("show", ("bgp", "FAMILY", "unicast", "summary")),
        ),
        text=show_frr.format_bgp_summary,
        shown=_summary_shown,
    ),
    Command(
        "show bgp neighbors",
        lambda c: view.bgp_neighbors(c.speaker, c.opt("name")),
        "FRR's show bgp neighbors: every neighbour, or the one NAME (name or address)",
        params=(Param("name", required=False),),
        forms=(Form("show", ("bgp", "neighbors")), Form("show", ("bgp", "neighbors", "NAME"))),
        text=show_frr.format_bgp_neighbors,
    ),
    Command(
        "show bgp advertised-routes",
        lambda c: view.advertised_routes(c.speaker, c.text("family"), c.text("name")),
        "the routes sent to NAME in FAMILY (ipv4 or ipv6), as FRR's",
        params=(FAMILY, NAME),
        forms=(
            Form("show", ("bgp", "FAMILY", "unicast", "neighbors", "NAME", "advertised-routes")),
        ),
        text=show_frr.format_advertised_routes,
    ),
    Command(
        "show bgp neighbor",
        _sync(lambda c: view.bgp_neighbor(c.speaker, c.text("name"))),
        "ours: one neighbour in detail, with the failover timeline (NAME: name or address)",
        params=(NAME,),
        forms=(Form("show", ("bgp", "neighbor", "NAME")),),
        text=show.format_bgp_neighbor,
    ),
    Command(
        "show routes",
        lambda c: view.routes(c.speaker),
        "what is announced to each peer, and why (not)",
        forms=(Form("show", ("routes",)),),
        text=show.format_routes,
    ),
    Command(
        "show config",
        lambda c: view.config_view(c.speaker),
        "the effective configuration, secrets redacted",
        forms=(Form("show", ("config",)),),
        text=show.format_config,
    ),
    Command(
        "clear bfd peers counters",
        _sync(lambda c: clear_bfd_counters(c.speaker, c.opt("name"))),
        "zero what show bfd peers counters prints, as FRR's (metrics keep counting);"
        " --peer NAME: only that peer",
        params=(Param("name", required=False),),
        forms=(Form("clear", ("bfd", "peers", "counters")),),
        text=_cleared,
    ),
    Command(
        "clear bgp",
        _sync(lambda c: view.clear_bgp(c.speaker, c.text("name"), soft_out=c.args["soft_out"])),
        "reset the BGP session to NAME (Cease/Administrative Reset; it reconnects); soft"
        " out: send the Adj-RIB-Out again, the session stays up",
        params=(NAME, Param("soft_out", kind=bool)),
        forms=(
            Form("clear", ("bgp", "NAME")),
            Form("clear", ("bgp", "NAME", "soft", "out"), {"soft_out": True}),
        ),
        text=_bgp_cleared,
    ),
    Command(
        "reload",
        _reload,
        "re-read the configuration file (as SIGHUP)",
        params=(Param("allow_empty", kind=bool),),
    ),
    Command(
        "restart",
        _restart,
        "end the process on the restart path: routers with graceful restart keep our"
        " routes while it starts again (systemd restarts it; exit status 75)",
    ),
    Command(
        "announce",
        _sync(lambda c: _override(c.speaker, c.text("service"), "announce")),
        "announce SERVICE whatever its health (until clear-override)",
        params=(SERVICE,),
    ),
    Command(
        "withdraw",
        _sync(lambda c: _override(c.speaker, c.text("service"), "withdraw")),
        "withdraw SERVICE whatever its health (until clear-override)",
        params=(SERVICE,),
    ),
    Command(
        "drain",
        lambda c: _drain(c, True),
        "RFC 8326 graceful shutdown: announce the routes again with GRACEFUL_SHUTDOWN"
        " (65535:0) and LOCAL_PREF 0 on iBGP: of the whole node, of one peer (NAME or"
        " address) or of one SERVICE (kept across reloads and restarts, until undrain)",
        params=(Param("peer", required=False), Param("service", required=False)),
        text=_drained_text,
    ),
    Command(
        "undrain",
        lambda c: _drain(c, False),
        "end a drain: of the node, of a peer or of a SERVICE; all: every drain",
        params=(
            Param("peer", required=False),
            Param("service", required=False),
            Param("all", kind=bool),
        ),
        text=_drained_text,
    ),
    Command(
        "clear-override",
        _sync(lambda c: _override(c.speaker, c.text("service"), None)),
        "let SERVICE's health decide again",
        params=(SERVICE,),
    ),
)

#: The table by socket name (the control server's dispatch).
BY_NAME: dict[str, Command] = {c.name: c for c in COMMANDS}


# ---- the CLI: speaker show ... / speaker clear ... ---------------------------------------------


def match(verb: str, words: Sequence[str]) -> tuple[Command, dict[str, Any]] | None:
    """The command and its parameters the CLI ``words`` (after ``verb``) ask for."""
    for command in COMMANDS:
        for form in command.forms:
            if form.verb != verb or len(form.words) != len(words):
                continue
            args: dict[str, Any] = dict(form.fixed)
            for want, word in zip(form.words, words, strict=True):
                if want.isupper():
                    args[want.lower()] = word
                elif want != word:
                    break
            else:
                return command, args
    return None


def _usage(verb: str) -> str:
    rows = [
        (form.usage, command.help)
        for command in COMMANDS
        for form in command.forms
        if form.verb == verb
    ]
    width = max(len(u) for u, _ in rows)
    return "commands:\n" + "\n".join(f"  {u:<{width}}  {h}" for u, h in rows)


def add_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """``speaker show WORDS... [--json]`` and ``speaker clear WORDS... [--peer NAME]``,
    their words listed from the table."""
    for verb, text in (("show", "show the state of the running speaker"),
                       ("clear", "zero counters shown by the show commands")):  # fmt: skip
        sub = commands.add_parser(
            verb, parents=[common], help=text, description=text, epilog=_usage(verb),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip
        sub.add_argument("words", nargs="+", metavar="WORD", help="the command (below)")
        sub.add_argument("--json", action="store_true", help="print JSON")
        if verb == "clear":
            sub.add_argument("--peer", metavar="NAME", help="only this peer (name or address)")


def operate(args: argparse.Namespace, path: str) -> int:
    """Run ``speaker show|clear WORDS``: returns the exit status (2 for words that
    name no command)."""
    from speaker.control import request

    words = list(args.words)
    if len(words) > 1 and words[-1] == "json":  # FRR's way of asking for JSON
        words.pop()
        args.json = True
    found = match(args.command, words)
    if found is None:
        print(f"speaker {args.command}: no command {' '.join(words)!r}\n"
              f"{_usage(args.command)}", file=sys.stderr)  # fmt: skip
        return 2
    command, params = found
    if getattr(args, "peer", None) is not None:
        params["name"] = args.peer
    data = request(path, command.name, **params)
    if args.json or command.text is None:
        shown = command.shown(data, params) if command.shown is not None else data
        print(json.dumps(shown, indent=2, default=str))
    else:
        print(command.text(data), end="")
    return 0
