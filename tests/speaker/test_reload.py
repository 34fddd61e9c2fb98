"""Reloads in-process, in virtual time: serialised (SIGHUP and ``speaker reload`` at
once leave one runner per peer), an emptied file refused unless asked, the state
file's overrides never lost to a reload's write, warnings about the host passed on.

The speaker's peers point at a closed port on 127.0.0.1 (BGP retries; no BFD).
"""

from __future__ import annotations

import functools
import gc
import json
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from protocols.bgp import key_prefix
from speaker import allocate, app
from speaker import reload as reload_module
from speaker.app import Speaker
from speaker.config import load_config
from speaker.control import ControlError
from speaker.looplag import Slicer
from speaker.plan import derive
from speaker.reload import collections_deferred, emptied
from tests.helpers.running import free_port, running_speaker

PEERS = """
[[peers]]
name = "r1"
peer_address = "127.0.0.1"
peer_port = {port}
peer_asn = {asn}
connect_time = "1s"

[[peers]]
name = "r2"
peer_address = "127.0.0.1"
peer_port = {port2}
peer_asn = 64512
connect_time = "1s"
"""
REST = """
[[pools]]
name = "vips"
addresses = ["198.19.0.0/24"]

[[advertisements]]
name = "all"

[[services]]
name = "web"
pool = "vips"

[[services]]
name = "api"
pool = "vips"
"""


def toml(tmp_path: Path, *, asn: int = 64512, peers: bool = True, rest: str = REST) -> str:
    head = f"""
[speaker]
my_asn = 64513
router_id = "10.0.0.1"
node_name = "n1"
state_file = "{tmp_path / "state.json"}"
allocation = "node-local"  # these tests reload pool services the node allocates

[control]
socket = "{tmp_path / "speaker.sock"}"
"""
    body = PEERS.format(port=PORT, port2=PORT2, asn=asn) if peers else ""
    return head + body + rest


PORT, PORT2 = free_port(), free_port()


@asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[Speaker]:
    file = tmp_path / "speaker.toml"
    file.write_text(toml(tmp_path))
    speaker = Speaker(derive(load_config(file)), config_path=str(file))
    async with trio.open_nursery() as nursery:
        await nursery.start(functools.partial(speaker.run, handle_signals=False))
        try:
            yield speaker
        finally:
            await speaker.shutdown()
            nursery.cancel_scope.cancel()


def peer_tasks(speaker: Speaker) -> list[str]:
    assert speaker._nursery is not None
    return sorted(t.name for t in speaker._nursery.child_tasks if t.name.startswith("peer "))


async def test_concurrent_reloads_leave_one_runner_per_peer(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with running(tmp_path) as speaker:
        await trio.sleep(1)
        assert peer_tasks(speaker) == ["peer r1", "peer r2"]
        # r1's AS changes: its identity, so both reloads want to restart it.
        (tmp_path / "speaker.toml").write_text(toml(tmp_path, asn=64999))
        results = []

        async def reload() -> None:
            results.append(await speaker.reload_file())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reload)  # e.g. SIGHUP
            nursery.start_soon(reload)  # and `speaker reload` at the same moment
        await trio.sleep(5)
        assert all(r.ok for r in results), results
        assert peer_tasks(speaker) == ["peer r1", "peer r2"]
        assert speaker.peers["r1"].plan.bgp.peer_asn == 64999
        assert speaker._nursery is not None
        running_r1 = [t for t in speaker._nursery.child_tasks if t.name == "peer r1"]
        assert len(running_r1) == 1
        assert speaker.reloads == 1, "two requests at once are answered by one reload"


async def test_requests_during_a_reload_are_answered_by_one_more(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with running(tmp_path) as speaker:
        (tmp_path / "speaker.toml").write_text(toml(tmp_path, asn=64999))
        first = trio.Event()
        results = []

        async def reload(note: trio.Event | None = None) -> None:
            if note is not None:
                note.set()
            results.append(await speaker.reload_file())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reload, first)
            await first.wait()
            await trio.sleep(0)  # the first is running now
            for _ in range(3):
                nursery.start_soon(reload)
        assert len(results) == 4 and all(r.ok for r in results)
        assert speaker.reloads <= 2
        assert peer_tasks(speaker) == ["peer r1", "peer r2"]


async def test_an_empty_file_is_refused_unless_allowed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(tmp_path) as speaker:
        state_before = (tmp_path / "state.json").read_text()
        (tmp_path / "speaker.toml").write_text("")
        result = await speaker.reload_file()
        assert not result.ok
        assert result.summary().startswith("reload rejected")
        assert any("no [[peers]]" in e for e in result.errors), result.errors
        assert any("--allow-empty" in e for e in result.errors)
        assert "no [[peers]]" in caplog.text
        assert speaker.config_stale and speaker.reload_failures == 1
        assert sorted(speaker.peers) == ["r1", "r2"]
        # Refused before allocation: the assignments in the state file are kept.
        assert (tmp_path / "state.json").read_text() == state_before

        # Peers kept, but pools and services gone: refused too.
        (tmp_path / "speaker.toml").write_text(toml(tmp_path, rest=""))
        result = await speaker.reload_file()
        assert not result.ok
        assert any("no [[pools]]" in e for e in result.errors)
        assert any("no [[services]]" in e for e in result.errors)

        (tmp_path / "speaker.toml").write_text("")
        result = await speaker.reload_file(allow_empty=True)
        assert result.ok, result.errors
        assert speaker.peers == {} and not speaker.config_stale
        await trio.sleep(5)
        assert "crashed" not in caplog.text  # a peer being removed asked for its routes


