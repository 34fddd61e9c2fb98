"""Loading: TOML file -> tomllib -> cattrs -> frozen attrs -> :class:`Config`.

The converter is cattrs' tomllib preset with strict scalar hooks (a string is never
an integer, a table never a list) and one structure hook for every attrs class that
reports *every* problem of a table at once, each at its own key: unknown keys (with
a "did you mean"), missing keys, wrong types and the attrs validators of each field.
Errors arrive as cattrs' exception groups, whose notes carry the key or index; they
are flattened into :class:`ConfigIssue` records with TOML paths
(``peers[0].node_selectors[1].match_labels``).

Each element of each array of tables is structured on its own, so one broken peer
does not hide the problems of the others, and the cross-object rules of
:mod:`speaker.config.validate` still run on everything that did structure.

Secrets: an attrs field declared ``repr=False`` (the project's mark for a secret:
``password``, a BFD ``auth.keys`` entry) never has its value in a message, whatever
the file holds there. Its problems are re-worded by :func:`_redact` to name only the
TOML type (``expected a string, got an integer``), so ``speaker check``, a refused
reload and the log say where and what kind, never the value.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
from cattrs.errors import (
    AttributeValidationNote,
    BaseValidationError,
    ClassValidationError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.preconf.tomllib import TomllibConverter, make_converter

from speaker.bfd.profile import BfdProfile
from speaker.config.describe import describe
from speaker.config.durations import parse_duration
from speaker.config.model import (
    NO_PEER_ADDRESS,
    AddressRange,
    Advertisement,
    Community,
    Config,
    ConfigIssue,
    ControlSettings,
    MetricsSettings,
    PeerSpec,
    Pool,
    Service,
    SpeakerSettings,
)
from speaker.config.validate import Draft, build

__all__ = [
    "ConfigError",
    "build_config",
    "load_config",
    "loads_config",
    "make_config_converter",
    "structure_value",
]


class ConfigError(Exception):
    """The configuration is invalid: ``errors`` lists every problem (each with ``.path``
    and ``.message``), ``warnings`` what was found on the way."""

    def __init__(
        self, errors: list[ConfigIssue], warnings: list[ConfigIssue] | None = None
    ) -> None:
        super().__init__(errors)
        self.errors = errors
        self.warnings = warnings or []

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.errors)


class ExpectedTypeError(TypeError):
    """The file holds the wrong TOML type; keeps ``what`` and ``value`` apart so the
    message can be re-made without the value (:func:`_redact`)."""

    def __init__(self, what: str, value: object) -> None:
        super().__init__(f"expected {what}, got {describe(value)}")
        self.what = what
        self.value = value

    def redacted(self) -> TypeError:
        return TypeError(f"expected {self.what}, got {describe(self.value, secret=True)}")


def _expect(what: str, value: object) -> TypeError:
    return ExpectedTypeError(what, value)


# ---- unknown keys ----------------------------------------------------------------------------


class UnknownKeyError(ValueError):
    """A key the table does not have; the message suggests the nearest one."""

    def __init__(self, key: str, known: list[str]) -> None:
        hint = suggest(key, known)
        super().__init__(f'unknown key (did you mean "{hint}"?)' if hint else "unknown key")


class MissingKeyError(ValueError):
    def __init__(self) -> None:
        super().__init__("required key is missing")


class KeyNotNumberError(ValueError):
    """A table keyed by numbers (BFD ``auth.keys``) has another key; the key is in the
    path already, and is not the secret."""

    def __init__(self, key: str) -> None:
        super().__init__(f'key "{key}" is not a number')


# Messages that never hold the value at that key: kept as they are in a secret field.
_VALUE_FREE = (UnknownKeyError, MissingKeyError, KeyNotNumberError)
SECRET_HIDDEN = "invalid value (a secret: not shown)"


# As speaker.show's redaction: repr=False, or a field named like a secret.
_SECRET_NAMES = frozenset({"password", "keys", "secret", "secrets"})


def is_secret(field: attrs.Attribute[Any]) -> bool:
    """Whether the field holds a secret: its value is never in a message."""
    return field.repr is False or field.alias in _SECRET_NAMES


_USERINFO = re.compile(r"(?<=//)[^/?#@\s\"]+@")


def _scrub(text: str) -> str:
    """``scheme://user:password@host`` in a message -> ``scheme://<redacted>@host``."""
    return _USERINFO.sub("<redacted>@", text)


