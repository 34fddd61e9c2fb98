"""``speaker restart`` on the control socket: the process takes the restart path (the
marker beside the state file, RESTART mode), and the next speaker reads the marker."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from speaker.app import Speaker
from speaker.config import load_config
from speaker.plan import derive
from speaker.shutdown_mode import ShutdownMode, marker_path
from tests.helpers.running import running_speaker

pytestmark = pytest.mark.usefixtures("bfd_not_held")  # tests/speaker/conftest.py


async def test_restart_command_takes_the_restart_path(tmp_path: Path) -> None:
    async with running_speaker(tmp_path) as spk:
        reply = await spk.ask("restart")
        assert reply == {"restarting": True, "graceful_restart": {"r1": False, "r2": False}}
        with trio.fail_after(5):
            await spk.speaker.shutting_down.wait()
        assert spk.speaker.shutdown_mode is ShutdownMode.RESTART
        again = await spk.ask("restart")  # the first request's path stays
        assert again["restarting"] is False
        state = tmp_path / "state.json"
        with trio.fail_after(5):
            while not marker_path(state).exists():
                await trio.sleep(0.01)
        config = spk.config
    # The next process: the marker is read (and removed) at start.
    after = Speaker(derive(load_config(config)), config_path=str(config))
    assert after.restarted_from is not None
    assert not marker_path(state).exists()
    assert after.shutdown_mode is None


async def test_cli_restart_warns_about_peers_without_graceful_restart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_speaker(tmp_path) as spk:
        assert await spk.cli("restart", "-s", str(spk.path)) == 0
        with trio.fail_after(5):
            await spk.speaker.shutting_down.wait()
        assert spk.speaker.shutdown_mode is ShutdownMode.RESTART
    out, err = capsys.readouterr()
    assert "speaker restarting (the restart path)" in out
    assert "no graceful_restart for r1, r2" in err