def test_emptied_rules(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(toml(tmp_path))
    full = load_config(tmp_path / "a.toml")
    (tmp_path / "b.toml").write_text(toml(tmp_path, peers=False, rest=""))
    empty = load_config(tmp_path / "b.toml")
    assert emptied(full, full) == []
    assert len(emptied(full, empty)) == 3
    assert len(emptied(empty, empty)) == 1  # no peers: refused even from nothing
    (tmp_path / "c.toml").write_text(
        toml(tmp_path).replace('connect_time = "1s"', 'connect_time = "1s"\n'
                               'node_selectors = [{ match_labels = { rack = "r9" } }]')
    )  # fmt: skip
    elsewhere = load_config(tmp_path / "c.toml")
    assert [r.split(":")[0] for r in emptied(full, elsewhere)] == [
        "no peer of the file applies to this node (node_selectors)"
    ]


async def test_reload_warns_about_the_host(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(tmp_path) as speaker:
        text = toml(tmp_path).replace("connect_time", 'interface = "nosuch9"\nconnect_time', 1)
        (tmp_path / "speaker.toml").write_text(text)
        result = await speaker.reload_file()
        assert result.ok, result.errors
        assert any('peers[0].interface: no interface "nosuch9"' in w for w in result.warnings)
        assert "nosuch9" in caplog.text


async def test_a_reload_never_loses_an_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reload's state file write (worker thread) and ``speaker withdraw`` (loop)
    interleave at the worst moment: the reload has read the file's overrides and not
    yet written its new assignments. Both writes must survive."""
    async with running(tmp_path) as speaker:
        read = threading.Event()
        real_read_overrides = allocate.read_overrides

        def read_then_pause(path: Path) -> dict[str, str]:
            overrides = real_read_overrides(path)
            if threading.current_thread() is not threading.main_thread():
                read.set()
                time.sleep(0.3)  # the loop's `withdraw` comes now
            return overrides

        monkeypatch.setattr(allocate, "read_overrides", read_then_pause)
        text = toml(tmp_path) + '\n[[services]]\nname = "db"\npool = "vips"\n'
        (tmp_path / "speaker.toml").write_text(text)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(speaker.reload_file)
            await trio.to_thread.run_sync(read.wait, 5)
            speaker.set_override("web", "withdraw")
        state = json.loads((tmp_path / "state.json").read_text())
        assert state["overrides"] == {"web": "withdraw"}
        assert set(state["addresses"]) == {"web", "api", "db"}


async def test_speaker_reload_allow_empty_through_the_socket(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_speaker(tmp_path) as spk:
        good = spk.config.read_text()
        spk.config.write_text("")
        assert await spk.cli("reload", "-s", str(spk.path)) == 2
        out = capsys.readouterr()
        assert out.out.startswith("reload rejected")
        assert "error: the file has no [[peers]]: every BGP session would stop" in out.err
        assert "--allow-empty" in out.err
        with pytest.raises(ControlError, match='"allow_empty" must be true or false'):
            await spk.ask("reload", allow_empty="yes")
        # Host warnings come back with an applied reload.
        misspelled = 'password_file = "tor.key"\ninterface = "nosuch9"'
        spk.config.write_text(good.replace('password_file = "tor.key"', misspelled))
        assert await spk.cli("reload", "-s", str(spk.path)) == 0
        assert 'warning: peers[1].interface: no interface "nosuch9"' in capsys.readouterr().err
        spk.config.write_text("")
        assert await spk.cli("reload", "--allow-empty", "-s", str(spk.path)) == 0
        assert spk.speaker.peers == {}


def test_collections_deferred_runs_no_collection_and_ages_what_it_made() -> None:
    assert gc.isenabled() and gc.get_freeze_count() == 0
    collections: list[int] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.callbacks.append(note)
    try:
        with collections_deferred():
            assert not gc.isenabled()
            made = [[i] for i in range(100_000)]  # would trigger many young collections
        assert collections == []
        assert gc.isenabled() and gc.get_freeze_count() == 0
        assert gc.get_count()[0] < 100  # the 100,000 lists are no longer young
        assert gc.is_tracked(made[0])
    finally:
        gc.callbacks.remove(note)


HEALTH_BEFORE = """
[[pools]]
name = "vips"
addresses = ["198.19.0.0/24"]

[[advertisements]]
name = "all"

[[services]]
name = "web"
address = "198.19.0.1"

[[services]]
name = "api"
address = "198.19.0.2"
health = { exec = ["true"], interval = "1h", rise = 1 }

[[services]]
name = "db"
address = "198.19.0.3"
"""
HEALTH_AFTER = """
[[pools]]
name = "vips"
addresses = ["198.19.0.0/24"]

[[advertisements]]
name = "all"

[[services]]
name = "web"
address = "198.19.0.1"
health = { tcp = "127.0.0.1:1", interval = "1h" }

[[services]]
name = "api"
address = "198.19.0.2"
health = { exec = ["true"], interval = "59m", rise = 1 }

[[services]]
name = "new"
address = "198.19.0.4"
"""


async def test_reload_keeps_health_state_rules_across_slices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new check starts unhealthy, a changed one keeps the state, a service without
    one is healthy, a removed one is gone; with one service per slice, so every step
    of the walk is separated by a checkpoint."""
    monkeypatch.setattr(app, "RELOAD_SLICE", 1)
    file = tmp_path / "speaker.toml"
    file.write_text(toml(tmp_path, rest=HEALTH_BEFORE))
    speaker = Speaker(derive(load_config(file)), config_path=str(file))
    async with trio.open_nursery() as nursery:
        await nursery.start(functools.partial(speaker.run, handle_signals=False))
        with trio.fail_after(5):
            while "api" not in speaker.healthy:
                await trio.sleep(0.01)
        assert speaker.healthy == {"web", "api", "db"}
        file.write_text(toml(tmp_path, rest=HEALTH_AFTER))
        result = await speaker.reload_file()
        assert result.ok, result.errors
        assert speaker.healthy == {"api", "new"}
        assert set(speaker._health_scopes) == {"web", "api"}
        await speaker.shutdown()
        nursery.cancel_scope.cancel()


async def test_a_change_during_a_reload_reaches_the_new_route_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new table is built (in the worker thread) from the services announced when
    the reload began; what changes meanwhile is journalled and applied to it."""
    async with running(tmp_path) as speaker:
        built = threading.Event()
        real_prepare = reload_module.prepare

        def prepare_then_pause(*args: Any, **kwargs: Any) -> Any:
            prepared = real_prepare(*args, **kwargs)
            built.set()
            time.sleep(0.3)  # the loop's `withdraw` comes now
            return prepared

        monkeypatch.setattr(app, "prepare", prepare_then_pause)
        text = toml(tmp_path) + '\n[[services]]\nname = "db"\npool = "vips"\n'
        (tmp_path / "speaker.toml").write_text(text)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(speaker.reload_file)
            await trio.to_thread.run_sync(built.wait, 5)
            speaker.set_override("web", "withdraw")
        routes = speaker.derived.routes.snapshot("r1")
        announced = {speaker.derived.addresses[s] for s in ("api", "db")}
        assert {key_prefix(k).network_address for k in routes} == announced  # web: withdrawn


async def test_a_session_starting_while_a_reload_installs_takes_the_table_the_others_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between a reload's new config and its table reaching the sessions
    (``_install_routes``), a session that starts takes the table every other session
    holds, instead of bringing the new one up to date at once (a 17 ms step at 65,536
    services); a peer the old table does not know gets nothing until the new table
    comes. Outside a reload, the new table is brought up to date as before."""
    async with running(tmp_path) as speaker:
        held = dict(speaker.routes_for("r1"))
        text = toml(tmp_path) + '\n[[services]]\nname = "db"\npool = "vips"\n'
        (tmp_path / "speaker.toml").write_text(text)
        new = derive(load_config(tmp_path / "speaker.toml"))
        synced: list[object] = []
        real = new.routes.set_announced

        def set_announced(*a: Any, **k: Any) -> Any:
            synced.append(a)
            return real(*a, **k)

        monkeypatch.setattr(new.routes, "set_announced", set_announced)
        old_derived = speaker.derived
        speaker._route_journal = set()
        speaker.derived = new
        try:
            assert dict(speaker.routes_for("r1")) == held and synced == []
            assert speaker.routes_for("r9") == {}
            speaker._route_journal = None
            after = dict(speaker.routes_for("r1"))
            assert len(synced) == 1 and len(after) == len(held) + 1
        finally:
            speaker._route_journal = None
            speaker.derived = old_derived


async def test_a_reader_across_a_reload_delays_the_free_of_the_old_config(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A show reply that started before the reload holds the old config: were it freed
    # meanwhile, the reader would drop the last reference, and free 65,536 services,
    # in one step (13 ms measured by bench.reload_steps --socket).
    freed: list[float] = []
    real_free = Slicer.free

    async def free(self: Slicer, box: list[Any]) -> None:
        freed.append(trio.current_time())
        await real_free(self, box)

    monkeypatch.setattr(Slicer, "free", free)
    async with running(tmp_path) as speaker:
        (tmp_path / "speaker.toml").write_text(toml(tmp_path, asn=64999))
        reading = speaker.readers.reading()
        reading.__enter__()
        started = trio.current_time()
        assert (await speaker.reload_file()).ok
        await trio.sleep(10)
        assert freed == [], "freed while a reader of the old config runs"
        reading.__exit__(None, None, None)
        await trio.sleep(1)
        assert len(freed) == 1 and freed[0] >= started + 10
