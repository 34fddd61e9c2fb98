"""A reload right after a reload, against an in-process BGP router on loopback: the
router ends with exactly the routes of the last config, whatever the first reload
still does in the background (its Adj-RIB-Out comparing the tables in slices, the old
config freed in slices, a health check changing meanwhile), and across a session
reset between the two.

The shape of bench.scale_product's end (16,384 services, a reload removing 10,000 of
them, then one to the first 4,096 shortly after), where gobgpd was seen to keep the
6,383 routes of the first reload.
"""

from __future__ import annotations

import functools
from ipaddress import IPv4Network
from pathlib import Path

import pytest
import trio

from protocols.bgp import State
from speaker.app import Speaker
from speaker.bgp import session as session_module
from speaker.config import load_config
from speaker.plan import derive
from tests.helpers.bgp_peer import Peer, peer_core, wait_for

SERVICES, CHURN, LAST = 16384, 10000, 4096


def address(i: int) -> str:
    return f"198.19.{i // 256}.{i % 256}"


def config(tmp_path: Path, port: int, indexes: list[int], flap_at: int, flag: Path) -> str:
    """bench.scale_product's file: services ``s{i}`` for ``indexes``, and ``flap``
    (healthy while ``flag`` exists) at address ``flap_at``, all to ``r1``; ``r2`` (no
    routes) never connects."""
    services = "".join(f'[[services]]\nname = "s{i}"\naddress = "{address(i)}"\n' for i in indexes)
    return (
        f'[speaker]\nmy_asn = 64513\nrouter_id = "198.18.0.1"\nhold_down = "1s"\n'
        f'state_file = "{tmp_path}/state.json"\n'
        f'[[peers]]\nname = "r1"\npeer_address = "127.0.0.1"\npeer_port = {port}\n'
        'peer_asn = 64512\nconnect_time = "1s"\n'
        f'[[peers]]\nname = "r2"\npeer_address = "::1"\npeer_port = {port}\n'
        'peer_asn = 64999\nconnect_time = "1s"\n'
        '[[pools]]\nname = "vips"\naddresses = ["198.19.0.0/16"]\n'
        '[[advertisements]]\nname = "to-routers"\npeers = ["r1"]\n'
        f"{services}"
        f'[[services]]\nname = "flap"\naddress = "{address(flap_at)}"\n'
        f'health = {{ exec = ["test", "-e", "{flag}"], interval = "100ms", timeout = "1s",'
        " rise = 1, fall = 1 }\n"
    )


def hosts(count: int) -> set[IPv4Network]:
    return {IPv4Network(f"{address(i)}/32") for i in range(count)}


class Router:
    """A :class:`Peer` on one port that listens again each time a connection ends;
    ``peer`` is the current one, ``connections`` how many came after the first."""

    def __init__(self) -> None:
        self.peer = Peer(peer_core())
        self.connections = 0

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            port: int = await nursery.start(self.peer.serve)
            task_status.started(port)
        while True:
            self.peer = Peer(peer_core())
            self.connections += 1
            await self.peer.serve(port=port)

    def held(self) -> set[IPv4Network]:
        return {p for p in self.peer.announced() if isinstance(p, IPv4Network)}

    async def until_holds(self, want: set[IPv4Network], timeout: float = 30) -> None:
        with trio.move_on_after(timeout):
            while self.peer.closed.is_set() or self.held() != want:
                await trio.sleep(0.1)
        held = self.held()
        assert held == want, (
            f"the router holds {len(held)} routes: {len(held - want)} not in the last"
            f" config, {len(want - held)} of it missing"
        )


async def start(
    nursery: trio.Nursery, tmp_path: Path, flag: Path
) -> tuple[Speaker, Router, Path, int]:
    router = Router()
    port: int = await nursery.start(router.run)
    file = tmp_path / "speaker.toml"
    file.write_text(config(tmp_path, port, list(range(SERVICES - 1)), SERVICES - 1, flag))
    speaker = Speaker(derive(load_config(file)), config_path=str(file))
    await nursery.start(functools.partial(speaker.run, handle_signals=False))
    await router.until_holds(hosts(SERVICES))
    return speaker, router, file, port


