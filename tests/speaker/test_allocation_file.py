"""``speaker allocate``: addresses written into the distributed file, so every node
agrees (issue 15). The allocator, the tomlkit edit (comments and layout kept,
idempotent), --adopt-state, the command, and a property over add/remove histories
on several simulated nodes."""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speaker.allocate import assign_addresses, read_overrides, write_overrides, write_state
from speaker.allocation_file import AllocateError, add_addresses, allocate_text
from speaker.cli import main
from speaker.config import ConfigError, loads_config


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


HEAD = """\
# The file every node runs.
[speaker]
my_asn = 64513      # ours
node_name = "n"
state_file = "state.json"

[[peers]]
name = "tor"
peer_address = "198.18.1.1"
peer_asn = 64512

[[pools]]
name = "vips"
addresses = ["198.18.0.0/29"]   # eight addresses

[[pools]]
name = "v6"
addresses = ["2001:2::/126"]
"""


def service(name: str, pool: str = "vips", *, address: str | None = None) -> str:
    line = f'address = "{address}"\n' if address else ""
    return f'\n[[services]]\nname = "{name}"\npool = "{pool}"\n{line}'


def first_service(text: str, block: str) -> str:
    """``text`` with the service ``block`` before its first service."""
    head, rest = text.split("\n[[services]]", 1)
    return head + block + "\n[[services]]" + rest


def allocated(text: str, tmp_path: Path) -> str:
    return allocate_text(text, base_dir=tmp_path).text


def addresses_of(text: str) -> dict[str, str]:
    return {s["name"]: s["address"] for s in tomllib.loads(text).get("services", [])}


# ---- the allocator ---------------------------------------------------------------------------


def test_lowest_free_address_in_file_order_around_the_ones_held(tmp_path: Path) -> None:
    text = (
        HEAD
        + service("a")
        + service("fixed", address="198.18.0.1")
        + service("b")
        + service("six", "v6")
        + service("c")
    )
    result = allocate_text(text, base_dir=tmp_path)
    assert dict(result.addresses) == {
        "a": ip("198.18.0.0"),
        "b": ip("198.18.0.2"),
        "six": ip("2001:2::"),
        "c": ip("198.18.0.3"),
    }
    assert addresses_of(result.text)["fixed"] == "198.18.0.1"


def test_existing_addresses_never_move_and_are_never_given_again(tmp_path: Path) -> None:
    first = allocated(HEAD + service("a") + service("b") + service("c"), tmp_path)
    assert addresses_of(first) == {"a": "198.18.0.0", "b": "198.18.0.1", "c": "198.18.0.2"}
    # The issue's history: a removed, d added (first in the file, even).
    without_a = first.replace(service("a", address="198.18.0.0"), "")
    second = allocated(first_service(without_a, service("d")), tmp_path)
    assert addresses_of(second) == {"d": "198.18.0.0", "b": "198.18.0.1", "c": "198.18.0.2"}
    third = allocated(second + service("e"), tmp_path)
    assert addresses_of(third) == {**addresses_of(second), "e": "198.18.0.3"}


def test_same_file_same_result_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    text = HEAD + service("a") + service("six", "v6") + service("b")
    once = allocated(text, tmp_path)
    assert once == allocated(text, tmp_path)  # no state anywhere: deterministic
    again = allocate_text(once, base_dir=tmp_path)
    assert again.text == once and not again.addresses  # idempotent


def test_a_full_pool_is_refused(tmp_path: Path) -> None:
    text = HEAD + "".join(service(f"s{i}", "v6") for i in range(5))
    with pytest.raises(ConfigError) as info:  # check's own rule (node-local demand) first
        allocate_text(text, base_dir=tmp_path)
    assert [str(e) for e in info.value.errors] == [
        'services[4].pool: pool "v6" is full: its 4 addresses are all taken by the services'
        " before this one"
    ]


def test_other_errors_are_reported_and_nothing_is_allocated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        allocate_text(HEAD + service("a", "nope"), base_dir=tmp_path)
    assert [str(e) for e in info.value.errors] == [
        'services[0].pool: no pool named "nope" (defined: vips, v6)'
    ]


# ---- the TOML edit -----------------------------------------------------------------------------


