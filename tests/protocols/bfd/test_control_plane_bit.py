"""RFC 5880 §4.1 C bit (Control Plane Independent).

Our BFD runs in the speaker's process, so it shares fate with the control plane: every
packet we send has C = 0, whatever the peer sends (a router that checks it, such as
FRR's ``check-control-plane-failure``, then keeps our routes while we restart under
graceful restart). The peer's C bit is exposed as ``remote_control_plane_independent``.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.bfd import (
    AuthConfig,
    AuthType,
    Session,
    SessionConfig,
    State,
)
from tests.helpers.bfd_core import FAST, LOCAL, events, feed, make, peer, sent


def test_we_send_c_bit_clear_and_record_the_peers() -> None:
    s = make()
    assert not s.remote_control_plane_independent  # nothing heard yet
    s.handle_timer(0.0)
    first = sent(s)
    assert first and not any(p.control_plane_independent for p in first)
    # A peer whose BFD lives in its forwarding plane (C = 1).
    assert feed(s, peer(State.INIT, control_plane_independent=True), 0.01) is None
    assert s.state is State.UP
    assert s.remote_control_plane_independent
    replies = sent(s)
    assert replies and not any(p.control_plane_independent for p in replies)
    # The raw C bit (0x08 of the flags octet) is clear on the wire.
    s.handle_timer(1.0)
    raw = s.datagrams_to_send()
    assert raw and all(d[1] & 0x08 == 0 for d in raw)
    # The peer's bit follows its latest accepted packet.
    assert feed(s, peer(State.UP, control_plane_independent=False), 1.01) is None
    assert not s.remote_control_plane_independent


def test_peer_c_bit_forgotten_after_detection_time() -> None:
    s = make()
    assert feed(s, peer(State.INIT, control_plane_independent=True), 0.01) is None
    assert s.remote_control_plane_independent
    events(s)
    s.handle_timer(10.0)  # long silence: Detection Time expires
    assert s.state is State.DOWN
    assert not s.remote_control_plane_independent


def test_discarded_packet_does_not_change_peer_c_bit() -> None:
    s = make()
    assert feed(s, peer(State.INIT), 0.01) is None
    bad = peer(State.UP, control_plane_independent=True, detect_mult=0)
    assert feed(s, bad, 0.02) is not None
    assert not s.remote_control_plane_independent


def test_c_bit_clear_with_authentication() -> None:
    auth = AuthConfig(type=AuthType.KEYED_SHA1, keys={1: b"secret"}, send_key_id=1)
    s = Session(
        SessionConfig(
            desired_min_tx_us=FAST.desired_min_tx_us,
            required_min_rx_us=FAST.required_min_rx_us,
            detect_mult=3,
            auth=auth,
        ),
        rng=random.Random(0),
        now=0.0,
        local_discriminator=LOCAL,
    )
    s.handle_timer(0.0)
    raw = s.datagrams_to_send()
    assert raw and all(d[1] & 0x08 == 0 for d in raw)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=20))
def test_c_bit_always_clear_whatever_the_peer_sends(peer_bits: list[bool]) -> None:
    s = make()
    now = 0.0
    state = State.INIT
    for bit in peer_bits:
        now += 0.01
        feed(s, peer(state, control_plane_independent=bit), now)
        state = State.UP
        s.handle_timer(now)
        assert s.remote_control_plane_independent is bit
        assert not any(p.control_plane_independent for p in sent(s))
