"""lab.nfqdelay delays packets through NFQUEUE (the lab kernel has no netem).

The kernel lacks nft's native ``queue`` expression (CONFIG_NFT_QUEUE), so packets are
steered into the queue with iptables' NFQUEUE target (iptables-nft, via nft_compat).
"""

from __future__ import annotations

import itertools
import re
import struct
import subprocess
import sys
import time

import pytest

from lab import Host, Lab, Process, wait_until
from lab.nfqdelay import (
    NFNL_SUBSYS_QUEUE,
    NFQNL_MSG_PACKET,
    NFQNL_MSG_VERDICT,
    nfq_message,
    packet_id,
    parse_messages,
    verdict_message,
)
from tests.helpers import Require

pytestmark = pytest.mark.lab

QUEUE = "7"
RTR1 = "198.18.1.1"  # rtr1 on the rtr1-spk link of the default lab
_runs = itertools.count(1)


def start_delayer(host: Host, *args: str) -> Process:
    # A fresh log per start: the readiness check must not see an earlier run's line.
    name = f"nfqdelay{next(_runs)}"
    proc = host.popen(name, [sys.executable, "-m", "lab.nfqdelay", "--queue", QUEUE, *args])

    def ready() -> bool:
        if not proc.alive():
            raise AssertionError(f"nfqdelay exited early:\n{proc.log_tail()}")
        return "ready queue=" in proc.log_tail()

    wait_until(ready, timeout=5, what="nfqdelay ready")
    return proc


def queue_icmp(host: Host) -> None:
    """Echo requests leaving ``host`` go through the queue; bypass while nobody listens."""
    host.run(
        "iptables", "-A", "OUTPUT", "-p", "icmp", "-j", "NFQUEUE",
        "--queue-num", QUEUE, "--queue-bypass",
    )  # fmt: skip


def ping_rtts(host: Host, count: int, interval: float) -> list[float]:
    out = host.run("ping", "-n", "-c", str(count), "-i", str(interval), "-W", "2", RTR1).stdout
    rtts = [float(m) for m in re.findall(r"time=([\d.]+) ms", out)]
    assert len(rtts) == count, out
    return rtts


def test_fixed_delay_bypass_and_flush_on_stop(lab: Lab, lab_require: Require) -> None:
    lab_require("ping", "iptables")
    spk = lab["spk"]
    queue_icmp(spk)
    assert max(ping_rtts(spk, 3, 0.05)) < 10, "bypass: no listener must mean no delay"

    proc = start_delayer(spk, "--delay-ms", "40")
    rtts = ping_rtts(spk, 5, 0.1)
    assert all(40 <= r < 80 for r in rtts), rtts

    assert proc.stop() == 0, proc.log_tail()
    assert "done queue=7 accepted=5 " in proc.log_tail()

    # A packet held when the delayer stops is accepted at once, not dropped.
    proc = start_delayer(spk, "--delay-ms", "3000")
    ping = subprocess.Popen(
        spk.exec_argv(["ping", "-n", "-c1", "-W", "5", RTR1]), stdout=subprocess.PIPE, text=True
    )
    time.sleep(0.3)
    t_stop = time.monotonic()
    assert proc.stop() == 0, proc.log_tail()
    out, _ = ping.communicate(timeout=5)
    assert time.monotonic() - t_stop < 1.0
    held = [float(m) for m in re.findall(r"time=([\d.]+) ms", out)]
    assert held and 250 <= held[0] < 1500, out
    assert "done queue=7 accepted=1 enobufs=0 verdict_errors=0" in proc.log_tail()

    assert max(ping_rtts(spk, 3, 0.05)) < 10, "after the delayer exits, bypass again"


def test_jitter_spreads_within_bounds(lab: Lab, lab_require: Require) -> None:
    lab_require("ping", "iptables")
    spk = lab["spk"]
    queue_icmp(spk)
    proc = start_delayer(spk, "--delay-ms", "20", "--jitter-ms", "10", "--seed", "1")
    rtts = ping_rtts(spk, 20, 0.05)
    # Never released early; late only by scheduling slack.
    assert min(rtts) >= 10 and max(rtts) < 30 + 15, rtts
    assert max(rtts) - min(rtts) > 5, f"no visible jitter: {rtts}"
    assert proc.stop() == 0, proc.log_tail()


def test_message_layout() -> None:
    """Pure encoding checks (no root): what the kernel expects, byte for byte."""
    v = verdict_message(7, 0x01020304, seq=9)
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", v)
    assert (length, kind, flags, seq) == (len(v), (3 << 8) | 1, 1, 9)
    assert v[16:20] == bytes([0, 0, 0, 7])  # nfgenmsg: AF_UNSPEC, v0, queue be16
    assert v[20:24] == struct.pack("=HH", 12, 2)  # NFQA_VERDICT_HDR, 8-byte payload
    assert v[24:32] == bytes([0, 0, 0, 1, 1, 2, 3, 4])  # NF_ACCEPT, id, both be32

    # A packet message as the kernel sends it: NFQA_PACKET_HDR {id be32, proto be16, hook}.
    hdr = struct.pack("!IHB", 77, 0x0800, 3)
    attr = struct.pack("=HH", 4 + len(hdr), 1) + hdr + b"\0"
    pkt = nfq_message(NFQNL_MSG_PACKET, 7, attr, seq=0)
    two = pkt + verdict_message(7, 1, seq=1)
    msgs = list(parse_messages(two))
    assert [k for k, _, _ in msgs] == [
        NFNL_SUBSYS_QUEUE << 8 | NFQNL_MSG_PACKET,
        NFNL_SUBSYS_QUEUE << 8 | NFQNL_MSG_VERDICT,
    ]
    assert packet_id(msgs[0][2]) == 77
    assert packet_id(msgs[1][2]) is None  # a verdict carries no packet header
    assert list(parse_messages(pkt[:-4])) == []  # truncated: ignored, not misread