async def reload(speaker: Speaker, file: Path, text: str) -> None:
    file.write_text(text)
    result = await speaker.reload_file()
    assert result.ok, result.errors


def churned(count: int) -> list[int]:
    """The services left by bench.scale_product's reload that removes CHURN of them
    (those just below ``flap``)."""
    removed = range(count - 1 - CHURN, count - 1)
    return [i for i in range(count - 1) if i not in removed]


@pytest.mark.parametrize("flapping", [True])
@pytest.mark.parametrize("gap", [0.0, 0.6])
async def test_a_reload_right_after_a_reload_leaves_the_routes_of_the_last(
    nursery: trio.Nursery, tmp_path: Path, gap: float, flapping: bool
) -> None:
    flag = tmp_path / "flap-healthy"
    flag.touch()
    speaker, router, file, port = await start(nursery, tmp_path, flag)
    flaps = trio.CancelScope()

    async def flap() -> None:
        with flaps:
            while True:
                await trio.sleep(0.15)
                flag.unlink()
                await trio.sleep(0.15)
                flag.touch()

    if flapping:
        nursery.start_soon(flap)
    await reload(speaker, file, config(tmp_path, port, churned(SERVICES), SERVICES - 1, flag))
    await trio.sleep(gap)
    await reload(speaker, file, config(tmp_path, port, list(range(LAST - 1)), LAST - 1, flag))
    await trio.sleep(1)
    flaps.cancel()
    flag.touch()
    await router.until_holds(hosts(LAST))
    assert router.connections == 0  # one session throughout
    await speaker.shutdown()


@pytest.mark.parametrize("batch", [7])
@pytest.mark.parametrize("gap", [0.0])
async def test_a_reload_while_the_last_one_still_compares_its_tables(
    nursery: trio.Nursery,
    tmp_path: Path,
    gap: float,
    batch: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One batch of ``batch`` routes per driver step, none while anything is queued:
    the first reload's withdrawals are still going out when the second one comes."""
    flag = tmp_path / "flap-healthy"
    flag.touch()
    speaker, router, file, port = await start(nursery, tmp_path, flag)
    monkeypatch.setattr(session_module, "BATCH_PREFIXES", batch)
    monkeypatch.setattr(session_module, "HIGH_WATER", 1)
    await reload(speaker, file, config(tmp_path, port, churned(SERVICES), SERVICES - 1, flag))
    await trio.sleep(gap)
    bgp = speaker.peers["r1"].bgp
    assert bgp is not None
    assert bgp.rib_out.pending > 0  # still comparing
    await reload(speaker, file, config(tmp_path, port, list(range(LAST - 1)), LAST - 1, flag))
    await router.until_holds(hosts(LAST), timeout=60)
    await speaker.shutdown()


@pytest.mark.parametrize("when", ["down", "up"])
async def test_a_reload_after_a_session_reset_between_two_reloads(
    nursery: trio.Nursery, tmp_path: Path, when: str
) -> None:
    """The router closes the session after the first reload; the second comes while
    the session is down, while it comes back, or once it is back."""
    flag = tmp_path / "flap-healthy"
    flag.touch()
    speaker, router, file, port = await start(nursery, tmp_path, flag)
    await reload(speaker, file, config(tmp_path, port, churned(SERVICES), SERVICES - 1, flag))
    bgp = speaker.peers["r1"].bgp
    assert bgp is not None
    router.peer.closed.set()
    await wait_for(lambda: bgp.state is not State.ESTABLISHED)
    if when != "down":
        await wait_for(lambda: router.peer.sock is not None)
    if when == "up":
        await wait_for(lambda: bgp.state is State.ESTABLISHED)
    await reload(speaker, file, config(tmp_path, port, list(range(LAST - 1)), LAST - 1, flag))
    await router.until_holds(hosts(LAST))
    await speaker.shutdown()
