"""A Peer is a PeerSpec with what validation resolved: the same fields, copied by name."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from pathlib import Path

import attrs

from speaker.config.model import Peer, PeerSpec


def test_peer_has_the_fields_of_a_peer_spec() -> None:
    assert [f.name for f in attrs.fields(Peer)] == [f.name for f in attrs.fields(PeerSpec)]


def test_resolved_takes_the_rest_from_the_spec() -> None:
    spec = PeerSpec(
        name="tor", peer_address=ipaddress.ip_address("198.18.1.1"), peer_asn=65001,
        peer_port=1179, interface="eth1", passive=True, ebgp_multihop=2,
        connect_retry=timedelta(seconds=2), password_file=Path("key"),
    )  # fmt: skip
    peer = Peer.resolved(
        spec, my_asn=65000, bfd_profile=None, hold_time=timedelta(seconds=30),
        keepalive_time=timedelta(seconds=10), password="k", password_file=Path("/etc/key"),
    )  # fmt: skip
    assert peer == Peer(
        name="tor", peer_address=ipaddress.ip_address("198.18.1.1"), peer_asn=65001,
        my_asn=65000, peer_port=1179, interface="eth1", passive=True, ebgp_multihop=2,
        connect_retry=timedelta(seconds=2), hold_time=timedelta(seconds=30),
        keepalive_time=timedelta(seconds=10), password="k", password_file=Path("/etc/key"),
    )  # fmt: skip
