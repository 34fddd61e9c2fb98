"""Shared fixtures. Lab fixtures skip outside CI when root or a daemon is missing,
and fail under CI=true: CI must really run the interop tests."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator

import pytest

from tests.helpers import IN_CI, Require

KEEP = os.environ.get("LAB_KEEP") == "1"


def _require(*needs: str) -> None:
    from lab.requirements import missing

    reason = missing(*needs)
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def lab_require() -> Require:
    """``lab_require("frr", "gobgp", "bird", "capture")``: skip or (in CI) fail."""
    return _require


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[object]:
    """The default lab (spk, rtr1, rtr2); see lab.netns.default_lab.

    With LAB_KEEP=1 a failed test leaves its lab up and prints how to enter it.
    """
    _require()
    from lab import default_lab

    the_lab = default_lab()
    try:
        yield the_lab
    finally:
        failed = getattr(request.node, "rep_call", None)
        if KEEP and failed is not None and failed.failed:
            the_lab.detach()
            print("\nLAB_KEEP=1: lab left up for inspection\n" + the_lab.describe())
            print("remove it with: .venv/bin/python -m lab sweep")
        else:
            the_lab.close()


@pytest.fixture(scope="session", autouse=True)
def _no_lab_leftovers() -> Iterator[None]:
    """At session end nothing the lab started may survive: no namespace, no process."""
    yield
    if os.geteuid() != 0:
        return
    from lab.netns import own_namespaces
    from lab.proc import alive_processes

    namespaces, procs = own_namespaces(), alive_processes()
    if KEEP and namespaces:
        return  # a failed test's lab was kept on purpose
    assert not namespaces and not procs, (
        f"lab leftovers at session end: namespaces {namespaces}, processes {procs}"
    )