COMMENTED = """\
# Top comment, kept.
[speaker]
my_asn = 64513
node_name = "n"

[[pools]]
name = 'vips'            # literal strings stay literal
addresses = [
    "198.18.0.0/29",     # one per line, with comments
]

# ---- services ----

[[services]]
# www: the web front
name = "www"
pool = "vips"   # from the pool
health = { tcp = "127.0.0.1:80", interval = "2s" }

  [[services]]
  name = "api"
  pool = "vips"
  # trailing comment of api

[[services]]
name = "held"
address = "198.18.0.1"
pool = "vips"

[[services]]
name = "deep"
pool = "vips"
[services.health]
tcp = "127.0.0.1:81"
"""


def test_the_edit_adds_one_line_after_each_pool_and_keeps_every_other_byte(
    tmp_path: Path,
) -> None:
    new = allocated(COMMENTED, tmp_path)
    diff = [
        line
        for line in difflib.unified_diff(COMMENTED.splitlines(), new.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert diff == [
        '+address = "198.18.0.0"',
        '+  address = "198.18.0.2"',  # the pool line's indentation
        '+address = "198.18.0.3"',
    ]
    lines = new.splitlines()
    for name, address in (("www", "198.18.0.0"), ("api", "198.18.0.2"), ("deep", "198.18.0.3")):
        at = lines.index(next(x for x in lines if x.strip() == f'name = "{name}"'))
        assert lines[at + 1].strip().startswith("pool = ")
        assert lines[at + 2].strip() == f'address = "{address}"'
    loads_config(new)  # and check accepts it


def test_inline_table_services_get_the_key_too(tmp_path: Path) -> None:
    text = 'services = [ { name = "a", pool = "vips" }, { name = "b", pool = "v6" } ]\n' + HEAD
    new = allocated(text, tmp_path)
    assert new == (
        'services = [ { name = "a", pool = "vips", address = "198.18.0.0" },'
        ' { name = "b", pool = "v6", address = "2001:2::" } ]\n' + HEAD
    )
    assert allocated(new, tmp_path) == new


def test_add_addresses_refuses_what_it_cannot_do_exactly() -> None:
    text = HEAD + service("a") + service("b", address="198.18.0.5")
    with pytest.raises(AllocateError, match='service "b" already has an address'):
        add_addresses(text, {"b": ip("198.18.0.6")})
    with pytest.raises(AllocateError, match='service "z" is not in the file'):
        add_addresses(text, {"z": ip("198.18.0.6")})


# ---- migration: --adopt-state -------------------------------------------------------------


def test_adopting_a_state_file_keeps_that_nodes_addresses(tmp_path: Path) -> None:
    text = HEAD + service("b") + service("c") + service("d") + service("e")
    adopted = {
        "b": ip("198.18.0.1"),
        "c": ip("198.18.0.2"),
        "d": ip("198.18.0.0"),
        "gone": ip("198.18.0.7"),
    }
    result = allocate_text(text, base_dir=tmp_path, adopted=adopted)
    assert addresses_of(result.text) == {
        "b": "198.18.0.1", "c": "198.18.0.2", "d": "198.18.0.0", "e": "198.18.0.3",
    }  # fmt: skip
    assert result.adopted == {"b", "c", "d"}


def test_adopting_refuses_every_conflict_with_the_file(tmp_path: Path) -> None:
    text = (
        HEAD
        + service("fixed", address="198.18.0.1")
        + service("moved", address="198.18.0.4")
        + service("a")
        + service("b")
        + service("c")
        + service("six", "v6")
    )
    adopted = {
        "moved": ip("198.18.0.5"),
        "a": ip("198.18.0.1"),
        "b": ip("198.18.0.2"),
        "c": ip("198.18.0.2"),
        "six": ip("198.18.0.3"),
    }
    with pytest.raises(AllocateError) as info:
        allocate_text(text, base_dir=tmp_path, adopted=adopted, adopted_from="st.json")
    assert info.value.problems == [
        'service "moved": the file gives it 198.18.0.4, st.json gives it 198.18.0.5',
        'service "a": st.json gives it 198.18.0.1, which the file gives to service "fixed"',
        'service "c": st.json gives it 198.18.0.2, and also service "b"',
        'service "six": st.json gives it 198.18.0.3, outside its pool "v6" (2001:2::/126)',
    ]


# ---- the command ---------------------------------------------------------------------------


def test_check_refuses_allocate_writes_check_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "speaker.toml"
    file.write_text(HEAD + service("a") + service("b"))
    os.chmod(file, 0o640)
    assert main(["check", "--host-checks", "off", "-c", str(file)]) == 2
    err = capsys.readouterr().err
    assert 'services[0].address: missing: service "a"' in err
    assert "speaker allocate -c FILE" in err and 'services[1].address: missing: service "b"' in err

    before = file.read_text()
    assert main(["allocate", "--dry-run", "-c", str(file)]) == 0
    out, err = capsys.readouterr()
    assert file.read_text() == before
    assert '+address = "198.18.0.0"\n' in out and '+address = "198.18.0.1"\n' in out
    assert out.startswith(f"--- {file}\n+++ {file} (allocated)\n")
    assert "nothing written" in err

    assert main(["allocate", "-c", str(file)]) == 0
    assert 'service "a": 198.18.0.0 (pool "vips", lowest free)' in capsys.readouterr().err
    assert file.stat().st_mode & 0o777 == 0o640
    assert main(["check", "--host-checks", "off", "-c", str(file)]) == 0
    written = file.read_text()
    assert main(["allocate", "-c", str(file)]) == 0
    assert "nothing to do" in capsys.readouterr().err
    assert file.read_text() == written
    assert sorted(os.listdir(tmp_path)) == ["speaker.toml"]  # no temporary file left


def test_allocate_adopt_state_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "speaker.toml"
    file.write_text(HEAD + service("b") + service("c"))
    state = tmp_path / "node1.json"
    write_state(state, {"b": ip("198.18.0.6"), "c": ip("198.18.0.6")})
    assert main(["allocate", "--adopt-state", str(state), "-c", str(file)]) == 2
    assert f'service "c": {state} gives it 198.18.0.6, and also service "b"' in (
        capsys.readouterr().err
    )
    assert "address" not in file.read_text().split("[[services]]", 1)[1]  # untouched
    write_state(state, {"b": ip("198.18.0.6"), "old": ip("198.18.0.2")})
    assert main(["allocate", "--adopt-state", str(state), "-c", str(file)]) == 0
    err = capsys.readouterr().err
    assert f'service "b": 198.18.0.6 (pool "vips", from {state})' in err
    assert f'note: {state}: service "old" (198.18.0.2) is not in the file: skipped' in err
    assert addresses_of(file.read_text()) == {"b": "198.18.0.6", "c": "198.18.0.0"}
    assert main(["allocate", "--adopt-state", str(tmp_path / "none.json"), "-c", str(file)]) == 2


def test_run_and_reload_refuse_a_pool_service_without_an_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from speaker.reload import ReloadRefused, prepare

    file = tmp_path / "speaker.toml"
    good = allocated(HEAD + service("a"), tmp_path)
    file.write_text(good + service("b"))
    assert main(["run", "-c", str(file)]) == 2
    err = capsys.readouterr().err
    assert f'{file}: services[1].address: missing: service "b" takes its address' in err
    assert "not starting" in err
    with pytest.raises(ReloadRefused) as info:
        prepare(file, loads_config(good, base_dir=tmp_path), allow_empty=False)
    assert len(info.value.errors) == 1
    assert info.value.errors[0].startswith('services[1].address: missing: service "b"')
    assert "speaker allocate" in info.value.errors[0]


def test_the_nodes_no_longer_touch_the_state_files_addresses_but_keep_its_overrides(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state.json"
    write_state(state, {"a": ip("198.18.0.5")}, {"a": "withdraw"})
    before = state.read_text()
    text = allocated(HEAD + service("a"), tmp_path)
    assert assign_addresses(loads_config(text, base_dir=tmp_path)) == {}
    assert state.read_text() == before
    assert read_overrides(state) == {"a": "withdraw"}
    write_overrides(state, {"a": "announce"})
    assert json.loads(state.read_text())["overrides"] == {"a": "announce"}


# ---- several nodes, one file -------------------------------------------------------------------


class Node:
    """One simulated node: its own directory (state file), the file it last loaded."""

    def __init__(self, root: Path, index: int, mode: str) -> None:
        self.dir = root / f"node{index}"
        self.dir.mkdir()
        self.mode = mode

    def view(self, text: str) -> dict[str, str]:
        """Service -> address as this node's runtime computes them from ``text``."""
        if self.mode == "node-local":
            text = text.replace("[speaker]\n", '[speaker]\nallocation = "node-local"\n', 1)
        config = loads_config(text, base_dir=self.dir)
        assigned = assign_addresses(config)
        return {s.name: str(s.address or assigned[s.name]) for s in config.services}


def issue_scenario(tmp_path: Path, mode: str) -> list[dict[str, str]]:
    """Three nodes, one file: a, b, c; then a removed and d added. Nodes 1 and 2 ran
    the first file, node 3 starts on the second."""
    nodes = [Node(tmp_path, i, mode) for i in (1, 2, 3)]
    first = HEAD + service("a") + service("b") + service("c")
    second = first.replace(service("a"), "") + service("d")
    if mode == "config":  # the operator runs speaker allocate before distributing
        first = allocated(first, tmp_path)
        kept = first.replace(service("a", address="198.18.0.0"), "")
        second = allocated(kept + service("d"), tmp_path)
    for node in nodes[:2]:
        node.view(first)
    return [node.view(second) for node in nodes]


def test_the_issue_scenario_disagrees_when_each_node_allocates(tmp_path: Path) -> None:
    views = issue_scenario(tmp_path, "node-local")
    assert views[0] == {"b": "198.18.0.1", "c": "198.18.0.2", "d": "198.18.0.0"}
    assert views[2] == {"d": "198.18.0.2", "b": "198.18.0.0", "c": "198.18.0.1"}


def test_the_issue_scenario_agrees_with_the_allocation_in_the_file(tmp_path: Path) -> None:
    views = issue_scenario(tmp_path, "config")
    assert views[0] == views[1] == views[2] == {
        "b": "198.18.0.1", "c": "198.18.0.2", "d": "198.18.0.0",
    }  # fmt: skip


NAMES = [f"s{i}" for i in range(10)]

#: One step of the operator or of a node: ("add", name, pool), ("remove", name),
#: ("join",): a new node with no history, ("garble", node): a node's state file
#: filled with other addresses (what an old node-local history leaves there),
#: ("stale", node): that node skips the next versions until the next "sync".
STEPS = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(NAMES), st.sampled_from(["vips", "v6"])),
    st.tuples(st.just("remove"), st.sampled_from(NAMES)),
    st.tuples(st.just("join")),
    st.tuples(st.just("garble"), st.integers(0, 5)),
    st.tuples(st.just("stale"), st.integers(0, 5)),
    st.tuples(st.just("sync")),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(STEPS, min_size=1, max_size=25))
def test_every_node_agrees_and_no_address_ever_moves(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[object, ...]]
) -> None:
    root = tmp_path_factory.mktemp("nodes")
    services: dict[str, str] = {}  # the file's services, in file order: name -> pool
    versions = [allocated(HEAD, root)]  # every file the operator distributed
    added_at: dict[str, int] = {}  # service -> the version it was (last) added in
    nodes = [Node(root, i, "config") for i in range(2)]
    loaded = [0 for _ in nodes]  # the version each node runs
    stale: set[int] = set()
    for step in steps:
        kind, text = step[0], versions[-1]
        name = str(step[1]) if len(step) > 1 else ""
        if kind == "add" and name not in services:
            pool = str(step[2])
            if sum(1 for p in services.values() if p == pool) < (8 if pool == "vips" else 4):
                services[name] = pool
                text += service(name, pool)
                added_at[name] = len(versions)
        elif kind == "remove" and name in services:
            pool = services.pop(name)
            address = addresses_of(text)[name]
            text = text.replace(service(name, pool, address=address), "")
        elif kind == "join":
            nodes.append(Node(root, len(nodes), "config"))
            loaded.append(len(versions) - 1)
        elif kind == "garble":
            node = nodes[int(name) % len(nodes)]
            garbage = {n: ip(f"198.18.0.{7 - i % 8}") for i, n in enumerate(NAMES)}
            write_state(node.dir / "state.json", garbage)
        elif kind == "stale" and int(name) % len(nodes):  # node 0 always follows
            stale.add(int(name) % len(nodes))
        elif kind == "sync":
            stale.clear()
        # The operator runs speaker allocate before distributing the file.
        versions.append(allocated(text, root))
        latest = len(versions) - 1
        loaded = [v if i in stale else latest for i, v in enumerate(loaded)]
        views = [node.view(versions[v]) for node, v in zip(nodes, loaded, strict=True)]
        current = [view for view, v in zip(views, loaded, strict=True) if v == latest]
        assert current, "some node runs the latest file"
        # Every node running the latest file gives every service the same address.
        assert all(view == current[0] for view in current), current
        assert set(current[0]) == set(services)
        assert len(set(current[0].values())) == len(current[0])  # none held twice
        # No existing service's address ever moved: on every node, whatever version it
        # runs, a service that has existed since then has the address it has now.
        for view, v in zip(views, loaded, strict=True):
            for name, address in view.items():
                if name in services and added_at[name] <= v:
                    assert address == current[0][name], (name, v, view, current[0])
