"""The state table (RFC 5880 §6.8.6) and the sans-IO rule for protocols/bfd."""

from __future__ import annotations

import ast
import pathlib

import pytest

from protocols.bfd import Diag, State
from protocols.bfd.fsm import TRANSITIONS, Input, received, transition


@pytest.mark.parametrize(
    ("state", "remote", "expected"),
    [
        (State.DOWN, State.ADMIN_DOWN, None),
        (State.DOWN, State.DOWN, State.INIT),
        (State.DOWN, State.INIT, State.UP),
        (State.DOWN, State.UP, None),
        (State.INIT, State.ADMIN_DOWN, State.DOWN),
        (State.INIT, State.DOWN, None),
        (State.INIT, State.INIT, State.UP),
        (State.INIT, State.UP, State.UP),
        (State.UP, State.ADMIN_DOWN, State.DOWN),
        (State.UP, State.DOWN, State.DOWN),
        (State.UP, State.INIT, None),
        (State.UP, State.UP, None),
    ],
)
def test_received_state_table(state: State, remote: State, expected: State | None) -> None:
    step = transition(state, received(remote))
    assert (step.new_state if step else None) == expected
    if step is not None and step.new_state is State.DOWN:
        assert step.diag is Diag.NEIGHBOR_SIGNALED_SESSION_DOWN
        assert step.remote_admin_down == (remote is State.ADMIN_DOWN)


def test_timeouts() -> None:
    for state in (State.INIT, State.UP):
        step = transition(state, Input.DETECTION_TIMEOUT)
        assert step is not None and step.new_state is State.DOWN
        assert step.diag is Diag.CONTROL_DETECTION_TIME_EXPIRED
    for state in (State.ADMIN_DOWN, State.DOWN):
        assert transition(state, Input.DETECTION_TIMEOUT) is None
    step = transition(State.UP, Input.ECHO_FAILURE)
    assert step is not None and step.diag is Diag.ECHO_FUNCTION_FAILED
    assert transition(State.INIT, Input.ECHO_FAILURE) is None


def test_admin_down_never_in_table() -> None:
    assert all(state is not State.ADMIN_DOWN for state, _ in TRANSITIONS)
    assert all(step.new_state is not State.ADMIN_DOWN for step in TRANSITIONS.values())


FORBIDDEN = {
    "asyncio",
    "logging",
    "os",
    "random",
    "socket",
    "subprocess",
    "threading",
    "time",
    "trio",
}
PACKAGE = pathlib.Path(__file__).parents[3] / "protocols" / "bfd"


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_no_io_imports(path: pathlib.Path) -> None:
    tree = ast.parse(path.read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN
    assert "from __future__ import annotations" in path.read_text()