def _redact(exc: Exception) -> Exception:
    """``exc`` (a leaf or cattrs' group, with its notes) re-made so that no message
    holds a value: a wrong type names the type only; anything else but the value-free
    messages becomes :data:`SECRET_HIDDEN`."""
    out: Exception
    if isinstance(exc, BaseValidationError):
        out = exc.derive([_redact(sub) for sub in exc.exceptions])
    elif isinstance(exc, ExpectedTypeError):
        out = exc.redacted()
    elif isinstance(exc, _VALUE_FREE):
        out = exc
    else:
        out = ValueError(SECRET_HIDDEN)
    if out is not exc:
        for note in getattr(exc, "__notes__", ()):
            out.add_note(note)
    return out


def suggest(key: str, known: list[str]) -> str | None:
    """The known key ``key`` was most likely meant to be (``holdTime`` -> ``hold_time``)."""
    snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).lower().replace("-", "_")
    if snake in known:
        return snake
    import difflib  # here: only a file with an unknown key needs it (idle RSS)

    close = difflib.get_close_matches(snake, known, n=1, cutoff=0.6)
    if close:
        return close[0]
    starting = [k for k in known if k.startswith(snake) or snake.startswith(k)]
    return starting[0] if len(starting) == 1 else None


# ---- the converter -----------------------------------------------------------------------------


def _note_key(exc: Exception, key: str, typ: Any) -> Exception:
    exc.add_note(AttributeValidationNote(f"Structuring key {key!r}", key, typ))
    return exc


def _note_index(exc: Exception, index: int | str, typ: Any) -> Exception:
    exc.add_note(IterableValidationNote(f"Structuring @ {index!r}", index, typ))
    return exc


def _union_of(*members: type) -> Callable[[Any], bool]:
    wanted = set(members)

    def predicate(t: Any) -> bool:
        origin: Any = typing.get_origin(t)
        return origin in (typing.Union, types.UnionType) and set(typing.get_args(t)) == wanted

    return predicate


def _is_var_tuple(t: Any) -> bool:
    args = typing.get_args(t)
    return typing.get_origin(t) is tuple and len(args) == 2 and args[1] is Ellipsis


def _is_optional(t: Any) -> bool:
    origin: Any = typing.get_origin(t)
    return origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(t)


def _is_mapping(t: Any) -> bool:
    return typing.get_origin(t) in (dict, Mapping, typing.Mapping)


