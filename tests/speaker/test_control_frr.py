"""FRR's commands through the control socket and the CLI, against a running speaker
(its sessions never reach Established here: nothing listens on the BGP port)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from speaker.control import ControlError
from tests.helpers.running import running_speaker, wait_until

pytestmark = pytest.mark.usefixtures("bfd_not_held")  # tests/speaker/conftest.py


async def test_frr_show_commands_answer(tmp_path: Path) -> None:
    async with running_speaker(tmp_path) as spk:
        summary = await spk.ask("show bgp summary")
        v4 = summary["ipv4Unicast"]
        assert v4["routerId"] == "10.0.0.1" and v4["as"] == 64513
        assert set(v4["peers"]) == {"127.0.0.1", "127.0.0.3"}
        peer = v4["peers"]["127.0.0.1"]
        assert peer["state"] != "Established" and peer["peerUptime"] == "never"
        assert peer["desc"] == "r1" and peer["remoteAs"] == 64512 and peer["version"] == 4
        assert "ipv6Unicast" not in summary  # no peer carries IPv6
        assert [p["name"] for p in summary["peers"]] == ["r1", "r2"]  # our rows, kept
        v4_only = await spk.ask("show bgp summary", family="ipv4")
        assert "ipv4Unicast" in v4_only
        with pytest.raises(ControlError, match='unknown address family "ipv5"'):
            await spk.ask("show bgp summary", family="ipv5")

        neighbors = await spk.ask("show bgp neighbors")
        assert set(neighbors) == {"127.0.0.1", "127.0.0.3"}
        (one,) = (await spk.ask("show bgp neighbors", name="r1")).values()
        assert one["bgpState"] != "Established" and one["remoteRouterId"] == "0.0.0.0"
        assert one["bgpTimerConfiguredHoldTimeMsecs"] == 9000
        assert one["nbrDesc"] == "r1" and one["nbrExternalLink"] is True
        by_address = await spk.ask("show bgp neighbors", name="127.0.0.3")
        assert list(by_address) == ["127.0.0.3"]
        with pytest.raises(ControlError, match='no peer named "zz"'):
            await spk.ask("show bgp neighbors", name="zz")

        routes = await spk.ask("show bgp advertised-routes", family="ipv4", name="r1")
        assert routes["advertisedRoutes"] == {} and routes["totalPrefixCounter"] == 0
        assert routes["localAS"] == 64513 and routes["bgpLocalRouterId"] == "10.0.0.1"
        with pytest.raises(ControlError, match="unknown address family"):
            await spk.ask("show bgp advertised-routes", family="l2vpn", name="r1")

        async def bfd_up() -> Any:
            record = await spk.ask("show bfd peer", name="r1")
            return record if record["status"] == "up" else None

        record = await wait_until(bfd_up)
        assert record["peer"] == "127.0.0.1" and record["name"] == "r1"
        assert (record["rtt-min"], record["rtt-avg"], record["rtt-max"]) == (0, 0, 0)  # no echo
        assert (await spk.ask("show bfd peer", name="127.0.0.1"))["id"] == record["id"]
        with pytest.raises(ControlError, match='peer "r2" has no BFD session'):
            await spk.ask("show bfd peer", name="r2")
        with pytest.raises(ControlError, match=r'no BFD peer "127\.0\.0\.9"'):
            await spk.ask("show bfd peer", name="127.0.0.9")


async def test_clear_bgp_resets_one_session_and_soft_out_needs_established(
    tmp_path: Path,
) -> None:
    async with running_speaker(tmp_path) as spk:
        runner = spk.speaker.peers["r2"]  # no BFD: its BGP session runs at once
        await wait_until(lambda: _has(runner))
        first = runner.bgp
        with pytest.raises(ControlError, match='peer "r2" is not Established'):
            await spk.ask("clear bgp", name="r2", soft_out=True)
        done = await spk.ask("clear bgp", name="r2")
        assert done == {"peer": "r2", "cleared": "reset", "families": []}

        async def replaced() -> bool:
            return runner.bgp is not None and runner.bgp is not first

        await wait_until(replaced)
        assert runner.sessions == 2 and spk.speaker.peers["r1"].sessions <= 1
        with pytest.raises(ControlError, match='no peer named "zz"'):
            await spk.ask("clear bgp", name="zz")


async def _has(runner: Any) -> bool:
    await trio.lowlevel.checkpoint()
    return runner.bgp is not None


async def test_cli_takes_frrs_words_and_trailing_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_speaker(tmp_path) as spk:
        sock = str(spk.path)
        assert await spk.cli("show", "bgp", "summary", "json", "-s", sock) == 0
        data = json.loads(capsys.readouterr().out)
        assert "ipv4Unicast" in data
        assert await spk.cli("show", "bgp", "ipv4", "unicast", "summary", "json", "-s", sock) == 0
        assert set(json.loads(capsys.readouterr().out)["peers"]) == {"127.0.0.1", "127.0.0.3"}
        assert await spk.cli("show", "bgp", "summary", "-s", sock) == 0
        text = capsys.readouterr().out
        assert "IPv4 Unicast Summary (VRF default):" in text
        assert "Neighbor        V         AS   MsgRcvd   MsgSent   TblVer  InQ OutQ" in text
        assert await spk.cli("show", "bgp", "neighbors", "r1", "-s", sock) == 0
        assert capsys.readouterr().out.startswith("BGP neighbor is 127.0.0.1, remote AS 64512")
        assert await spk.cli("show", "bgp", "ipv4", "unicast", "neighbors", "r1",
                             "advertised-routes", "-s", sock) == 0  # fmt: skip
        assert "Total number of prefixes 0" in capsys.readouterr().out
        assert await spk.cli("show", "bfd", "peers", "brief", "-s", sock) == 0
        assert capsys.readouterr().out.startswith("Session count: 1\nSessionId  LocalAddress")
        assert await spk.cli("show", "bfd", "peer", "r1", "json", "-s", sock) == 0
        assert json.loads(capsys.readouterr().out)["name"] == "r1"
        assert await spk.cli("clear", "bgp", "r1", "soft", "out", "-s", sock) == 1
        assert "not Established" in capsys.readouterr().err
        assert await spk.cli("clear", "bgp", "r2", "-s", sock) == 0
        assert capsys.readouterr().out == "bgp r2: session reset\n"
        assert await spk.cli("show", "bgp", "neighbours", "-s", sock) == 2
        assert "no command 'bgp neighbours'" in capsys.readouterr().err
