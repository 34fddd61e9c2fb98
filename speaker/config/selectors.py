"""Kubernetes label selectors, as MetalLB's ``nodeSelectors`` use them.

A :class:`LabelSelector` matches a set of labels when every ``match_labels`` pair is
present and every ``match_expressions`` requirement holds (Kubernetes semantics:
``NotIn`` and ``DoesNotExist`` hold when the key is absent).  An empty selector
matches everything.  A list of selectors matches when ANY of them does, and an empty
list matches every node (:func:`selects`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TypeVar

import attrs

K = TypeVar("K")
V = TypeVar("V")

__all__ = ["OPERATORS", "LabelSelector", "LabelSelectorRequirement", "frozen_map", "selects"]

OPERATORS: tuple[str, ...] = ("In", "NotIn", "Exists", "DoesNotExist")


def frozen_map(value: Mapping[K, V]) -> Mapping[K, V]:
    """A read-only copy, so that frozen config objects stay immutable all the way down."""
    return MappingProxyType(dict(value))


def _labels(value: Mapping[str, str]) -> Mapping[str, str]:
    return frozen_map(value)  # frozen_map's type variables are too general for mypy's attrs


def _operator(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in OPERATORS:
        raise ValueError(f'"{value}" is not an operator (use one of {", ".join(OPERATORS)})')


@attrs.frozen(kw_only=True)
class LabelSelectorRequirement:
    """``{key, operator, values}``: ``In``/``NotIn`` need values, ``Exists``/``DoesNotExist``
    take none."""

    key: str
    operator: str = attrs.field(validator=_operator)
    values: tuple[str, ...] = ()

    def __attrs_post_init__(self) -> None:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs at least one value")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"operator {self.operator} takes no values")

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "In":
            return present and labels[self.key] in self.values
        if self.operator == "NotIn":
            return not present or labels[self.key] not in self.values
        if self.operator == "Exists":
            return present
        return not present  # DoesNotExist


@attrs.frozen(kw_only=True)
class LabelSelector:
    """``match_labels`` AND ``match_expressions``; empty matches everything."""

    match_labels: Mapping[str, str] = attrs.field(factory=dict, converter=_labels)
    match_expressions: tuple[LabelSelectorRequirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels.items()) and all(
            req.matches(labels) for req in self.match_expressions
        )


def selects(selectors: Iterable[LabelSelector], labels: Mapping[str, str]) -> bool:
    """True when ANY selector matches ``labels``; an empty list selects every node."""
    chosen = list(selectors)
    return not chosen or any(s.matches(labels) for s in chosen)