def make_config_converter() -> TomllibConverter:
    """cattrs' tomllib converter, made strict and path-reporting (see the module doc)."""
    conv = make_converter(forbid_extra_keys=True)

    def strict(kind: type, what: str) -> Callable[[Any, Any], Any]:
        def hook(value: Any, _: Any) -> Any:
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise _expect(what, value)
            return value

        return hook

    conv.register_structure_hook(str, strict(str, "a string"))
    conv.register_structure_hook(int, strict(int, "an integer"))
    conv.register_structure_hook(bool, strict(bool, "true or false"))

    def text_hook(parse: Callable[[str], Any], what: str) -> Callable[[Any, Any], Any]:
        def hook(value: Any, _: Any) -> Any:
            if not isinstance(value, str):
                raise _expect(what, value)
            return parse(value)

        return hook

    def address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        try:
            return ipaddress.ip_address(text.strip())
        except ValueError:
            raise ValueError(f'"{text}" is not an IP address') from None

    def ipv4(text: str) -> ipaddress.IPv4Address:
        try:
            return ipaddress.IPv4Address(text.strip())
        except ValueError:
            raise ValueError(f'"{text}" is not an IPv4 address') from None

    conv.register_structure_hook(
        timedelta, text_hook(parse_duration, 'a duration such as "90s" or "500ms"')
    )
    conv.register_structure_hook(Path, text_hook(Path, "a file path (a string)"))
    conv.register_structure_hook(ipaddress.IPv4Address, text_hook(ipv4, "an IPv4 address"))
    conv.register_structure_hook_func(
        _union_of(ipaddress.IPv4Address, ipaddress.IPv6Address),
        text_hook(address, "an IP address (a string)"),
    )
    conv.register_structure_hook(
        AddressRange, text_hook(AddressRange.parse, 'a CIDR or a "first-last" range')
    )
    conv.register_structure_hook(
        Community, text_hook(Community.parse, 'a community such as "65000:100"')
    )

    def multihop(value: Any, _: Any) -> bool | int:
        if not isinstance(value, bool | int):
            raise _expect("true, false or a TTL (1-255)", value)
        return value

    conv.register_structure_hook_func(_union_of(bool, int), multihop)

    def asn_or_word(value: Any, _: Any) -> int | str:  # peer_asn: 64512 or "external"
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise _expect('an AS number, "internal" or "external"', value)
        return value

    conv.register_structure_hook_func(_union_of(int, str), asn_or_word)

    def var_tuple(value: Any, typ: Any) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise _expect("an array", value)
        item_type = typing.get_args(typ)[0]
        out: list[Any] = []
        errors: list[Exception] = []
        for index, item in enumerate(value):
            try:
                out.append(conv.structure(item, item_type))
            except Exception as exc:
                errors.append(_note_index(exc, index, item_type))
        if errors:
            raise IterableValidationError(f"While structuring {typ}", errors, typ)
        return tuple(out)

    conv.register_structure_hook_func(_is_var_tuple, var_tuple)

    def mapping(value: Any, typ: Any) -> dict[Any, Any]:
        if not isinstance(value, dict):
            raise _expect("a table", value)
        key_type, value_type = typing.get_args(typ)
        out: dict[Any, Any] = {}
        errors: list[Exception] = []
        for key, item in value.items():
            try:
                if key_type is int:  # TOML keys are strings: { "1" = "secret" }
                    if not key.isdigit():
                        raise KeyNotNumberError(key)
                    out[int(key)] = conv.structure(item, value_type)
                else:
                    out[key] = conv.structure(item, value_type)
            except Exception as exc:
                errors.append(_note_index(exc, str(key), value_type))
        if errors:
            raise IterableValidationError(f"While structuring {typ}", errors, typ)
        return out

    conv.register_structure_hook_func(_is_mapping, mapping)
    conv.register_structure_hook_factory(attrs.has, lambda cls: _attrs_hook(conv, cls))

    def optional(value: Any, typ: Any) -> Any:
        if value is None:
            return None
        rest: Any = tuple(a for a in typing.get_args(typ) if a is not type(None))
        inner: Any = rest[0] if len(rest) == 1 else typing.Union[rest]  # noqa: UP007
        return conv.structure(value, inner)

    conv.register_structure_hook_func(_is_optional, optional)
    return conv


def _attrs_hook(conv: TomllibConverter, cls: type) -> Callable[[Any, Any], Any]:
    """Structure one table into ``cls``, reporting every bad key at once."""
    attrs.resolve_types(cls)
    fields = [f for f in attrs.fields(cls) if f.init]
    known = [f.alias for f in fields]

    def structure(value: Any, _: Any) -> Any:
        if not isinstance(value, dict):
            raise _expect("a table", value)
        errors: list[Exception] = [
            _note_key(UnknownKeyError(key, known), key, None) for key in value if key not in known
        ]
        kwargs: dict[str, Any] = {}
        for field in fields:
            if field.alias not in value:
                if field.default is attrs.NOTHING:
                    errors.append(_note_key(MissingKeyError(), field.alias, field.type))
                continue
            try:
                item = conv.structure(value[field.alias], field.type)
                if field.validator is not None and field.converter is None:
                    field.validator(None, field, item)
            except Exception as exc:
                if is_secret(field):  # no value in any message
                    exc = _redact(exc)
                errors.append(_note_key(exc, field.alias, field.type))
                continue
            kwargs[field.alias] = item
        if errors:
            raise ClassValidationError(f"While structuring {cls.__name__}", errors, cls)
        return cls(**kwargs)  # rules across fields (__attrs_post_init__) report on the table

    return structure


