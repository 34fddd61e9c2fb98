"""Our own daemons in a lab host, with the same kind of query API as the others.

:class:`OurBfd` runs ``python -m speaker.bfd`` (one standalone BFD session) and reads
its JSON-line reports: state changes, statistics on SIGUSR1.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.netns import Host
from lab.proc import Process, wait_until

REPO = Path(__file__).resolve().parents[1]


def our_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


class OurProcess:
    """One of our programs in a lab host, reporting JSON lines on its stdout/stderr
    (which the lab writes to a log file). Started with :meth:`_launch`, stopped by
    PID."""

    what = "our program"

    def __init__(self, host: Host, name: str) -> None:
        self.host = host
        self.name = name
        self.proc: Process | None = None

    def _launch(self, argv: list[str], ready: Callable[[], bool], timeout: float) -> None:
        self.proc = self.host.popen(self.name, argv, env=our_env())
        proc = self.proc

        def probe() -> bool:
            proc.check_alive(f"{self.what} in {self.host.name}")
            return ready()

        wait_until(probe, timeout=timeout, what=f"{self.what} in {self.host.name}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, wait (then SIGKILL); the exit status."""
        assert self.proc is not None
        return self.proc.stop(timeout=timeout)

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

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("event") == kind]

    def states(self) -> list[dict[str, Any]]:
        return self.events("state")

    def wait_state(self, new: str, *, after: int = 0, timeout: float = 10.0) -> dict[str, Any]:
        """The first state change to ``new`` among changes number ``after`` and later."""

        def probe() -> dict[str, Any] | None:
            assert self.proc is not None
            self.proc.check_alive(f"{self.what} in {self.host.name}")
            for record in self.states()[after:]:
                if record["new"] == new:
                    return record
            return None

        return wait_until(probe, timeout=timeout, what=f"{self.what} {self.host.name} {new}")

    def stats(self, timeout: float = 5.0) -> dict[str, Any]:
        """Statistics the program prints on SIGUSR1."""
        return self._signal_and_wait(signal.SIGUSR1, "stats", timeout)

    def _signal_and_wait(self, sig: int, prefix: str, timeout: float) -> dict[str, Any]:
        """Send ``sig``; the first new record whose event starts with ``prefix``."""
        assert self.proc is not None
        seen = sum(1 for r in self.records() if str(r.get("event", "")).startswith(prefix))
        self.proc.send_signal(sig)

        def probe() -> dict[str, Any] | None:
            hits = [r for r in self.records() if str(r.get("event", "")).startswith(prefix)]
            return hits[-1] if len(hits) > seen else None

        return wait_until(probe, timeout=timeout, what=f"{self.what}: {prefix} after signal {sig}")


class OurBfd(OurProcess):
    what = "our BFD"

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
        super().__init__(host, name)
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

    def start(self, timeout: float = 10.0) -> OurBfd:
        self._launch(self.argv, lambda: bool(self.events("started")), timeout)
        return self

    def state(self) -> str:
        states = self.states()
        return states[-1]["new"] if states else "DOWN"

    def set_profile(self, **fields: Any) -> None:
        """Change the live session's profile (fields of BfdProfile) through SIGHUP."""
        self.profile_path.write_text(json.dumps(fields))
        self._signal_and_wait(signal.SIGHUP, "profile", 5.0)


class OurSpeaker(OurProcess):
    """``speaker run -c CONFIG --log-format json`` in a lab host; logs are JSON lines."""

    what = "speaker"

    def __init__(self, host: Host, config: str, *, name: str = "speaker") -> None:
        super().__init__(host, name)
        self.config_path = host.lab.dir / f"{host.name}-{name}.toml"
        self.config_path.write_text(config)
        self.state_path = host.lab.dir / f"{host.name}-{name}-state.json"

    def start(self, timeout: float = 15.0) -> OurSpeaker:
        argv = [sys.executable, "-m", "speaker.cli", "run", "-c", str(self.config_path),
                "--log-format", "json"]  # fmt: skip
        self._launch(argv, lambda: bool(self.find("speaker running")), timeout)
        return self

    def find(self, text: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if text in r.get("msg", "")]

    def wait_log(self, text: str, *, after: int = 0, timeout: float = 10.0) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            hits = self.find(text)[after:]
            return hits[0] if hits else None

        return wait_until(probe, timeout=timeout, what=f"speaker log {text!r}")

    def terminate(self, timeout: float = 5.0) -> int | None:
        """SIGTERM and wait; the exit status."""
        return self.stop(timeout)

    def reload(self, config: str, timeout: float = 10.0) -> dict[str, Any]:
        """Write a new config and SIGHUP; the speaker's "reload ..." log record."""
        assert self.proc is not None
        seen = len(self.find("reload "))
        self.config_path.write_text(config)
        self.proc.send_signal(signal.SIGHUP)
        return self.wait_log("reload ", after=seen, timeout=timeout)
