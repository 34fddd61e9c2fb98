"""``python -m speaker.bgp``: its options become the BgpPeerConfig they name."""

from __future__ import annotations

from pathlib import Path

from protocols.bgp import IPV4_UNICAST, IPV6_UNICAST
from speaker.bgp.__main__ import config_from_args, make_parser
from speaker.bgp.config import BgpPeerConfig

REQUIRED = ["--peer", "198.18.1.1", "--peer-as", "65001", "--local-as", "65000"]


def config(*argv: str) -> BgpPeerConfig:
    return config_from_args(make_parser().parse_args([*REQUIRED, *argv]), {})


def test_defaults() -> None:
    assert config("--router-id", "198.18.1.2") == BgpPeerConfig(
        name="198.18.1.1",
        peer_address="198.18.1.1",
        peer_asn=65001,
        local_asn=65000,
        router_id="198.18.1.2",
        listen=False,  # the tool only listens when asked (or passive)
        extended_message=True,  # and offers RFC 8654 unless told not to
        families=(IPV4_UNICAST,),
    )


def test_every_option(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("from-the-file\n")
    got = config(
        "--peer", "2001:2::1", "--router-id", "198.18.0.1", "--name", "r1",
        "--source", "2001:2::2", "--port", "1179", "--listen-port", "2179",
        "--password", "ignored", "--password-file", str(key), "--hold", "30",
        "--keepalive", "5", "--connect-time", "3", "--connect-retry", "0.5",
        "--connect-retry-max", "8", "--multihop", "2", "--gtsm", "--passive",
        "--hostname", "h.example", "--no-extended-message", "--keep-adj-rib-in",
        "--next-hop4", "198.18.0.9", "--next-hop6", "2001:2::9",
    )  # fmt: skip
    assert got == BgpPeerConfig(
        name="r1",
        peer_address="2001:2::1",
        peer_asn=65001,
        local_asn=65000,
        router_id="198.18.0.1",
        peer_port=1179,
        listen_port=2179,
        source_address="2001:2::2",
        hold_time=30,
        keepalive_time=5.0,
        connect_time=3.0,
        connect_retry=0.5,
        connect_retry_max=8.0,
        password="from-the-file",
        ebgp_multihop=2,
        gtsm=True,
        passive=True,
        listen=True,
        hostname="h.example",
        extended_message=False,
        keep_adj_rib_in=True,
        next_hop4="198.18.0.9",
        next_hop6="2001:2::9",
        families=(IPV6_UNICAST,),
    )
    assert got.password == "from-the-file"
