"""Where things come from, what went wrong, and what the caller asked for."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_SECRETS_DIR",
    "MAX_U32",
    "Context",
    "ImportOptions",
    "ImportResult",
    "Origin",
    "Report",
    "line",
]

DEFAULT_NAMESPACE = "metallb-system"
DEFAULT_SECRETS_DIR = "/etc/speaker/secrets"

MAX_U32 = 0xFFFFFFFF


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


@attrs.define
class Report:
    """Errors and warnings, each a finished line."""

    errors: list[str] = attrs.field(factory=list)
    warnings: list[str] = attrs.field(factory=list)

    def error(self, origin: Origin | str, field: str | None, message: str) -> None:
        self.errors.append(line(origin, field, message))

    def warn(self, origin: Origin | str, field: str | None, message: str) -> None:
        self.warnings.append(line(origin, field, message))


def line(origin: Origin | str, field: str | None, message: str) -> str:
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


@attrs.define
class Context:
    """What every kind's conversion shares: the options, the report, and the names
    defined by objects that had errors (references to them are not reported again:
    their own error says what to fix)."""

    options: ImportOptions
    report: Report
    broken_names: set[tuple[str, str]] = attrs.field(factory=set)
