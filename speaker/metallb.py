"""``speaker import-metallb``: MetalLB manifests -> a speaker TOML configuration.

Reads MetalLB's custom resources from YAML (multi-document files, and ``kind: List``
with ``items``), as MetalLB's and OKD's documentation write them:

========================  ==========================  ================================
MetalLB kind              apiVersion                  TOML
========================  ==========================  ================================
``BFDProfile``            ``metallb.io/v1beta1``      ``[[bfd_profiles]]``
``BGPPeer``               ``metallb.io/v1beta1``,     ``[[peers]]`` (+ ``[speaker]``
                          ``metallb.io/v1beta2``      ``my_asn`` / ``router_id``)
``IPAddressPool``         ``metallb.io/v1beta1``      ``[[pools]]``
``BGPAdvertisement``      ``metallb.io/v1beta1``      ``[[advertisements]]``
``Community``             ``metallb.io/v1beta1``      aliases, resolved in place
========================  ==========================  ================================

Every field that cannot be carried becomes a TOML comment saying why; other kinds
(``L2Advertisement``, ``Service``...) are skipped with a warning and a comment.
Manifests MetalLB itself would reject (wrong namespace, dangling ``bfdProfile``,
timers out of range, ``password`` with ``passwordSecret``...) are errors, one line
each, naming the file, document, kind, name and field.

Finally the TOML is loaded with the speaker's own loader (password files stubbed), so
what is printed is a configuration ``speaker check`` accepts, or the speaker rule it
breaks is reported against the document it came from.

:func:`convert_files` is the API; :func:`main` the command.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import yaml

from speaker.config.durations import parse_duration
from speaker.config.load import ConfigError, build_config
from speaker.config.model import AddressRange, Community, ConfigIssue

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_SECRETS_DIR",
    "ImportOptions",
    "ImportResult",
    "Origin",
    "convert_documents",
    "convert_files",
    "main",
    "toml_string",
]

DEFAULT_NAMESPACE = "metallb-system"
DEFAULT_SECRETS_DIR = "/etc/speaker/secrets"

EXIT_OK = 0
EXIT_ERRORS = 2

MAX_U32 = 0xFFFFFFFF

#: The kinds converted, and the apiVersions MetalLB serves for each.
API_VERSIONS: dict[str, tuple[str, ...]] = {
    "BFDProfile": ("metallb.io/v1beta1",),
    "BGPPeer": ("metallb.io/v1beta1", "metallb.io/v1beta2"),
    "IPAddressPool": ("metallb.io/v1beta1",),
    "BGPAdvertisement": ("metallb.io/v1beta1",),
    "Community": ("metallb.io/v1beta1",),
}

#: Other MetalLB kinds: why they are skipped.
SKIPPED_METALLB_KINDS: dict[str, str] = {
    "L2Advertisement": "L2 mode (ARP/NDP) is not supported; the speaker announces over BGP only",
    "AddressPool": (
        "the legacy AddressPool was removed in MetalLB 0.14; convert it to an IPAddressPool"
        " and a BGPAdvertisement first"
    ),
    "ServiceL2Status": "status only",
    "ServiceBGPStatus": "status only",
    "ConfigurationState": "status only",
}

BFD_INTERVAL = (10, 60000)

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_COMMUNITY_LITERAL = re.compile(r"^(\d+:\d+|large:\d+:\d+:\d+)$")


# ---- TOML text ----------------------------------------------------------------------------


def toml_string(text: str) -> str:
    """A TOML basic string: JSON's escaping (``\\"``, ``\\\\``, ``\\n``, ``\\u001b``), which
    TOML accepts, plus DEL, which JSON leaves raw and TOML forbids."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else toml_string(key)


