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
from speaker.config.load import structure_value
from speaker.config.selectors import LabelSelector
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


#: Kubernetes' selector keys -> the configuration's (``key``, ``operator``, ``values``
#: are spelled alike).
_SELECTOR_KEYS = {"matchLabels": "match_labels", "matchExpressions": "match_expressions"}
#: The loader's words for TOML types -> YAML's.
_YAML_WORDS = {"a table": "a mapping", "an array": "a list"}


def _kubernetes_words(text: str) -> str:
    for ours, theirs in _SELECTOR_KEYS.items():
        text = text.replace(theirs, ours)
    for toml, yaml in _YAML_WORDS.items():
        text = text.replace(toml, yaml)
    return text


def selectors(fields: Fields, key: str) -> list[LabelSelector] | None:
    """Kubernetes label selectors (v1beta1 NodeSelector and metav1.LabelSelector have the
    same shape) -> the configuration's :class:`LabelSelector`, read by the configuration
    loader itself (its types, validators and paths), so that import-metallb accepts
    what ``node_selectors`` accepts; problems are reported at ``spec.KEY...`` in
    Kubernetes' words (``matchExpressions``, "a mapping")."""
    raw = fields.spec.get(key)
    if raw is None:
        return None
    renamed = raw
    if isinstance(raw, list):  # a null field is an unset one (Kubernetes)
        renamed = [
            {_SELECTOR_KEYS.get(k, k): v for k, v in item.items() if v is not None}
            if isinstance(item, dict)
            else item
            for item in raw
        ]
    value, issues = structure_value(renamed, tuple[LabelSelector, ...], f"spec.{key}")
    for issue in issues:
        fields.error(_kubernetes_words(issue.path), _kubernetes_words(issue.message))
    return None if issues else list(value)
