"""Our BFD authentication against BIRD 2, the lab's reference for RFC 5880 §6.7."""

from __future__ import annotations

import time

import pytest

from lab import Lab
from lab.bird import AUTH_TYPES, BfdNeighbor, Bird, bfd_protocol
from lab.ours import OurBfd
from tests.helpers import Require

pytestmark = pytest.mark.lab


def start_pair(
    lab: Lab, *, bird_auth: str | None, bird_secret: str, our_auth: str | None, our_secret: str,
    key_id: int = 3,
) -> tuple[Bird, OurBfd, str, str]:  # fmt: skip
    rtr, spk = lab["rtr1"], lab["spk"]
    r_addr, s_addr = str(rtr.addr4("spk")), str(spk.addr4("rtr1"))
    neighbor = BfdNeighbor(
        address=s_addr, local=r_addr, interface="to-spk", interval_ms=100,
        auth=bird_auth, password=bird_secret, key_id=key_id,
    )  # fmt: skip
    bird = Bird(rtr, router_id=r_addr, config=bfd_protocol([neighbor])).start()
    ours = OurBfd(
        spk, peer=r_addr, local=s_addr, interface="to-rtr1", tx=100, rx=100,
        auth=our_auth, key_id=key_id, secret=our_secret,
    ).start()  # fmt: skip
    return bird, ours, r_addr, s_addr


@pytest.mark.parametrize("auth", sorted(AUTH_TYPES))
def test_each_auth_type_comes_up_with_a_matching_key(
    lab: Lab, lab_require: Require, auth: str
) -> None:
    lab_require("bird")
    bird, ours, _r, s_addr = start_pair(
        lab, bird_auth=auth, bird_secret="s3cret-key", our_auth=auth, our_secret="s3cret-key"
    )
    ours.wait_state("UP", timeout=5)
    bird.wait_bfd_state(s_addr, "Up", timeout=5)
    time.sleep(1.0)  # a second of authenticated traffic at 100 ms, both ways
    stats = ours.stats()
    assert stats["state"] == "UP" and not stats["discards"], stats["discards"]
    assert stats["control_rx"] >= 8


@pytest.mark.parametrize("auth", ["simple", "keyed-sha1", "meticulous-keyed-md5"])
def test_wrong_key_stays_down_and_counts_rejects(lab: Lab, lab_require: Require, auth: str) -> None:
    lab_require("bird")
    bird, ours, _r, s_addr = start_pair(
        lab, bird_auth=auth, bird_secret="right-key", our_auth=auth, our_secret="wrong-key"
    )
    time.sleep(3.0)
    stats = ours.stats()
    assert stats["state"] != "UP"
    expected = "auth-bad-password" if auth == "simple" else "auth-bad-digest"
    assert stats["discards"].get(expected, 0) >= 2, stats["discards"]
    assert bird.bfd_sessions()[s_addr]["state"] != "Up"


def test_wrong_type_and_missing_auth_stay_down(lab: Lab, lab_require: Require) -> None:
    lab_require("bird")
    _bird, ours, _r, _s = start_pair(
        lab, bird_auth="keyed-md5", bird_secret="k", our_auth="keyed-sha1", our_secret="k"
    )
    time.sleep(2.5)
    stats = ours.stats()
    assert stats["state"] != "UP"
    assert stats["discards"].get("auth-type-mismatch", 0) >= 2, stats["discards"]


def test_unauthenticated_peer_is_rejected_when_we_require_auth(
    lab: Lab, lab_require: Require
) -> None:
    lab_require("bird")
    _bird, ours, _r, _s = start_pair(
        lab, bird_auth=None, bird_secret="", our_auth="keyed-sha1", our_secret="k"
    )
    time.sleep(2.5)
    stats = ours.stats()
    assert stats["state"] != "UP"
    assert stats["discards"].get("auth-missing", 0) >= 2, stats["discards"]
