"""Our own daemons in a lab host, with the same kind of query API as the others.

:class:`OurBfd` runs ``python -m speaker.bfd`` (one standalone BFD session) and reads
its JSON-line reports: state changes, statistics on SIGUSR1.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from lab.netns import Host
from lab.proc import Process, wait_until

REPO = Path(__file__).resolve().parents[1]


def our_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


class OurBfd:
    def __init__(
        self,
        host: Host,
        *,
        peer: str,
        local: str,
        interface: str | None = None,
        multihop: bool = False,
        tx: int = 300,
        rx: int = 300,
        mult: int = 3,
        passive: bool = False,
        echo: bool = False,
        echo_interval: int = 50,
        min_ttl: int | None = None,
        auth: str | None = None,
        key_id: int = 1,
        secret: str = "",
        name: str = "bfd",
        debug: bool = False,
    ) -> None:
        self.host = host
        self.name = name
        self.profile_path = host.lab.dir / f"{host.name}-{name}-profile.json"
        self.profile_path.write_text("{}")
        argv = [
            sys.executable, "-m", "speaker.bfd", "--peer", peer, "--local", local,
            "--tx", str(tx), "--rx", str(rx), "--mult", str(mult),
            "--echo-interval", str(echo_interval), "--profile-file", str(self.profile_path),
        ]  # fmt: skip
        if interface:
            argv += ["--interface", interface]
        if multihop:
            argv.append("--multihop")
        if passive:
            argv.append("--passive")
        if echo:
            argv.append("--echo")
        if min_ttl is not None:
            argv += ["--min-ttl", str(min_ttl)]
        if auth:
            argv += ["--auth", auth, "--key-id", str(key_id), "--secret", secret]
        if debug:
            argv.append("--debug")
        self.argv = argv
        self.proc: Process | None = None

    def start(self, timeout: float = 10.0) -> OurBfd:
        self.proc = self.host.popen(self.name, self.argv, env=our_env())
        wait_until(self._started, timeout=timeout, what=f"our BFD in {self.host.name}")
        return self

    def _started(self) -> bool:
        assert self.proc is not None
        self.proc.check_alive(f"our BFD in {self.host.name}")
        return any(r["event"] == "started" for r in self.records())

    def stop(self) -> int | None:
        assert self.proc is not None
        return self.proc.stop()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def records(self) -> list[dict[str, Any]]:
        assert self.proc is not None
        out = []
        for line in self.proc.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line still being written
        return out

    def states(self) -> list[dict[str, Any]]:
        return [r for r in self.records() if r["event"] == "state"]

    def state(self) -> str:
        states = self.states()
        return states[-1]["new"] if states else "DOWN"

    def wait_state(self, new: str, *, after: int = 0, timeout: float = 10.0) -> dict[str, Any]:
        """The first state change to ``new`` among changes number ``after`` and later."""

        def probe() -> dict[str, Any] | None:
            for record in self.states()[after:]:
                if record["new"] == new:
                    return record
            return None

        return wait_until(probe, timeout=timeout, what=f"our BFD {self.host.name} {new}")

    def stats(self, timeout: float = 5.0) -> dict[str, Any]:
        assert self.proc is not None
        seen = sum(1 for r in self.records() if r["event"] == "stats")
        self.proc.send_signal(signal.SIGUSR1)

        def probe() -> dict[str, Any] | None:
            stats = [r for r in self.records() if r["event"] == "stats"]
            return stats[-1] if len(stats) > seen else None

        return wait_until(probe, timeout=timeout, what="our BFD statistics")

    def set_profile(self, **fields: Any) -> None:
        """Change the live session's profile (fields of BfdProfile) through SIGHUP."""
        assert self.proc is not None
        seen = sum(1 for r in self.records() if r["event"].startswith("profile"))
        self.profile_path.write_text(json.dumps(fields))
        self.proc.send_signal(signal.SIGHUP)
        wait_until(
            lambda: sum(1 for r in self.records() if r["event"].startswith("profile")) > seen,
            timeout=5.0,
            what="profile applied",
        )


class OurSpeaker:
    """``speaker run -c CONFIG --log-format json`` in a lab host; logs are JSON lines."""

    def __init__(self, host: Host, config: str, *, name: str = "speaker") -> None:
        self.host = host
        self.name = name
        self.config_path = host.lab.dir / f"{host.name}-{name}.toml"
        self.config_path.write_text(config)
        self.state_path = host.lab.dir / f"{host.name}-{name}-state.json"
        self.proc: Process | None = None

    def start(self, timeout: float = 15.0) -> OurSpeaker:
        argv = [sys.executable, "-m", "speaker.cli", "run", "-c", str(self.config_path),
                "--log-format", "json"]  # fmt: skip
        self.proc = self.host.popen(self.name, argv, env=our_env())
        proc = self.proc

        def running() -> bool:
            proc.check_alive(f"speaker in {self.host.name}")
            return any(r.get("msg", "").startswith("speaker running") for r in self.records())

        wait_until(running, timeout=timeout, what=f"speaker in {self.host.name}")
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def records(self) -> list[dict[str, Any]]:
        assert self.proc is not None
        out = []
        for line in self.proc.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return out

    def find(self, text: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if text in r.get("msg", "")]

    def wait_log(self, text: str, *, after: int = 0, timeout: float = 10.0) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            hits = self.find(text)[after:]
            return hits[0] if hits else None

        return wait_until(probe, timeout=timeout, what=f"speaker log {text!r}")

    def terminate(self, timeout: float = 5.0) -> int | None:
        """SIGTERM and wait; the exit status."""
        assert self.proc is not None
        return self.proc.stop(timeout=timeout)

    def reload(self, config: str, timeout: float = 10.0) -> dict[str, Any]:
        """Write a new config and SIGHUP; the speaker's "reload ..." log record."""
        assert self.proc is not None
        seen = len(self.find("reload "))
        self.config_path.write_text(config)
        self.proc.send_signal(signal.SIGHUP)
        return self.wait_log("reload ", after=seen, timeout=timeout)