_CONVERTER = make_config_converter()


# ---- flattening cattrs' exception groups into paths ----------------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _join(path: str, step: int | str) -> str:
    if isinstance(step, int):
        return f"{path}[{step}]"
    if not _BARE_KEY.match(step):
        step = '"' + step.replace('"', '\\"') + '"'
    return f"{path}.{step}" if path else step


def _step_of(exc: BaseException) -> int | str | None:
    for note in getattr(exc, "__notes__", ()):
        if isinstance(note, AttributeValidationNote):
            return note.name
        if isinstance(note, IterableValidationNote):
            return note.index
    return None


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return "required key is missing"
    args = exc.args
    if len(args) == 4 and isinstance(args[1], attrs.Attribute):  # attrs.validators.in_
        options = [str(option) for option in args[2]]
        hint = suggest(str(args[3]), options)
        return f'"{args[3]}" is not one of {", ".join(options)}' + (
            f' (did you mean "{hint}"?)' if hint else ""
        )
    text = str(exc)
    return text or type(exc).__name__


def flatten(exc: BaseException, path: str) -> list[ConfigIssue]:
    """cattrs' nested exception groups -> one :class:`ConfigIssue` per leaf."""
    if isinstance(exc, BaseValidationError):
        out: list[ConfigIssue] = []
        for sub in exc.exceptions:
            step = _step_of(sub)
            out += flatten(sub, path if step is None else _join(path, step))
        return out
    return [ConfigIssue(path, _scrub(_message(exc)))]


def structure_value(value: object, typ: Any, path: str) -> tuple[Any, list[ConfigIssue]]:
    """One value structured as the file's ``typ`` would be (its hooks, its validators),
    and its problems at ``path`` and below: for readers of other formats
    (import-metallb's selectors) that want the configuration's own rules."""
    try:
        return _CONVERTER.structure(value, typ), []
    except Exception as exc:
        return None, flatten(exc, path)


# ---- sections -------------------------------------------------------------------------------

_LISTS: dict[str, type] = {
    "bfd_profiles": BfdProfile,
    "peers": PeerSpec,
    "pools": Pool,
    "advertisements": Advertisement,
    "services": Service,
}
_SECTIONS = ["speaker", *_LISTS, "control", "metrics"]


def structure(data: Mapping[str, Any]) -> tuple[Draft, list[ConfigIssue]]:
    """Structure each section (and each element of each array) on its own."""
    issues: list[ConfigIssue] = []
    for key in data:
        if key not in _SECTIONS:
            issues.append(ConfigIssue(key, str(UnknownKeyError(key, _SECTIONS))))

    broken: set[str] = set()
    speaker: SpeakerSettings | None = None
    try:
        speaker = _CONVERTER.structure(data.get("speaker", {}), SpeakerSettings)
    except Exception as exc:
        issues += flatten(exc, "speaker")
        broken.add("speaker")

    control: ControlSettings | None = None
    try:
        control = _CONVERTER.structure(data.get("control", {}), ControlSettings)
    except Exception as exc:
        issues += flatten(exc, "control")
        broken.add("control")
    metrics: MetricsSettings | None = None
    try:
        metrics = _CONVERTER.structure(data.get("metrics", {}), MetricsSettings)
    except Exception as exc:
        issues += flatten(exc, "metrics")
        broken.add("metrics")

    items: dict[str, list[tuple[int, Any]]] = {}
    names: dict[str, list[tuple[int, str]]] = {}
    for section, cls in _LISTS.items():
        items[section], names[section] = [], []
        raw = data.get(section, [])
        if not isinstance(raw, list):
            expected = _expect(f"an array of tables ([[{section}]])", raw)
            issues.append(ConfigIssue(section, str(expected)))
            broken.add(section)
            continue
        for index, element in enumerate(raw):
            path = f"{section}[{index}]"
            if isinstance(element, dict):
                name = element.get("name")
                if isinstance(name, str):
                    names[section].append((index, name))
                elif "name" not in element:  # BfdProfile defaults its name; files may not
                    issues.append(ConfigIssue(f"{path}.name", "required key is missing"))
                    broken.add(section)
                    continue
            try:
                items[section].append((index, _CONVERTER.structure(element, cls)))
            except Exception as exc:
                issues += flatten(exc, path)
                if (
                    section == "peers"
                    and isinstance(element, dict)
                    and not {"peer_address", "interface"} & element.keys()
                ):  # optional only for unnumbered peers: still missing here
                    issues.append(ConfigIssue(f"{path}.peer_address", NO_PEER_ADDRESS))
                broken.add(section)
    draft = Draft(
        speaker=speaker,
        bfd_profiles=items["bfd_profiles"],
        peers=items["peers"],
        pools=items["pools"],
        advertisements=items["advertisements"],
        services=items["services"],
        control=control,
        metrics=metrics,
        names=names,
        broken=broken,
    )
    return draft, issues


