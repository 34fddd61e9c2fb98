"""Our BGP speaker in a lab host: ``python -m speaker.bgp`` with a query API.

:class:`OurBgp` runs one standalone session and reads its JSON-line reports (state
changes, NOTIFICATIONs, End-of-RIBs, statistics on SIGUSR1); ``set_routes`` rewrites
the routes file and sends SIGHUP. Stopped by PID like every lab process.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lab.netns import Host
from lab.ours import our_env
from lab.proc import Process, wait_until


def vm_hwm_kb(pid: int) -> int:
    """Peak resident set size (VmHWM) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise LookupError(f"no VmHWM for {pid}")


class OurBgp:
    def __init__(
        self,
        host: Host,
        *,
        peer: str,
        peer_as: int,
        local_as: int,
        source: str | None = None,
        router_id: str | None = None,
        port: int = 179,
        password: str | None = None,
        hold: int = 90,
        multihop: int | None = None,
        gtsm: bool = False,
        passive: bool = False,
        connect_time: float = 3.0,
        connect_retry: float = 1.0,
        connect_retry_max: float = 10.0,
        routes: Iterable[str | dict[str, Any]] = (),
        announce_range: str | None = None,
        keep_adj_rib_in: bool = False,
        name: str = "bgp",
        extra: Iterable[str] = (),
        debug: bool = False,
    ) -> None:
        self.host = host
        self.name = name
        self.routes_path = host.lab.dir / f"{host.name}-{name}-routes.json"
        self.routes_path.write_text(json.dumps(list(routes)))
        argv = [
            sys.executable, "-m", "speaker.bgp", "--name", name, "--peer", peer,
            "--peer-as", str(peer_as), "--local-as", str(local_as), "--port", str(port),
            "--hold", str(hold), "--connect-time", str(connect_time),
            "--connect-retry", str(connect_retry), "--connect-retry-max", str(connect_retry_max),
            "--routes-file", str(self.routes_path),
        ]  # fmt: skip
        if source:
            argv += ["--source", source]
        if router_id:
            argv += ["--router-id", router_id]
        if password is not None:
            argv += ["--password", password]
        if multihop is not None:
            argv += ["--multihop", str(multihop)]
        if gtsm:
            argv.append("--gtsm")
        if passive:
            argv.append("--passive")
        if announce_range:
            argv += ["--announce-range", announce_range]
        if keep_adj_rib_in:
            argv.append("--keep-adj-rib-in")
        if debug:
            argv.append("--debug")
        argv += list(extra)
        self.argv = argv
        self.proc: Process | None = None

    def start(self, timeout: float = 20.0) -> OurBgp:
        self.proc = self.host.popen(self.name, self.argv, env=our_env())
        wait_until(self._started, timeout=timeout, what=f"our BGP in {self.host.name}")
        return self

    def _started(self) -> bool:
        assert self.proc is not None
        self.proc.check_alive(f"our BGP in {self.host.name}")
        return any(r["event"] == "started" for r in self.records())

    def stop(self) -> int | None:
        assert self.proc is not None
        return self.proc.stop()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def peak_rss_kb(self) -> int:
        return vm_hwm_kb(self.pid)

    def log_text(self) -> str:
        assert self.proc is not None
        return self.proc.log_path.read_text(errors="replace")

    def records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line still being written
        return out

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r["event"] == kind]

    def states(self) -> list[dict[str, Any]]:
        return self.events("state")

    def state(self) -> str:
        states = self.states()
        return states[-1]["new"] if states else "Idle"

    def wait_state(self, new: str, *, after: int = 0, timeout: float = 30.0) -> dict[str, Any]:
        """The first state change to ``new`` (e.g. "Established") among changes number
        ``after`` and later."""

        def probe() -> dict[str, Any] | None:
            assert self.proc is not None
            self.proc.check_alive(f"our BGP in {self.host.name}")
            for record in self.states()[after:]:
                if record["new"] == new:
                    return record
            return None

        return wait_until(probe, timeout=timeout, what=f"our BGP {self.host.name} {new}")

    def stats(self, timeout: float = 10.0) -> dict[str, Any]:
        assert self.proc is not None
        seen = len(self.events("stats"))
        self.proc.send_signal(signal.SIGUSR1)

        def probe() -> dict[str, Any] | None:
            stats = self.events("stats")
            return stats[-1] if len(stats) > seen else None

        return wait_until(probe, timeout=timeout, what="our BGP statistics")

    def set_routes(self, routes: Iterable[str | dict[str, Any]], timeout: float = 10.0) -> None:
        """Replace the announced routes (``--announce`` strings or objects) via SIGHUP."""
        assert self.proc is not None
        seen = sum(1 for r in self.records() if r["event"].startswith("routes"))
        self.routes_path.write_text(json.dumps(list(routes)))
        self.proc.send_signal(signal.SIGHUP)
        wait_until(
            lambda: sum(1 for r in self.records() if r["event"].startswith("routes")) > seen,
            timeout=timeout,
            what="routes applied",
        )
