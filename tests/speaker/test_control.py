"""The control socket, end to end: a Speaker running in-process (its BGP peer at a
closed port on 127.0.0.1, its BFD session talking to itself over loopback), the
server on a socket in tmp_path, and the real blocking client in a thread."""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest
import trio

from speaker import cli
from speaker.control import ControlError, ControlServer, request, send_pieces
from tests.helpers.configs import SECRETS
from tests.helpers.running import (
    Running,
    is_healthy,
    running_speaker,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("bfd_not_held")  # tests/speaker/conftest.py


async def test_show_commands_answer_from_the_running_speaker(tmp_path: Path) -> None:
    async with running_speaker(tmp_path) as spk:
        status = await spk.ask("status")
        assert status["pid"] == os.getpid() and status["peers"] == 2

        async def bfd_up() -> Any:
            peers = await spk.ask("show bfd peers")
            # Up, and past slow start (our Poll goes out one spacing after the Init).
            fast = peers and peers[0].get("remote-transmit-interval") == 50
            return peers if fast and peers[0]["status"] == "up" else None

        peers = await wait_until(bfd_up)
        assert len(peers) == 1  # r2 has no BFD, elsewhere is not for this node
        peer = peers[0]
        assert peer["peer"] == "127.0.0.1" and peer["name"] == "r1"
        assert peer["receive-interval"] == 50 and peer["detect-multiplier"] == 3
        assert peer["remote-transmit-interval"] == 50  # it hears itself

        counters = await spk.ask("show bfd peers counters")
        row = counters["peers"][0]
        assert row["control-packet-input"] > 0 and row["session-up"] == 1

        summary = await spk.ask("show bgp summary")
        assert summary["routerId"] == "10.0.0.1" and summary["as"] == 64513
        by_name = {p["name"]: p for p in summary["peers"]}
        assert set(by_name) == {"r1", "r2"}
        assert by_name["r1"]["remoteAs"] == 64512 and by_name["r1"]["bfdStatus"] == "up"
        assert by_name["r1"]["state"] != "Established" and by_name["r2"]["bfdStatus"] is None

        neighbor = await spk.ask("show bgp neighbor", name="r1")
        assert neighbor["bfd"]["status"] == "up" and neighbor["configuredHoldTime"] == 9
        assert (await spk.ask("show bgp neighbor", name="127.0.0.1"))["name"] == "r1"
        with pytest.raises(ControlError, match='no peer named "zz"'):
            await spk.ask("show bgp neighbor", name="zz")

        await wait_until(functools.partial(is_healthy, spk, "web"))
        # Routes are listed once the BGP session exists (after BFD's hold-down).
        await wait_until(functools.partial(has_session, spk, "r1"))
        routes = await spk.ask("show routes")
        peers_ = {p["name"]: p for p in routes["peers"]}
        r1 = {s["service"]: s for s in peers_["r1"]["services"]}
        assert r1["web"]["reason"] == "session-not-established"
        assert r1["web"]["prefix"] == "198.19.0.10/32"
        assert r1["api"]["reason"] == "unhealthy"
        assert peers_["r1"]["pools"] == [
            {"pool": "all", "reason": "session-not-established", "detail": "announce_all"}
        ]
        prefixes = [r["prefix"] for r in peers_["r1"]["announced"]]
        assert "198.19.0.10/32" in prefixes and "198.19.1.3/32" in prefixes
        assert peers_["r1"]["announced"][0]["communities"] == ["65000:100"]
        r2 = {s["service"]: s["reason"] for s in peers_["r2"]["services"]}
        assert r2 == dict.fromkeys(("web", "api", "db"), "no-advertisement-selects-peer")
        elsewhere = {s["reason"] for s in peers_["elsewhere"]["services"]}
        assert elsewhere == {"not-for-this-node"}
        assert {s["service"] for s in routes["services"]} == {"web", "api", "db"}

        # The CLI renders the same data (exit 0), and --json prints FRR's list.
        assert await spk.cli("show", "bfd", "peers", "-s", str(spk.path)) == 0
        assert await spk.cli("show", "bfd", "peers", "counters", "--json",
                             "-c", str(spk.config)) == 0  # fmt: skip
        assert await spk.cli("show", "bgp", "summary", "-s", str(spk.path)) == 0
        assert await spk.cli("show", "bgp", "neighbor", "r1", "-s", str(spk.path)) == 0
        assert await spk.cli("show", "routes", "-s", str(spk.path)) == 0
        assert await spk.cli("show", "bgp", "neighbor", "zz", "-s", str(spk.path)) == 1


async def test_bfd_peers_are_reachable_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_speaker(tmp_path) as spk:
        capsys.readouterr()
        assert await spk.cli("show", "bfd", "peers", "--json", "-s", str(spk.path)) == 0
        peers = json.loads(capsys.readouterr().out)
        assert peers[0]["peer"] == "127.0.0.1"
        assert await spk.cli("show", "bfd", "peers", "-s", str(spk.path)) == 0
        text = capsys.readouterr().out
        assert text.startswith("BFD Peers:\n\tpeer 127.0.0.1 local-address 127.0.0.1 vrf default")


async def test_overrides_and_reload_through_the_socket(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_speaker(tmp_path) as spk:
        await wait_until(functools.partial(is_healthy, spk, "web"))

        async def bfd_up() -> bool:  # else r1's reason below is bfd-down
            return any(p["status"] == "up" for p in await spk.ask("show bfd peers"))

        await wait_until(bfd_up)
        reply = await spk.ask("withdraw", service="web")
        assert reply == {"service": "web", "override": "withdraw"}
        assert spk.speaker.overrides == {"web": "withdraw"}
        state = json.loads((tmp_path / "state.json").read_text())
        assert "web" in json.dumps(state)  # persisted
        routes = await spk.ask("show routes")
        r1 = {s["service"]: s for s in routes["peers"][0]["services"]}
        assert r1["web"]["reason"] == "withdrawn-by-operator"
        assert await spk.cli("announce", "api", "-s", str(spk.path)) == 0
        assert "service api: override announce" in capsys.readouterr().out
        routes = await spk.ask("show routes")
        r1 = {s["service"]: s for s in routes["peers"][0]["services"]}
        assert r1["api"]["reason"] == "session-not-established"
        assert r1["api"]["detail"] == "forced by operator"
        assert await spk.cli("clear-override", "web", "-s", str(spk.path)) == 0
        assert await spk.cli("clear-override", "api", "-s", str(spk.path)) == 0
        assert spk.speaker.overrides == {}
        with pytest.raises(ControlError, match='no service named "nope"'):
            await spk.ask("announce", service="nope")
        assert await spk.cli("withdraw", "nope", "-s", str(spk.path)) == 1
        assert 'no service named "nope"' in capsys.readouterr().err

        # Reload: valid -> applied (exit 0); invalid -> rejected with errors (exit 2).
        result = await spk.ask("reload")
        assert result["applied"] and result["summary"].startswith("reload applied")
        good = spk.config.read_text()
        spk.config.write_text(good.replace("hold_time", "hold_tme"))
        assert await spk.cli("reload", "-s", str(spk.path)) == 2
        out = capsys.readouterr()
        assert out.out.startswith("reload rejected")
        assert 'hold_tme: unknown key (did you mean "hold_time"?)' in out.err
        assert spk.speaker.config_stale and spk.speaker.reload_failures == 1
        spk.config.write_text(good)
        assert await spk.cli("reload", "-s", str(spk.path)) == 0
        assert not spk.speaker.config_stale and spk.speaker.reloads == 2


async def has_session(spk: Running, peer: str) -> bool:
    return spk.speaker.peers[peer].bgp is not None


async def test_show_config_redacts_every_secret_and_logs_never_hold_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        async with running_speaker(tmp_path) as spk:
            data = await spk.ask("show config")
            assert await spk.cli("show", "config", "-s", str(spk.path)) == 0
            assert await spk.cli("show", "config", "--json", "-s", str(spk.path)) == 0
            printed = capsys.readouterr().out
            await spk.ask("reload")
            await trio.sleep(0.3)
    dumped = json.dumps(data)
    logs = "\n".join(
        [r.getMessage() for r in caplog.records] + [repr(r.__dict__) for r in caplog.records]
    )
    for secret in SECRETS:
        assert secret not in dumped, secret
        assert secret not in printed, secret
        assert secret not in logs, secret
    r1 = next(p for p in data["peers"] if p["name"] == "r1")
    assert r1["password"] == "<redacted>"
    assert data["bfd_profiles"][0]["auth"]["keys"] == "<redacted>"
    assert data["control"]["socket"] == str(tmp_path / "speaker.sock")
    assert data["assigned_addresses"]["db"] == "198.19.0.0"
    assert (data["router_id"], data["router_id_reason"]) == ("10.0.0.1", "router_id in [speaker]")
    assert "# effective router_id: 10.0.0.1 (router_id in [speaker])\n" in printed


async def test_socket_is_private_replaces_a_stale_one_and_goes_away(tmp_path: Path) -> None:
    path = tmp_path / "run" / "speaker.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path.parent.mkdir()
    stale.bind(str(path))
    stale.close()  # a socket file nobody listens on: left by a crashed speaker
    async with running_speaker(tmp_path) as spk:
        server = ControlServer(spk.speaker, path, 0o600)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert (await trio.to_thread.run_sync(request, path, "status"))["peers"] == 2
            # A second speaker must not steal a live socket.
            with pytest.raises(OSError, match="another speaker is listening"):
                await ControlServer(spk.speaker, path)._bind()
            nursery.cancel_scope.cancel()
        assert not path.exists()
        # Bad requests get an error line, not a dropped connection.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
            raw.connect(str(spk.path))
            await trio.to_thread.run_sync(raw.sendall, b'not json\n{"command": "dance"}\n')
            data = b""
            while data.count(b"\n") < 2:
                data += await trio.to_thread.run_sync(raw.recv, 4096)
        first, second = (json.loads(line) for line in data.splitlines())
        assert not first["ok"] and first["error"].startswith("bad request")
        assert second == {"ok": False, "error": 'unknown command "dance"'}
    assert not spk.path.exists()


def test_client_errors_say_what_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from speaker.config import model

    default = tmp_path / "default" / "speaker.sock"  # never a real speaker's socket
    monkeypatch.setattr(model, "DEFAULT_CONTROL_SOCKET", default)
    missing = tmp_path / "nope.sock"
    with pytest.raises(ControlError, match=f"is the speaker running\\? no socket at {missing}"):
        request(missing, "status")
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(stale))
    with pytest.raises(ControlError, match="nothing listens"):
        request(stale, "status")
    assert cli.main(["show", "bgp", "summary", "-s", str(missing)]) == 1
    assert f"is the speaker running? no socket at {missing}" in capsys.readouterr().err
    # -c: the socket path comes from [control] socket, relative to the file.
    config = tmp_path / "conf" / "speaker.toml"
    config.parent.mkdir()
    config.write_text('[control]\nsocket = "sub/s.sock"\n')
    assert cli.main(["reload", "-c", str(config)]) == 1
    assert f"no socket at {config.parent / 'sub' / 's.sock'}" in capsys.readouterr().err
    config.write_text("[speaker]\n")
    assert cli.main(["reload", "-c", str(config)]) == 1
    assert f"no socket at {default}" in capsys.readouterr().err


def test_control_and_metrics_sections_are_validated(tmp_path: Path) -> None:
    from speaker.config import ConfigError, loads_config

    config = loads_config("[control]\n[metrics]\n")
    assert config.control.socket == Path("/run/speaker/speaker.sock")
    assert config.control.mode_bits == 0o600
    assert config.metrics.enabled and config.metrics.host_port == ("127.0.0.1", 7472)
    config = loads_config('[control]\nsocket = "s.sock"\nmode = "0660"\n'
                          '[metrics]\nenabled = false\naddress = "[::1]:9100"\n',
                          base_dir=tmp_path)  # fmt: skip
    assert config.control.socket == tmp_path / "s.sock" and config.control.mode_bits == 0o660
    assert not config.metrics.enabled and config.metrics.host_port == ("::1", 9100)
    with pytest.raises(ConfigError) as caught:
        loads_config('[control]\nmode = "0999"\nsockt = "x"\n'
                     '[metrics]\naddress = "localhost:1"\nenabled = 1\n')  # fmt: skip
    messages = sorted(str(e) for e in caught.value.errors)
    assert messages == [
        'control.mode: "0999" is not a file mode (octal digits, e.g. "0600")',
        'control.sockt: unknown key (did you mean "socket"?)',
        'metrics.address: "localhost:1" is not "address:port" with an IP address'
        ' (e.g. "127.0.0.1:7472", "[::1]:7472")',
        "metrics.enabled: expected true or false, got an integer (1)",
    ]
    with pytest.raises(ConfigError, match="owner read and write"):
        loads_config('[control]\nmode = "0400"\n')


async def test_clear_bfd_peers_counters_zeroes_show_but_not_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_speaker(tmp_path) as spk:

        async def counted() -> int:
            peers = (await spk.ask("show bfd peers counters"))["peers"]
            return int(peers[0]["control-packet-input"])

        await wait_until(lambda: _at_least(counted, 10))
        runner = spk.speaker.peers["r1"]
        before_total = runner.bfd_totals()["control_rx"]
        assert await spk.cli("clear", "bfd", "peers", "counters", "-s", str(spk.path)) == 0
        assert "bfd counters cleared: r1" in capsys.readouterr().out
        # Right after the clear, show starts again near zero (a packet or two may land)...
        assert await counted() < 5
        # ...while the totals behind the metrics keep counting from where they were.
        assert runner.bfd_totals()["control_rx"] >= before_total
        await wait_until(lambda: _at_least(counted, 5))
        # One peer by name; an unknown peer is an error naming it.
        reply = await spk.ask("clear bfd peers counters", name="r1")
        assert reply == {"cleared": ["r1"]}
        assert await spk.cli("clear", "bfd", "peers", "counters", "--peer", "zz",
                             "-s", str(spk.path)) == 1  # fmt: skip
        assert "zz" in capsys.readouterr().err


async def _at_least(probe: Any, n: int) -> bool:
    return bool(await probe() >= n)


class _RecordingStream(trio.abc.SendStream):
    """Records what was sent and, at each send, the pieces the sender still held."""

    def __init__(self, pieces: list[bytes], fail_at: int | None = None) -> None:
        self.pieces = pieces
        self.fail_at = fail_at
        self.sent: list[bytes] = []
        self.held_before: list[int] = []

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.fail_at is not None and len(self.sent) == self.fail_at:
            raise trio.BrokenResourceError("client went away")
        # pieces before this one, still holding their bytes
        self.held_before.append(sum(1 for p in self.pieces[: len(self.sent)] if p))
        self.sent.append(bytes(data))
        await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def test_send_pieces_lets_go_of_each_piece_once_sent() -> None:
    pieces = [bytes([i]) * 1000 for i in range(40)]
    expected = list(pieces)
    stream = _RecordingStream(pieces)
    await send_pieces(stream, pieces)
    assert stream.sent == expected
    assert stream.held_before == [0] * 40  # nothing sent is still held
    assert pieces == []


async def test_send_pieces_empties_the_list_when_the_client_goes_away() -> None:
    pieces = [b"x" * 1000 for _ in range(100)]
    stream = _RecordingStream(pieces, fail_at=3)
    with pytest.raises(trio.BrokenResourceError):
        await send_pieces(stream, pieces)
    assert len(stream.sent) == 3
    assert pieces == []