# ---- entry points --------------------------------------------------------------------------

_TOML_POSITION = re.compile(r"^(.*) \(at line (\d+), column (\d+)\)$")


def build_config(
    data: Mapping[str, Any],
    *,
    base_dir: Path | None = None,
    source: Path | None = None,
    read_text: Callable[[Path], str] | None = None,
) -> Config:
    """Parsed TOML (a dict) -> :class:`Config`.

    Relative paths (``password_file``, ``state_file``) are taken from ``base_dir``.

    Raises:
        ConfigError: listing every error (and the warnings found meanwhile).
    """
    draft, issues = structure(data)
    try:
        config, errors, warnings = build(
            draft,
            base_dir=base_dir or Path.cwd(),
            source=source,
            read_text=read_text or _read_text,
        )
    finally:
        # The draft's objects are replaced by the checked ones (see let_go).
        for part in (draft.services, draft.peers, draft.pools, draft.names):
            let_go(part)
    errors = issues + errors
    if errors or config is None:
        raise ConfigError(errors, warnings)
    return config


def loads_config(text: str, *, base_dir: Path | None = None, source: Path | None = None) -> Config:
    """TOML text -> :class:`Config`.

    Raises:
        ConfigError: a TOML syntax error (path ``line L, column C``) or invalid config.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_POSITION.match(str(exc))
        if match:
            what, line, column = match.groups()
            issue = ConfigIssue(f"line {line}, column {column}", f"TOML syntax error: {what}")
        else:
            issue = ConfigIssue("", f"TOML syntax error: {exc}")
        raise ConfigError([issue]) from None
    try:
        return build_config(data, base_dir=base_dir, source=source)
    finally:
        let_go(data)


def let_go(document: dict[str, Any] | list[Any]) -> None:
    """Free a parsed TOML document one table or array at a time.

    Dropping it at once frees every object in it in one C call that holds the GIL
    throughout: 14-20 ms for 65,536 ``[[services]]`` on a quiet machine, 40-60 ms in
    a reload's worker thread while the loop runs (measured), a stall of BFD's loop.
    Emptied from the top instead, each step frees a few objects and the worker lets
    the loop have the GIL in between. ``document`` is emptied; a table or array that
    something else still holds (the config built from it) is only let go of."""
    stack: list[dict[str, Any] | list[Any]] = [document]
    while stack:
        node = stack.pop()
        while node:
            value = node.popitem()[1] if isinstance(node, dict) else node.pop()
            # 2: ``value`` and the call's argument; more means it is shared.
            if isinstance(value, dict | list) and sys.getrefcount(value) == 2:
                stack.append(value)
            del value
        del node


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, parse and validate the configuration file at ``path``, once.

    Raises:
        ConfigError: the file cannot be read, is not TOML, or is invalid; ``errors``
            lists every problem.
    """
    file = Path(path)
    try:
        text = file.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(
            [ConfigIssue("", f"cannot read the file: {exc.strerror or exc}")]
        ) from None
    except UnicodeDecodeError as exc:
        # Not str(exc): it shows the byte, which may be part of an inline password.
        raise ConfigError([ConfigIssue("", f"not UTF-8 text (at byte {exc.start})")]) from None
    return loads_config(text, base_dir=file.parent.resolve(), source=file)


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")
