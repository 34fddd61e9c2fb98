"""A whole speaker in the test's process (its own BFD endpoint on a private port pair, a
control socket in the test's directory), and waiting on an async probe."""

from __future__ import annotations

import functools
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from speaker import cli
from speaker.app import Speaker
from speaker.bfd.runtime import BfdEndpoint
from speaker.config import load_config
from speaker.control import ControlServer, request
from speaker.plan import derive

BFD_PORT = 23784  # a private pair of ports: the session's packets come back to itself


def free_port() -> int:
    """A TCP port nobody listens on now (the peers' port: our connects are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def speaker_toml(tmp_path: Path, *, bgp_port: int, extra: str = "") -> str:
    """The config: two loopback peers (r1 with BFD to itself, r2), one elsewhere, two
    pools, services web/api/db; every secret of :data:`tests.helpers.configs.SECRETS`."""
    (tmp_path / "tor.key").write_text("file-SECRET-2\n")
    return f"""
[speaker]
my_asn = 64513
router_id = "10.0.0.1"
node_name = "n1"
state_file = "state.json"
allocation = "node-local"

[control]
socket = "speaker.sock"

[[bfd_profiles]]
name = "fast"
transmit_interval = 50
receive_interval = 50
[bfd_profiles.auth]
type = "meticulous-keyed-sha1"
keys = {{ "1" = "bfd-SECRET-3", "2" = "bfd-SECRET-4" }}
send_key_id = 1

[[peers]]
name = "r1"
peer_address = "127.0.0.1"
peer_port = {bgp_port}
peer_asn = 64512
password = "md5-SECRET-1"
bfd_profile = "fast"
hold_time = "9s"
connect_time = "100ms"

[[peers]]
name = "r2"
peer_address = "127.0.0.3"
peer_port = {bgp_port}
peer_asn = 64512
password_file = "tor.key"
connect_time = "100ms"

[[peers]]
name = "elsewhere"
peer_address = "127.0.0.2"
peer_asn = 64512
node_selectors = [{{ match_labels = {{ rack = "r9" }} }}]

[[pools]]
name = "vips"
addresses = ["198.19.0.0/24"]

[[pools]]
name = "all"
addresses = ["198.19.1.0/30"]
announce_all = true

[[advertisements]]
name = "to-r1"
peers = ["r1"]
communities = ["65000:100", "large:1:2:3"]

[[services]]
name = "web"
address = "198.19.0.10"
health = {{ exec = ["true"], interval = "50ms", rise = 1 }}

[[services]]
name = "api"
address = "198.19.0.11"
health = {{ http = "http://admin:url-SECRET-5@127.0.0.1:1/x", interval = "50ms", timeout = "50ms" }}

[[services]]
name = "db"
pool = "vips"
{extra}
"""


class Running:
    """The running speaker, its control socket ``path`` and its config file."""

    def __init__(self, speaker: Speaker, path: Path, config: Path) -> None:
        self.speaker, self.path, self.config = speaker, path, config

    async def ask(self, command: str, **args: Any) -> Any:
        return await trio.to_thread.run_sync(functools.partial(request, self.path, command, **args))

    async def cli(self, *argv: str) -> int:
        return await trio.to_thread.run_sync(cli.main, list(argv))


@asynccontextmanager
async def running_speaker(tmp_path: Path, extra: str = "") -> AsyncIterator[Running]:
    """A speaker of :func:`speaker_toml` (plus ``extra``) with its control server, shut
    down at the end. Its BFD talks to itself: ask for the ``bfd_not_held`` fixture."""
    file = tmp_path / "speaker.toml"
    file.write_text(speaker_toml(tmp_path, bgp_port=free_port(), extra=extra))
    config = load_config(file)
    endpoint = BfdEndpoint(ports=(BFD_PORT, BFD_PORT + 1000),
                           peer_ports=(BFD_PORT, BFD_PORT + 1000))  # fmt: skip
    speaker = Speaker(derive(config), config_path=str(file), bfd_endpoint=endpoint)
    async with trio.open_nursery() as nursery:
        await nursery.start(functools.partial(speaker.run, handle_signals=False))
        server = ControlServer(speaker, config.control.socket, config.control.mode_bits)
        await nursery.start(server.serve)
        try:
            yield Running(speaker, config.control.socket, file)
        finally:
            await speaker.shutdown()
            nursery.cancel_scope.cancel()


async def wait_until(probe: Any, timeout: float = 5.0) -> Any:
    """Await ``probe()`` every 50 ms until it returns something true, and return that."""
    with trio.fail_after(timeout):
        while not (value := await probe()):
            await trio.sleep(0.05)
    return value


async def is_healthy(spk: Running, service: str) -> bool:
    """A probe for :func:`wait_until`: ``service`` passes its health check."""
    return service in spk.speaker.healthy
