"""Health checks for services: TCP connect, HTTP status, or a command's exit code.

Each checked service has its own task probing every ``interval`` (bounded by
``timeout``); ``rise`` consecutive successes make it healthy, ``fall`` consecutive
failures unhealthy (ExaBGP's healthcheck semantics). A service starts unhealthy, so
nothing is announced before it has proven itself. A service without a check is
always healthy.

Changes are sent as :class:`HealthChanged` on a channel; the owner turns them into
announcements and withdrawals.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Sequence

import attrs
import trio

__all__ = ["HealthChanged", "HealthSpec", "HealthTracker", "probe", "watch"]

log = logging.getLogger("speaker.health")


@attrs.frozen(kw_only=True)
class HealthSpec:
    """One check: exactly one of ``tcp`` ("host:port"), ``http`` (URL) or ``exec``."""

    tcp: str | None = None
    http: str | None = None
    exec: tuple[str, ...] | None = None
    expected_status: int = 200
    interval: float = 5.0
    timeout: float = 2.0
    rise: int = 2
    fall: int = 3

    def __attrs_post_init__(self) -> None:
        kinds = [k for k in (self.tcp, self.http, self.exec) if k]
        if len(kinds) != 1:
            raise ValueError("a health check needs exactly one of tcp, http, exec")

    def describe(self) -> str:
        if self.tcp:
            return f"tcp {self.tcp}"
        if self.http:
            return f"http {self.http} (expect {self.expected_status})"
        return "exec " + " ".join(self.exec or ())


@attrs.frozen
class HealthChanged:
    service: str
    healthy: bool
    detail: str
    at: float


@attrs.define
class HealthTracker:
    """rise/fall hysteresis over probe results."""

    rise: int
    fall: int
    healthy: bool = False
    successes: int = 0
    failures: int = 0

    def record(self, ok: bool) -> bool:
        """Count one result; True when the health state flipped."""
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if not self.healthy and self.successes >= self.rise:
                self.healthy = True
                return True
        else:
            self.failures, self.successes = self.failures + 1, 0
            if self.healthy and self.failures >= self.fall:
                self.healthy = False
                return True
        return False


def _split_host_port(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host.strip("[]"), int(port)


async def _probe_tcp(target: str) -> str:
    host, port = _split_host_port(target)
    stream = await trio.open_tcp_stream(host, port)
    await stream.aclose()
    return "connected"


async def _probe_http(url: str, expected: int) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"unsupported URL scheme {parts.scheme!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
    if parts.scheme == "https":
        import ssl

        stream = trio.SSLStream(stream, ssl.create_default_context(), server_hostname=host)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    request = (
        f"GET {path} HTTP/1.0\r\nHost: {parts.netloc}\r\nUser-Agent: speaker-health\r\n"
        "Connection: close\r\n\r\n"
    )
    async with stream:
        await stream.send_all(request.encode())
        head = b""
        while b"\r\n" not in head and len(head) < 8192:
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            head += chunk
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    fields = status_line.split()
    if len(fields) < 2 or not fields[1].isdigit():
        raise ValueError(f"not an HTTP response: {status_line[:60]!r}")
    status = int(fields[1])
    if status != expected:
        raise ValueError(f"status {status}, expected {expected}")
    return f"status {status}"


async def _probe_exec(argv: Sequence[str]) -> str:
    result = await trio.run_process(
        list(argv),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        deliver_cancel=_kill,  # a check that overran its timeout gets no grace
    )
    if result.returncode != 0:
        err = (result.stderr or b"").decode(errors="replace").strip().splitlines()
        raise ValueError(f"exit {result.returncode}" + (f": {err[-1][:120]}" if err else ""))
    return "exit 0"


async def _kill(process: trio.Process) -> None:
    process.kill()


async def probe(spec: HealthSpec) -> tuple[bool, str]:
    """Run the check once, within its timeout. Never raises for a failed check."""
    with trio.move_on_after(spec.timeout) as scope:
        try:
            if spec.tcp:
                detail = await _probe_tcp(spec.tcp)
            elif spec.http:
                detail = await _probe_http(spec.http, spec.expected_status)
            else:
                detail = await _probe_exec(spec.exec or ())
        except (OSError, ValueError, trio.BrokenResourceError) as exc:
            return False, str(exc) or type(exc).__name__
        return True, detail
    assert scope.cancelled_caught
    return False, f"timed out after {spec.timeout:g}s"


async def watch(
    service: str,
    spec: HealthSpec,
    changes: trio.MemorySendChannel[HealthChanged],
    *,
    healthy: bool = False,
) -> None:
    """Probe forever on a fixed schedule; send a change whenever rise/fall flips.

    ``healthy`` is the state to start from (a reload that changes a check keeps the
    service's current state until the new check says otherwise)."""
    tracker = HealthTracker(rise=spec.rise, fall=spec.fall, healthy=healthy)
    next_at = trio.current_time()
    async with changes:
        while True:
            ok, detail = await probe(spec)
            if tracker.record(ok):
                state = "healthy" if tracker.healthy else "unhealthy"
                log.info("health %s: %s (%s: %s)", service, state, spec.describe(), detail)
                await changes.send(
                    HealthChanged(service, tracker.healthy, detail, trio.current_time())
                )
            # A fixed schedule: a slow probe does not push later ones back.
            next_at += spec.interval
            now = trio.current_time()
            while next_at <= now:  # skip slots a slow probe overran
                next_at += spec.interval
            await trio.sleep_until(next_at)
