from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from speaker.config.selectors import LabelSelector, LabelSelectorRequirement, selects

LABELS = {"rack": "r1", "role": "lb", "zone": "a"}


def req(key: str, operator: str, *values: str) -> LabelSelectorRequirement:
    return LabelSelectorRequirement(key=key, operator=operator, values=values)


@pytest.mark.parametrize(
    ("requirement", "expected"),
    [
        (req("rack", "In", "r1", "r2"), True),
        (req("rack", "In", "r2"), False),
        (req("missing", "In", "x"), False),
        (req("rack", "NotIn", "r2"), True),
        (req("rack", "NotIn", "r1"), False),
        (req("missing", "NotIn", "x"), True),  # Kubernetes: NotIn holds for an absent key
        (req("rack", "Exists"), True),
        (req("missing", "Exists"), False),
        (req("rack", "DoesNotExist"), False),
        (req("missing", "DoesNotExist"), True),
    ],
)
def test_requirement(requirement: LabelSelectorRequirement, expected: bool) -> None:
    assert requirement.matches(LABELS) is expected


def test_match_labels_and_expressions_are_anded() -> None:
    sel = LabelSelector(match_labels={"rack": "r1"}, match_expressions=(req("zone", "In", "b"),))
    assert not sel.matches(LABELS)
    sel = LabelSelector(match_labels={"rack": "r1"}, match_expressions=(req("zone", "In", "a"),))
    assert sel.matches(LABELS)


def test_empty_selector_matches_everything() -> None:
    assert LabelSelector().matches({})
    assert LabelSelector().matches(LABELS)


def test_list_of_selectors_is_any_and_empty_list_is_all() -> None:
    no = LabelSelector(match_labels={"rack": "r9"})
    yes = LabelSelector(match_labels={"role": "lb"})
    assert selects([], LABELS)
    assert not selects([no], LABELS)
    assert selects([no, yes], LABELS)


def test_operator_rules() -> None:
    with pytest.raises(ValueError, match="operator In needs at least one value"):
        req("rack", "In")
    with pytest.raises(ValueError, match="operator Exists takes no values"):
        req("rack", "Exists", "x")


def test_match_labels_are_read_only() -> None:
    sel = LabelSelector(match_labels={"rack": "r1"})
    with pytest.raises(TypeError):
        sel.match_labels["rack"] = "r2"  # type: ignore[index]  # the point: read-only


label_maps = st.dictionaries(st.sampled_from("abcd"), st.sampled_from("xyz"), max_size=4)


@given(label_maps, st.sampled_from("abcd"), st.lists(st.sampled_from("xyz"), min_size=1))
def test_in_and_notin_are_complements(labels: dict[str, str], key: str, values: list[str]) -> None:
    assert req(key, "In", *values).matches(labels) != req(key, "NotIn", *values).matches(labels)


@given(label_maps, st.sampled_from("abcd"))
def test_exists_and_doesnotexist_are_complements(labels: dict[str, str], key: str) -> None:
    assert req(key, "Exists").matches(labels) != req(key, "DoesNotExist").matches(labels)


@given(label_maps)
def test_own_labels_select(labels: dict[str, str]) -> None:
    assert LabelSelector(match_labels=labels).matches(labels)
