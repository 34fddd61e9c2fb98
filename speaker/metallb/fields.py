"""Typed reads of one manifest's ``spec``: each problem reported at its field.

Label selectors are read into the configuration's own
:class:`~speaker.config.selectors.LabelSelector` (its rules, its matching), so what
import-metallb accepts and matches is what the speaker does.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from speaker.config.describe import YAML, describe, show
from speaker.config.durations import parse_duration
from speaker.config.selectors import OPERATORS, LabelSelector, LabelSelectorRequirement
from speaker.metallb.manifests import Manifest
from speaker.metallb.report import Report

__all__ = ["Fields", "selectors"]


#: Keys of a spec whose value is a secret (MetalLB BGPPeer ``password``).
SECRET_KEYS = frozenset({"password"})


def _describe(value: object, *, secret: bool = False) -> str:
    return describe(value, YAML, secret=secret)


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
            # A password's value never appears in a message, whatever its type.
            shown = _describe(value, secret=key in SECRET_KEYS)
            self.error(f"spec.{key}", f"expected {what}, got {shown}")
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
            self.error(f"spec.{key}", f"{show(text)} is not an IP address")
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


def selectors(fields: Fields, key: str) -> list[LabelSelector] | None:
    """Kubernetes label selectors (v1beta1 NodeSelector and metav1.LabelSelector have the
    same shape) -> the configuration's :class:`LabelSelector`."""
    raw = fields.spec.get(key)
    if raw is None:
        return None
    if not isinstance(raw, list):
        fields.error(f"spec.{key}", f"expected a list of selectors, got {_describe(raw)}")
        return None
    out: list[LabelSelector] = []
    ok = True
    for index, selector in enumerate(raw):
        path = f"spec.{key}[{index}]"
        if not isinstance(selector, dict):
            fields.error(path, f"expected a selector (a mapping), got {_describe(selector)}")
            ok = False
            continue
        for extra in selector:
            if extra not in ("matchLabels", "matchExpressions"):
                fields.error(f"{path}.{extra}", "unknown field (use matchLabels, matchExpressions)")
                ok = False
        match_labels: dict[str, str] = {}
        labels = selector.get("matchLabels")
        if labels is not None:
            if not isinstance(labels, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
            ):
                fields.error(f"{path}.matchLabels", "expected a mapping of strings to strings")
                ok = False
            else:
                match_labels = dict(labels)
        requirements: list[LabelSelectorRequirement] = []
        expressions = selector.get("matchExpressions")
        if expressions is not None:
            read = _requirements(fields, f"{path}.matchExpressions", expressions)
            if read is None:
                ok = False
            else:
                requirements = read
        out.append(LabelSelector(match_labels=match_labels, match_expressions=tuple(requirements)))
    return out if ok else None


def _requirements(fields: Fields, path: str, raw: object) -> list[LabelSelectorRequirement] | None:
    if not isinstance(raw, list):
        fields.error(path, f"expected a list, got {_describe(raw)}")
        return None
    out: list[LabelSelectorRequirement] = []
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
        if operator not in OPERATORS:
            fields.error(
                f"{where}.operator",
                f"{show(operator)} is not a label selector operator ({', '.join(OPERATORS)})",
            )
            ok = False
            continue
        values = [] if values is None else values
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            fields.error(f"{where}.values", "expected a list of strings")
            ok = False
            continue
        try:  # the speaker's rules: In/NotIn need values, Exists/DoesNotExist take none
            out.append(LabelSelectorRequirement(key=key, operator=operator, values=tuple(values)))
        except ValueError as exc:
            fields.error(f"{where}.values", str(exc))
            ok = False
    return out if ok else None