def toml_value(value: object) -> str:
    """A TOML value (inline tables for mappings) for str, bool, int, list and dict."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        body = ", ".join(f"{toml_key(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{ " + body + " }"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _comment_text(text: str) -> str:
    """Comments hold no control characters (TOML) and stay on one line."""
    return "".join(c if (c >= " " and c != "\x7f") or c == "\t" else " " for c in text)


def _show(value: object) -> str:
    """A value from the manifest, compactly, for a comment or a message."""
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except ValueError:  # pragma: no cover - circular YAML anchors
        return repr(value)


# ---- where things come from ---------------------------------------------------------------


@attrs.frozen
class Origin:
    """A document in a file (``item`` for the elements of a ``kind: List``), 1-based."""

    file: str
    document: int
    item: int | None = None
    kind: str = ""
    name: str = ""

    def where(self) -> str:
        text = f"document {self.document}"
        if self.item is not None:
            text += f" item {self.item}"
        return text

    def __str__(self) -> str:
        what = f'{self.kind} "{self.name}"' if self.name else self.kind
        return f"{self.file}: {self.where()}" + (f" ({what})" if what else "")


@attrs.frozen
class Manifest:
    """One MetalLB object, as read."""

    origin: Origin
    api_version: str
    kind: str
    name: str
    namespace: str | None
    labels: Mapping[str, str]
    spec: Mapping[str, Any]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]


@attrs.define
class Report:
    """Errors and warnings, each a finished line."""

    errors: list[str] = attrs.field(factory=list)
    warnings: list[str] = attrs.field(factory=list)

    def error(self, origin: Origin | str, field: str | None, message: str) -> None:
        self.errors.append(_line(origin, field, message))

    def warn(self, origin: Origin | str, field: str | None, message: str) -> None:
        self.warnings.append(_line(origin, field, message))


def _line(origin: Origin | str, field: str | None, message: str) -> str:
    return f"{origin}: {field}: {message}" if field else f"{origin}: {message}"


@attrs.frozen(kw_only=True)
class ImportOptions:
    """``announce_all``: set ``announce_all = true`` on every pool (else a commented
    ``[[services]]`` hint). ``namespace``: the one MetalLB reads. ``secrets_dir``: where
    ``passwordSecret`` Secrets are mounted, one directory per Secret. ``interfaces``:
    peer name -> interface, ``""`` for every peer (BFD echo needs it)."""

    announce_all: bool = False
    namespace: str = DEFAULT_NAMESPACE
    secrets_dir: str = DEFAULT_SECRETS_DIR
    interfaces: Mapping[str, str] = attrs.field(factory=dict)

    def interface_for(self, peer: str) -> str | None:
        return self.interfaces.get(peer, self.interfaces.get(""))


@attrs.frozen
class ImportResult:
    """``toml`` is empty when there are ``errors``."""

    toml: str
    errors: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.errors


# ---- reading YAML ---------------------------------------------------------------------------


def read_documents(
    text: str, file: str, report: Report
) -> list[tuple[Origin, Mapping[str, Any]]] | None:
    """Every object of a (multi-document) YAML text, ``kind: List`` flattened."""
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        report.error(file, None, f"{where}YAML error: {problem}")
        return None
    out: list[tuple[Origin, Mapping[str, Any]]] = []
    for number, document in enumerate(documents, start=1):
        origin = Origin(file, number)
        if document is None:
            continue  # an empty document (a stray "---")
        if not isinstance(document, dict):
            report.error(origin, None, "not a Kubernetes object (expected a mapping)")
            continue
        if document.get("kind") == "List" and "items" in document:
            items = document["items"]
            if not isinstance(items, list):
                report.error(origin, "items", "expected a list of objects")
                continue
            for index, item in enumerate(items, start=1):
                item_origin = Origin(file, number, index)
                if not isinstance(item, dict):
                    report.error(item_origin, None, "not a Kubernetes object (expected a mapping)")
                    continue
                out.append((item_origin, item))
            continue
        out.append((origin, document))
    return out


def _manifest(
    origin: Origin,
    document: Mapping[str, Any],
    options: ImportOptions,
    report: Report,
    skipped: list[str],
) -> Manifest | None:
    """A MetalLB object of a converted kind, or None: skipped (a warning, and a line in
    ``skipped``) or invalid (an error)."""
    api_version, kind = document.get("apiVersion"), document.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str) or not kind:
        report.error(origin, None, "not a Kubernetes object (apiVersion and kind are required)")
        return None
    metadata = document.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    name = metadata.get("name")
    origin = attrs.evolve(origin, kind=kind, name=name if isinstance(name, str) else "")
    group = api_version.partition("/")[0] if "/" in api_version else ""
    if kind not in API_VERSIONS:
        if group == "metallb.io":
            why = SKIPPED_METALLB_KINDS.get(kind, "not a kind import-metallb knows")
        else:
            why = "not a MetalLB object"
        report.warn(origin, None, f"skipped: {why}")
        skipped.append(_line(origin, None, f"skipped: {why}"))
        return None
    if api_version not in API_VERSIONS[kind]:
        served = ", ".join(API_VERSIONS[kind])
        report.error(
            origin, "apiVersion", f'unknown apiVersion "{api_version}" for {kind} (use {served})'
        )
        return None
    if not isinstance(name, str) or not name:
        report.error(origin, "metadata.name", "required")
        return None
    namespace = metadata.get("namespace")
    if namespace is None:
        report.warn(
            origin,
            "metadata.namespace",
            f"not set: MetalLB only reads objects in {options.namespace}; apply it there",
        )
    elif namespace != options.namespace:
        report.error(
            origin,
            "metadata.namespace",
            f"{_show(namespace)}: MetalLB only reads {kind} objects in its own namespace"
            f' "{options.namespace}", so MetalLB ignores this one'
            " (use --namespace if MetalLB runs in another one)",
        )
        return None
    labels = metadata.get("labels") or {}
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        report.error(origin, "metadata.labels", "expected a mapping of strings to strings")
        labels = {}
    spec = document.get("spec")
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        report.error(origin, "spec", "expected a mapping")
        return None
    return Manifest(
        origin=origin,
        api_version=api_version,
        kind=kind,
        name=name,
        namespace=namespace if isinstance(namespace, str) else None,
        labels=labels,
        spec=spec,
    )


# ---- typed access to a spec -------------------------------------------------------------------


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({_show(value)})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


class Fields:
    """Typed reads of one manifest's ``spec``; problems go to the report, reads return
    None."""

    def __init__(self, manifest: Manifest, report: Report) -> None:
        self.manifest = manifest
        self.spec = manifest.spec
        self.report = report
        self.failed = False

    def error(self, key: str, message: str) -> None:
        self.failed = True
        self.report.error(self.manifest.origin, key, message)

    def warn(self, key: str, message: str) -> None:
        self.report.warn(self.manifest.origin, key, message)

    def present(self, key: str) -> bool:
        return self.spec.get(key) is not None

    def _typed(self, key: str, check: Callable[[Any], bool], what: str) -> Any:
        value = self.spec.get(key)
        if value is None:
            return None
        if not check(value):
            self.error(f"spec.{key}", f"expected {what}, got {_describe(value)}")
            return None
        return value

    def integer(self, key: str, low: int | None = None, high: int | None = None) -> int | None:
        value: int | None = self._typed(
            key, lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"
        )
        if value is None:
            return None
        if (low is not None and value < low) or (high is not None and value > high):
            self.error(f"spec.{key}", f"{value} is out of range ({low}-{high})")
            return None
        return value

    def boolean(self, key: str) -> bool | None:
        value: bool | None = self._typed(key, lambda v: isinstance(v, bool), "true or false")
        return value

    def string(self, key: str) -> str | None:
        value: str | None = self._typed(key, lambda v: isinstance(v, str), "a string")
        return value

    def strings(self, key: str) -> list[str] | None:
        value: list[str] | None = self._typed(
            key,
            lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
            "a list of strings",
        )
        return value

    def duration(self, key: str) -> tuple[str, timedelta] | None:
        """A Go duration string (``"90s"``): the text as written and its value."""
        text = self._typed(key, lambda v: isinstance(v, str), 'a duration string such as "90s"')
        if text is None:
            return None
        try:
            return text, parse_duration(text)
        except ValueError as exc:
            self.error(f"spec.{key}", str(exc))
            return None

    def address(self, key: str) -> str | None:
        text = self.string(key)
        if text is None:
            return None
        try:
            return str(ipaddress.ip_address(text.strip()))
        except ValueError:
            self.error(f"spec.{key}", f"{_show(text)} is not an IP address")
            return None

    def unknown(self, known: Iterable[str]) -> list[tuple[str, Any]]:
        """Keys of the spec this version of the kind does not have: warned about."""
        known = list(known)
        out = []
        for key, value in self.spec.items():
            if key in known:
                continue
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            self.warn(
                f"spec.{key}",
                f"unknown field for {self.manifest.kind} {self.manifest.version}, ignored"
                f" (Kubernetes would reject or prune it){hint}",
            )
            out.append((str(key), value))
        return out


def _selectors(fields: Fields, key: str) -> list[dict[str, Any]] | None:
    """Kubernetes label selectors (v1beta1 NodeSelector and metav1.LabelSelector have the
    same shape) -> our ``{ match_labels, match_expressions }``."""
    raw = fields.spec.get(key)
    if raw is None:
        return None
    if not isinstance(raw, list):
        fields.error(f"spec.{key}", f"expected a list of selectors, got {_describe(raw)}")
        return None
    out: list[dict[str, Any]] = []
    ok = True
    for index, selector in enumerate(raw):
        path = f"spec.{key}[{index}]"
        if not isinstance(selector, dict):
            fields.error(path, f"expected a selector (a mapping), got {_describe(selector)}")
            ok = False
            continue
        converted: dict[str, Any] = {}
        for extra in selector:
            if extra not in ("matchLabels", "matchExpressions"):
                fields.error(f"{path}.{extra}", "unknown field (use matchLabels, matchExpressions)")
                ok = False
        labels = selector.get("matchLabels")
        if labels is not None:
            if not isinstance(labels, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
            ):
                fields.error(f"{path}.matchLabels", "expected a mapping of strings to strings")
                ok = False
            elif labels:
                converted["match_labels"] = dict(labels)
        expressions = selector.get("matchExpressions")
        if expressions is not None:
            converted_exprs = _expressions(fields, f"{path}.matchExpressions", expressions)
            if converted_exprs is None:
                ok = False
            elif converted_exprs:
                converted["match_expressions"] = converted_exprs
        out.append(converted)
    return out if ok else None


def _expressions(fields: Fields, path: str, raw: object) -> list[dict[str, Any]] | None:
    if not isinstance(raw, list):
        fields.error(path, f"expected a list, got {_describe(raw)}")
        return None
    out: list[dict[str, Any]] = []
    ok = True
    for index, expr in enumerate(raw):
        where = f"{path}[{index}]"
        if not isinstance(expr, dict):
            fields.error(where, f"expected a mapping, got {_describe(expr)}")
            ok = False
            continue
        key, operator, values = expr.get("key"), expr.get("operator"), expr.get("values")
        if not isinstance(key, str) or not key:
            fields.error(f"{where}.key", "required (a string)")
            ok = False
            continue
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            fields.error(
                f"{where}.operator",
                f"{_show(operator)} is not a label selector operator"
                " (In, NotIn, Exists, DoesNotExist)",
            )
            ok = False
            continue
        values = [] if values is None else values
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            fields.error(f"{where}.values", "expected a list of strings")
            ok = False
            continue
        if operator in ("In", "NotIn") and not values:
            fields.error(f"{where}.values", f"operator {operator} needs at least one value")
            ok = False
            continue
        if operator in ("Exists", "DoesNotExist") and values:
            fields.error(f"{where}.values", f"operator {operator} takes no values")
            ok = False
            continue
        item: dict[str, Any] = {"key": key, "operator": operator}
        if values:
            item["values"] = list(values)
        out.append(item)
    return out if ok else None


def _selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    for key, value in selector.get("match_labels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("match_expressions", []):
        key, operator, values = expr["key"], expr["operator"], expr.get("values", [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


# ---- the converted tables ---------------------------------------------------------------------


@attrs.define
class Table:
    """One ``[[section]]`` entry: key/value lines and comments, in order."""

    origin: Origin
    api_version: str
    lines: list[str] = attrs.field(factory=list)
    values: dict[str, Any] = attrs.field(factory=dict)
    #: Left out of the configuration: written as comments only.
    commented: bool = False

    def set(self, key: str, value: object, comment: str | None = None) -> None:
        self.values[key] = value
        line = f"{key} = {toml_value(value)}"
        if comment:
            line += "  # " + _comment_text(comment)
        self.lines.append(line)

    def note(self, text: str) -> None:
        self.lines.append("# " + _comment_text(text))

    def unsupported(self, key: str, why: str, value: object) -> None:
        self.note(f"{key}: {why}; it was {_show(value)}")


@attrs.define
class Peer:
    table: Table
    manifest: Manifest
    my_asn: int | None
    router_id: str | None
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    bfd_profile: str | None
    multihop: bool


class Converter:
    def __init__(self, options: ImportOptions, report: Report) -> None:
        self.options = options
        self.report = report
        self.manifests: dict[str, list[Manifest]] = {kind: [] for kind in API_VERSIONS}
        self.skipped: list[str] = []
        #: Names defined by objects that had errors: references to them are not reported
        #: again (their own error says what to fix).
        self.broken_names: set[tuple[str, str]] = set()

    # -- collection --------------------------------------------------------------------------

    def add(self, origin: Origin, document: Mapping[str, Any]) -> None:
        manifest = _manifest(origin, document, self.options, self.report, self.skipped)
        if manifest is None:
            return
        same = self.manifests[manifest.kind]
        for other in same:
            if other.name == manifest.name:
                self.report.error(
                    manifest.origin,
                    "metadata.name",
                    f'duplicate {manifest.kind} "{manifest.name}" (also {other.origin.file}:'
                    f" {other.origin.where()}); Kubernetes keeps only one of them",
                )
                return
        same.append(manifest)

    # -- BFD profiles ------------------------------------------------------------------------

    BFD_FIELDS: tuple[tuple[str, str, int, int], ...] = (
        ("receiveInterval", "receive_interval", *BFD_INTERVAL),
        ("transmitInterval", "transmit_interval", *BFD_INTERVAL),
        ("detectMultiplier", "detect_multiplier", 2, 255),
        ("echoInterval", "echo_interval", *BFD_INTERVAL),
        ("minimumTtl", "minimum_ttl", 1, 254),
    )

    def bfd_profiles(self) -> tuple[list[Table], dict[str, Mapping[str, Any]]]:
        tables: list[Table] = []
        profiles: dict[str, Mapping[str, Any]] = {}
        for manifest in self.manifests["BFDProfile"]:
            fields = Fields(manifest, self.report)
            table = Table(manifest.origin, manifest.api_version)
            table.set("name", manifest.name)
            for camel, snake, low, high in self.BFD_FIELDS:
                value = fields.integer(camel, low, high)
                if value is not None:
                    table.set(snake, value)
            for camel, snake in (("echoMode", "echo_mode"), ("passiveMode", "passive_mode")):
                flag = fields.boolean(camel)
                if flag is not None:
                    table.set(snake, flag)
            known = [f[0] for f in self.BFD_FIELDS] + ["echoMode", "passiveMode"]
            for key, value in fields.unknown(known):
                table.unsupported(key, "unknown field, ignored", value)
            if fields.failed:
                self.broken_names.add(("BFDProfile", manifest.name))
            else:
                tables.append(table)
                profiles[manifest.name] = table.values
        return tables, profiles

    # -- peers --------------------------------------------------------------------------------

    PEER_FIELDS_V1BETA1 = (
        "myASN",
        "peerASN",
        "peerAddress",
        "sourceAddress",
        "peerPort",
        "holdTime",
        "keepaliveTime",
        "routerID",
        "nodeSelectors",
        "password",
        "bfdProfile",
        "ebgpMultiHop",
    )
    PEER_FIELDS_V1BETA2 = (
        *PEER_FIELDS_V1BETA1,
        "dynamicASN",
        "localASN",
        "interface",
        "connectTime",
        "passwordSecret",
        "enableGracefulRestart",
        "vrf",
        "disableMP",
        "dualStackAddressFamily",
    )

    def peer(self, manifest: Manifest, profiles: Mapping[str, Mapping[str, Any]]) -> Peer | None:
        fields = Fields(manifest, self.report)
        origin = manifest.origin
        v1beta2 = manifest.version == "v1beta2"
        table = Table(origin, manifest.api_version)
        table.set("name", manifest.name)

        my_asn = fields.integer("myASN", 0, MAX_U32)
        if not fields.present("myASN"):
            fields.error("spec.myASN", "required")
        peer_asn = fields.integer("peerASN", 0, MAX_U32)
        dynamic = fields.string("dynamicASN") if v1beta2 else None
        if dynamic is not None and dynamic not in ("internal", "external"):
            fields.error("spec.dynamicASN", f'{_show(dynamic)} is not "internal" or "external"')
            dynamic = None
        if fields.present("peerASN") and dynamic is not None:
            fields.error("spec.dynamicASN", "set either peerASN or dynamicASN, not both")
        elif dynamic == "external":
            fields.error(
                "spec.dynamicASN",
                '"external" is not supported: the speaker needs the peer\'s AS number; set peerASN',
            )
        elif not fields.present("peerASN") and dynamic is None:
            fields.error("spec.peerASN", "required" + (" (or dynamicASN)" if v1beta2 else ""))

        interface = fields.string("interface") if v1beta2 else None
        address_text = fields.address("peerAddress")
        if interface and fields.present("peerAddress"):
            fields.error("spec.interface", "set either peerAddress or interface, not both")
        elif interface:
            fields.error(
                "spec.interface",
                "not supported: BGP unnumbered (peering over an interface without an address);"
                " set peerAddress",
            )
        elif not fields.present("peerAddress"):
            fields.error("spec.peerAddress", "required" + (" (or interface)" if v1beta2 else ""))
        address = ipaddress.ip_address(address_text) if address_text else None
        source = fields.address("sourceAddress")

        port = fields.integer("peerPort", 1 if v1beta2 else 0, 16384)
        hold = fields.duration("holdTime")
        keepalive = fields.duration("keepaliveTime")
        if hold is not None and hold[1] and hold[1] < timedelta(seconds=3):
            fields.error("spec.holdTime", f"{hold[0]} is below 3s (MetalLB: 0 or at least 3s)")
            hold = None
        if hold is not None and keepalive is not None and keepalive[1] > hold[1]:
            fields.error("spec.keepaliveTime", f"{keepalive[0]} is above the holdTime of {hold[0]}")
        connect = fields.duration("connectTime") if v1beta2 else None
        if connect is not None and (
            connect[1] < timedelta(seconds=1)
            or connect[1] > timedelta(seconds=65535)
            or connect[1] % timedelta(seconds=1)
        ):
            fields.error("spec.connectTime", f"{connect[0]} is not 1-65535 whole seconds")
            connect = None

        router_id = fields.string("routerID")
        if router_id:
            try:
                router_id = str(ipaddress.IPv4Address(router_id.strip()))
            except ValueError:
                fields.error("spec.routerID", f"{_show(router_id)} is not an IPv4 address")
                router_id = None
        router_id = router_id or None

        password = fields.string("password")
        secret = fields.spec.get("passwordSecret") if v1beta2 else None
        secret_name: str | None = None
        if secret is not None:
            secret_name = self._secret(fields, secret)
        if password and secret is not None:
            fields.error("spec.passwordSecret", "set either password or passwordSecret, not both")

        profile_name = fields.string("bfdProfile")
        if (
            profile_name
            and profile_name not in profiles
            and ("BFDProfile", profile_name) not in self.broken_names
        ):
            known = ", ".join(f'"{n}"' for n in profiles) or "none"
            fields.error(
                "spec.bfdProfile",
                f'no BFDProfile named "{profile_name}" (defined: {known}); MetalLB does not'
                " configure the peer until it exists",
            )
        multihop = fields.boolean("ebgpMultiHop")
        selectors = _selectors(fields, "nodeSelectors")
        graceful = fields.boolean("enableGracefulRestart") if v1beta2 else None
        vrf = fields.string("vrf") if v1beta2 else None
        disable_mp = fields.boolean("disableMP") if v1beta2 else None
        dual_stack = fields.boolean("dualStackAddressFamily") if v1beta2 else None
        local_asn = fields.integer("localASN", 0, MAX_U32) if v1beta2 else None

        unknown = fields.unknown(self.PEER_FIELDS_V1BETA2 if v1beta2 else self.PEER_FIELDS_V1BETA1)

        profile = profiles.get(profile_name) if profile_name else None
        echo_interface: str | None = None
        if (
            profile is not None
            and profile.get("echo_mode")
            and isinstance(address, ipaddress.IPv4Address)
            and not multihop
        ):
            echo_interface = self.options.interface_for(manifest.name)
            if echo_interface is None:
                fields.error(
                    "spec.bfdProfile",
                    f'profile "{profile_name}" has echoMode; the speaker sends echo packets on'
                    " the interface towards the peer and needs its name: pass --interface"
                    f" IFNAME (or --interface {manifest.name}=IFNAME)",
                )
        if fields.failed or address is None:
            return None

        # The table, in the order of docs/configuration.md.
        table.set("peer_address", str(address))
        if peer_asn is not None:
            table.set("peer_asn", peer_asn)
        else:  # dynamicASN: internal
            assert my_asn is not None
            table.set("peer_asn", my_asn, 'dynamicASN "internal": iBGP, the peer is in my_asn')
        if port and port != 179:  # v1beta1's 0 means MetalLB's default, 179
            table.set("peer_port", port)
        if source:
            table.set("source_address", source)
        if echo_interface:
            table.set("interface", echo_interface, "BFD echo is sent on this interface")
        if profile_name:
            table.set("bfd_profile", profile_name)
        if hold is not None:
            table.set("hold_time", hold[0])
        if keepalive is not None:
            table.set("keepalive_time", keepalive[0])
        if connect is not None:
            # MetalLB's connectTime is FRR's "timers connect": the wait between attempts.
            table.set("connect_retry_max", connect[0],
                      "connectTime: retries start after 1s and double up to this")  # fmt: skip
        if password:
            table.set("password", password)
            table.note("password: consider password_file, so the key is not in this file")
        if secret is not None and secret_name is not None:
            path = f"{self.options.secrets_dir.rstrip('/')}/{secret_name}/password"
            table.note(
                f'passwordSecret "{secret_name}" (type kubernetes.io/basic-auth): mount the'
                f' Secret so that its key "password" is this file (in Kubernetes, a secret'
                f" volume at {self.options.secrets_dir.rstrip('/')}/{secret_name})"
            )
            table.set("password_file", path)
        if multihop:
            table.set("ebgp_multihop", True)
        if selectors:
            table.note(
                "node_selectors match [speaker] labels, not Kubernetes node labels: set the"
                " labels of each node there"
            )
            table.set("node_selectors", selectors)
        if graceful:
            table.unsupported(
                "enableGracefulRestart", "not supported yet (no BGP graceful restart)", graceful
            )
        if vrf:
            table.unsupported("vrf", "not supported (no VRF support in speaker)", vrf)
        if local_asn is not None:
            table.unsupported(
                "localASN", "not supported (FRR's local-as; the speaker uses my_asn)", local_asn
            )
            fields.warn(
                "spec.localASN",
                "not supported: the session uses my_asn; check what AS the router expects",
            )
        if dynamic == "internal":
            table.note('dynamicASN: not supported; "internal" is written as peer_asn = my_asn')
        if disable_mp:
            table.unsupported(
                "disableMP",
                "not supported (deprecated in MetalLB; the speaker sends the other family over"
                " multiprotocol BGP on the same session)",
                disable_mp,
            )
        if dual_stack:
            table.unsupported(
                "dualStackAddressFamily",
                "not needed (a session carries both families over multiprotocol BGP when pools"
                " of both are advertised to it)",
                dual_stack,
            )
        for key, value in unknown:
            table.unsupported(key, "unknown field, ignored", value)
        return Peer(
            table=table,
            manifest=manifest,
            my_asn=my_asn,
            router_id=router_id,
            address=address,
            bfd_profile=profile_name,
            multihop=bool(multihop),
        )

    def _secret(self, fields: Fields, secret: object) -> str | None:
        if not isinstance(secret, dict):
            fields.error("spec.passwordSecret", f"expected a mapping, got {_describe(secret)}")
            return None
        name, namespace = secret.get("name"), secret.get("namespace")
        if not isinstance(name, str) or not name:
            fields.error("spec.passwordSecret.name", "required (a string)")
            return None
        if namespace not in (None, "", self.options.namespace):
            fields.error(
                "spec.passwordSecret.namespace",
                f'{_show(namespace)}: MetalLB only reads Secrets in "{self.options.namespace}"',
            )
            return None
        return name

    # -- pools ----------------------------------------------------------------------------------

    def pool(self, manifest: Manifest) -> Table | None:
        fields = Fields(manifest, self.report)
        table = Table(manifest.origin, manifest.api_version)
        table.set("name", manifest.name)
        addresses = fields.strings("addresses")
        if not fields.present("addresses") or addresses == []:
            fields.error("spec.addresses", "required (at least one CIDR or range)")
        converted: list[str] = []
        notes: list[str] = []
        for index, text in enumerate(addresses or []):
            entry, note = self._address(fields, f"spec.addresses[{index}]", text)
            if entry is not None:
                converted.append(entry)
            if note:
                notes.append(note)
        auto = fields.boolean("autoAssign")
        buggy = fields.boolean("avoidBuggyIPs")
        allocation = fields.spec.get("serviceAllocation")
        unknown = fields.unknown(("addresses", "autoAssign", "avoidBuggyIPs", "serviceAllocation"))
        if fields.failed:
            return None
        for note in notes:
            table.note(note)
        table.set("addresses", converted)
        if auto is False:
            table.set("auto_assign", False)
        if self.options.announce_all:
            table.set("announce_all", True, "--announce-all: every address, whatever the services")
        if buggy:
            table.unsupported(
                "avoidBuggyIPs",
                "not supported (the speaker may hand out addresses ending in .0 and .255:"
                " leave them out of addresses, or give services fixed addresses)",
                buggy,
            )
        if allocation is not None:
            table.unsupported(
                "serviceAllocation",
                "not supported (services are declared in [[services]] with pool or address;"
                " there are no namespaces, selectors or priorities)",
                allocation,
            )
        for key, value in unknown:
            table.unsupported(key, "unknown field, ignored", value)
        return table

    def _address(self, fields: Fields, path: str, text: str) -> tuple[str | None, str | None]:
        """A MetalLB pool entry -> ours (and a note when it had to be rewritten)."""
        body = text.strip()
        if "-" in body:
            first, _, last = (part.strip() for part in body.partition("-"))
            body = f"{first}-{last}"
        elif "/" in body:
            try:
                net = ipaddress.ip_network(body, strict=False)
            except ValueError:
                fields.error(path, f"{_show(text)} is not a CIDR")
                return None, None
            if str(net) != body:  # Go's net.ParseCIDR masks host bits; we reject them
                try:
                    AddressRange.parse(body)
                except ValueError:
                    note = f"addresses: {_show(text)} had host bits set; MetalLB used {net}"
                    return str(net), note
        try:
            AddressRange.parse(body)
        except ValueError as exc:
            fields.error(path, str(exc))
            return None, None
        return body, None

    # -- communities and advertisements ----------------------------------------------------

    def communities(self) -> dict[str, str]:
        aliases: dict[str, str] = {}
        where: dict[str, Origin] = {}
        for manifest in self.manifests["Community"]:
            fields = Fields(manifest, self.report)
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
                if not isinstance(value, str) or not _COMMUNITY_LITERAL.match(value.strip()):
                    self.broken_names.add(("Community", name))
                    fields.error(
                        f"{path}.value",
                        f'{_show(value)} is not a community ("65000:100" or "large:1:2:3")',
                    )
                    continue
                try:
                    Community.parse(value)
                except ValueError as exc:
                    self.broken_names.add(("Community", name))
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

    ADVERTISEMENT_FIELDS = (
        "aggregationLength",
        "aggregationLengthV6",
        "localPref",
        "communities",
        "ipAddressPools",
        "ipAddressPoolSelectors",
        "nodeSelectors",
        "peers",
        "serviceSelectors",
    )

    def advertisement(
        self,
        manifest: Manifest,
        pools: Mapping[str, Manifest],
        peers: Iterable[str],
        aliases: Mapping[str, str],
    ) -> Table | None:
        fields = Fields(manifest, self.report)
        table = Table(manifest.origin, manifest.api_version)
        table.set("name", manifest.name)
        length = fields.integer("aggregationLength", 1, 32)
        length_v6 = fields.integer("aggregationLengthV6", 0, 128)
        local_pref = fields.integer("localPref", 0, MAX_U32)
        communities = fields.strings("communities")
        pool_names = fields.strings("ipAddressPools")
        pool_selectors = _selectors(fields, "ipAddressPoolSelectors")
        node_selectors = fields.spec.get("nodeSelectors")
        peer_names = fields.strings("peers")
        service_selectors = fields.spec.get("serviceSelectors")
        unknown = fields.unknown(self.ADVERTISEMENT_FIELDS)

        if service_selectors and (length not in (None, 32) or length_v6 not in (None, 128)):
            fields.error(
                "spec.serviceSelectors",
                "MetalLB rejects serviceSelectors together with an aggregation length other"
                " than 32 / 128",
            )
        for index, name in enumerate(pool_names or []):
            if name not in pools:
                known = ", ".join(f'"{n}"' for n in pools) or "none"
                fields.error(
                    f"spec.ipAddressPools[{index}]",
                    f'no IPAddressPool named "{name}" (defined: {known})',
                )
        known_peers = list(peers)
        for index, name in enumerate(peer_names or []):
            if name not in known_peers:
                known = ", ".join(f'"{n}"' for n in known_peers) or "none"
                fields.error(
                    f"spec.peers[{index}]", f'no BGPPeer named "{name}" (defined: {known})'
                )
        resolved: list[str] = []
        used_aliases: list[str] = []
        for index, text in enumerate(communities or []):
            body = text.strip()
            if body in aliases:
                resolved.append(aliases[body])
                used_aliases.append(f"{body} = {aliases[body]}")
            elif _COMMUNITY_LITERAL.match(body):
                try:
                    Community.parse(body)
                except ValueError as exc:
                    fields.error(f"spec.communities[{index}]", str(exc))
                    continue
                resolved.append(body)
            elif ("Community", body) in self.broken_names:
                fields.failed = True  # its Community object's error says what to fix
            else:
                fields.error(
                    f"spec.communities[{index}]",
                    f'{_show(text)} is neither a community ("65000:100", "large:1:2:3") nor the'
                    " name of one in a Community object",
                )
        if fields.failed:
            return None

        selected: list[str] = list(dict.fromkeys(pool_names or []))
        if pool_selectors is not None:
            matched = [
                name
                for name, pool in pools.items()
                if any(_selector_matches(s, pool.labels) for s in pool_selectors)
            ]
            selected += [name for name in matched if name not in selected]
            table.note(
                "ipAddressPoolSelectors: resolved against the IPAddressPools' labels: "
                + (", ".join(matched) if matched else "no pool matches")
            )
            if not selected:
                self.report.warn(
                    manifest.origin,
                    "spec.ipAddressPoolSelectors",
                    "selects no IPAddressPool, so the advertisement announces nothing; it is"
                    " left out (commented)",
                )
                table.commented = True
                table.note("left out: it selects no pool, and an empty pools list means all")
                return table
        if selected:
            table.set("pools", selected)
        if length is not None:
            table.set("aggregation_length", length)
        if length_v6 is not None:
            table.set("aggregation_length_v6", length_v6)
        if local_pref is not None:
            table.set("local_pref", local_pref, "sent to iBGP peers only, as in MetalLB")
        if resolved:
            if used_aliases:
                table.note("Community aliases: " + ", ".join(used_aliases))
            table.set("communities", resolved)
        if peer_names:
            table.set("peers", list(dict.fromkeys(peer_names)))
        if node_selectors:
            table.unsupported(
                "nodeSelectors",
                "not supported (every node running this configuration announces; deploy it"
                " only on the nodes that should, or select the peers by node with"
                " node_selectors)",
                node_selectors,
            )
        if service_selectors:
            table.unsupported(
                "serviceSelectors",
                "services are declared in [[services]] instead (an advertisement selects"
                " pools, not services)",
                service_selectors,
            )
        for key, value in unknown:
            table.unsupported(key, "unknown field, ignored", value)
        return table

    # -- assembly -------------------------------------------------------------------------------

    def convert(self, sources: Sequence[str]) -> tuple[str, dict[str, list[Origin]]]:
        """The TOML text, and the origin of each array element (for mapping errors)."""
        bfd_tables, profiles = self.bfd_profiles()
        peers = [
            peer
            for manifest in self.manifests["BGPPeer"]
            if (peer := self.peer(manifest, profiles)) is not None
        ]
        pool_manifests = {m.name: m for m in self.manifests["IPAddressPool"]}
        pools = [t for m in self.manifests["IPAddressPool"] if (t := self.pool(m)) is not None]
        aliases = self.communities()
        peer_names = [m.name for m in self.manifests["BGPPeer"]]
        advertisements = [
            t
            for m in self.manifests["BGPAdvertisement"]
            if (t := self.advertisement(m, pool_manifests, peer_names, aliases)) is not None
        ]
        if not self.manifests["BGPAdvertisement"] and self.manifests["IPAddressPool"]:
            self.report.warn(
                sources[0] if sources else "input",
                None,
                "no BGPAdvertisement: nothing is announced (as in MetalLB)",
            )

        out: list[str] = [
            "# Generated by: speaker import-metallb " + _comment_text(" ".join(sources)),
            "# Review every comment below: they mark what MetalLB had and the speaker does not.",
        ]
        out += ["# " + _comment_text(line) for line in self.skipped]
        out.append("")
        out += self.speaker_table(peers)

        origins: dict[str, list[Origin]] = {}
        sections: list[tuple[str, list[Table]]] = [
            ("bfd_profiles", bfd_tables),
            ("peers", [p.table for p in peers]),
            ("pools", pools),
            ("advertisements", advertisements),
        ]
        for section, tables in sections:
            origins[section] = []
            for table in tables:
                out.append("")
                source = _comment_text(f"# {table.origin} {table.api_version}")
                if table.commented:
                    out += [source, f"# [[{section}]]"]
                    out += [line if line.startswith("#") else "# " + line for line in table.lines]
                    continue
                out += [f"[[{section}]]", source, *table.lines]
                origins[section].append(table.origin)
        out.append("")
        out += self.services_hint(pools)
        return "\n".join(out) + "\n", origins

    def speaker_table(self, peers: list[Peer]) -> list[str]:
        lines = ["[speaker]"]
        asns = {p.my_asn for p in peers}
        if len(asns) == 1 and None not in asns:
            asn = next(iter(asns))
            lines.append(f"my_asn = {asn}  # every BGPPeer's myASN")
        else:
            for peer in peers:
                if peer.my_asn is not None:
                    # insert right after the name: keep "name" first
                    peer.table.lines.insert(1, f"my_asn = {peer.my_asn}")
        ids = {p.router_id for p in peers if p.router_id}
        if len(ids) == 1:
            router_id = next(iter(ids))
            without = [p.manifest.name for p in peers if not p.router_id]
            comment = "every BGPPeer's routerID"
            if without:
                comment = "the routerID of the BGPPeers that set one"
            lines.append(f"router_id = {toml_string(router_id)}  # {comment}")
        elif ids:
            lines.append(
                "# router_id: the BGPPeers disagree (the speaker has one router ID per node;"
                " set it in each node's configuration):"
            )
            lines += [
                "#   " + _comment_text(f"{p.manifest.name}: routerID {p.router_id}")
                for p in peers
                if p.router_id
            ]
        keys = sorted(
            {
                key
                for peer in peers
                for selector in peer.table.values.get("node_selectors", [])
                for key in [
                    *selector.get("match_labels", {}),
                    *(e["key"] for e in selector.get("match_expressions", [])),
                ]
            }
        )
        if keys:
            lines.append(
                "# labels = { ... }  # this node's labels, which the peers' node_selectors"
                " match (MetalLB matched the Kubernetes node's labels); keys used: "
                + _comment_text(", ".join(keys))
            )
        return lines

    def services_hint(self, pools: list[Table]) -> list[str]:
        if self.options.announce_all:
            return [
                "# Pools have announce_all = true (--announce-all): every address is announced",
                "# whatever the services.  To announce only healthy services instead, drop it",
                "# and declare them in [[services]].",
            ]
        pool = pools[0].values["name"] if pools else "POOL"
        return [
            "# MetalLB took the addresses to announce from Kubernetes Services (type",
            "# LoadBalancer).  The speaker announces the services declared here instead: add",
            "# one [[services]] per address (see docs/configuration.md), for example",
            "#",
            "# [[services]]",
            '# name = "www"',
            f"# pool = {toml_string(_comment_text(pool))}  # or a fixed address = ...",
            '# health = { tcp = "127.0.0.1:443" }',
            "#",
            "# or run import-metallb --announce-all to announce every address of every pool.",
        ]


def _stub_password(path: Path) -> str:
    return "placeholder"


def _check(text: str, origins: Mapping[str, list[Origin]], report: Report, label: str) -> None:
    """Load the TOML with the speaker's loader; report what fails at its origin."""
    try:
        data = tomllib.loads(text)
        config = build_config(data, base_dir=Path("/"), read_text=_stub_password)
    except tomllib.TOMLDecodeError as exc:  # pragma: no cover - a bug of this module
        report.error(label, None, f"internal error: the generated TOML does not parse: {exc}")
        return
    except ConfigError as exc:
        for issue in exc.errors:
            report.error(_origin_of(issue, origins, label), None, f"speaker rule: {issue}")
        return
    for issue in config.warnings:
        report.warn(_origin_of(issue, origins, label), None, f"speaker: {issue}")


_PATH = re.compile(r"^([a-z_]+)\[(\d+)\]")


def _origin_of(issue: ConfigIssue, origins: Mapping[str, list[Origin]], label: str) -> str:
    match = _PATH.match(issue.path)
    if match:
        section, index = match.group(1), int(match.group(2))
        items = origins.get(section, [])
        if index < len(items):
            return str(items[index])
    return label


# ---- API ----------------------------------------------------------------------------------------


def convert_documents(
    documents: Iterable[tuple[Origin, Mapping[str, Any]]],
    options: ImportOptions | None = None,
    *,
    sources: Sequence[str] = (),
    report: Report | None = None,
) -> ImportResult:
    """Objects (with their origins) -> the TOML configuration, errors and warnings."""
    options = options or ImportOptions()
    report = report or Report()
    converter = Converter(options, report)
    for origin, document in documents:
        converter.add(origin, document)
    text, origins = converter.convert(sources)
    if not report.errors:
        _check(text, origins, report, ", ".join(sources) or "input")
    if report.errors:
        return ImportResult("", tuple(report.errors), tuple(report.warnings))
    return ImportResult(text, (), tuple(report.warnings))


def convert_files(
    files: Sequence[str | Path], options: ImportOptions | None = None
) -> ImportResult:
    """Read MetalLB YAML files and convert them (see :func:`convert_documents`)."""
    report = Report()
    documents: list[tuple[Origin, Mapping[str, Any]]] = []
    names = [str(f) for f in files]
    for file in names:
        try:
            text = Path(file).read_bytes().decode("utf-8")
        except OSError as exc:
            report.error(file, None, f"cannot read the file: {exc.strerror or exc}")
            continue
        except UnicodeDecodeError as exc:
            report.error(file, None, f"not UTF-8 text: {exc}")
            continue
        read = read_documents(text, file, report)
        if read is not None:
            documents += read
    return convert_documents(documents, options, sources=names, report=report)


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
