"""``speaker check`` asks this host what the peers need: interfaces, routes, source
addresses (speaker/hostcheck.py). The kernel's answers are replaced where the test
host cannot be made to give them; the real probes are exercised on what every host
has (``lo``, 127.0.0.1) and lacks (an interface named ``nosuch9``, 198.18.255.254)."""

from __future__ import annotations

import errno
from collections.abc import Collection
from pathlib import Path

import pytest

from speaker.cli import main
from speaker.config import IPAddress, loads_config
from speaker.hostcheck import Host, host_issues
from speaker.netlookup import LinkInfo

FILE = """
[speaker]
my_asn = 64513
node_name = "n1"

[[peers]]
name = "tor"
peer_address = "127.0.0.1"
peer_asn = 64512
interface = "{interface}"

[[peers]]
name = "far"
peer_address = "198.18.7.1"
peer_asn = 64512
source_address = "{source}"
ebgp_multihop = true

[[peers]]
name = "elsewhere"
peer_address = "198.18.9.1"
peer_asn = 64512
interface = "not-here-either"
node_selectors = [{{ match_labels = {{ rack = "r9" }} }}]
"""


ROUTER_ID = 'router ID: 127.0.0.1 (source_address of peer "far", the first IPv4 one of this node)'


def config_text(*, interface: str = "lo", source: str = "127.0.0.1") -> str:
    return FILE.format(interface=interface, source=source)


def fake(
    *,
    interfaces: Collection[str] = ("lo", "eth0", "eth1"),
    unreachable: frozenset[str] = frozenset(),
) -> Host:
    def route_error(peer: IPAddress) -> OSError | None:
        if str(peer) in unreachable:
            return OSError(errno.ENETUNREACH, "Network is unreachable")
        return None

    return Host(interfaces=lambda: interfaces, route_error=route_error)


def test_a_misspelled_interface_is_an_error_with_a_suggestion() -> None:
    config = loads_config(config_text(interface="eht0"))
    found = host_issues(config, host=fake())
    assert [str(e) for e in found.errors] == [
        'peers[0].interface: no interface "eht0" on this host (did you mean "eth0"?)'
    ]
    assert found.warnings == ()  # the peer for another node is not asked about


def test_without_strict_a_missing_interface_is_a_warning() -> None:
    config = loads_config(config_text(interface="vlan42"))
    found = host_issues(config, strict=False, host=fake())
    assert found.errors == ()
    assert [str(w) for w in found.warnings] == [
        'peers[0].interface: no interface "vlan42" on this host (interfaces: eth0, eth1, lo)'
    ]


def test_a_peer_without_a_route_is_a_warning() -> None:
    config = loads_config(config_text())
    found = host_issues(config, host=fake(unreachable=frozenset({"198.18.7.1"})))
    assert found.errors == ()
    assert [str(w) for w in found.warnings] == [
        "peers[1].peer_address: no route to 198.18.7.1 on this host (Network is unreachable):"
        " the session cannot connect until there is one"
    ]


def test_the_real_probes() -> None:
    """Real kernel: ``lo`` and a route to 127.0.0.1 exist everywhere; 198.18.255.254
    is nobody's address (RFC 2544 benchmarking range, used only by our labs)."""
    config = loads_config(config_text(source="198.18.255.254"))
    found = host_issues(config)
    assert found.errors == ()
    assert [str(w) for w in found.warnings if "source_address" in w.path] == [
        "peers[1].source_address: 198.18.255.254 is not an address of this host: the"
        " session cannot start until it is"
    ]
    config = loads_config(config_text(interface="nosuch9"))
    assert [e.path for e in host_issues(config).errors] == ["peers[0].interface"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], list[str]]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out.splitlines(), err.splitlines()


def test_check_reports_a_missing_interface(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    file = tmp_path / "speaker.toml"
    file.write_text(config_text(interface="nosuch9"))
    status, out, err = run(capsys, "check", "-c", str(file))
    assert status == 2
    assert out == []
    assert err[0].startswith(f'{file}: peers[0].interface: no interface "nosuch9" on this host')
    assert err[-1] == f"{file}: 1 error"

    status, out, err = run(capsys, "check", "--host-checks", "warn", "-c", str(file))
    assert status == 0
    assert out == ["ok: 3 peers, 0 pools, 0 services", ROUTER_ID]
    assert err[0].startswith(f'warning: {file}: peers[0].interface: no interface "nosuch9"')

    status, out, err = run(capsys, "check", "--host-checks", "off", "-c", str(file))
    assert (status, out, err) == (0, ["ok: 3 peers, 0 pools, 0 services", ROUTER_ID], [])


def test_check_passes_a_file_this_host_can_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    file = tmp_path / "speaker.toml"
    file.write_text(config_text().replace("198.18.7.1", "127.0.0.7"))
    assert run(capsys, "check", "-c", str(file)) == (
        0,
        ["ok: 3 peers, 0 pools, 0 services", ROUTER_ID],
        [],
    )


# ---- VRF ---------------------------------------------------------------------------

VRF_FILE = """
[speaker]
my_asn = 64513
node_name = "n1"

[[peers]]
name = "red-tor"
peer_address = "198.18.1.1"
peer_asn = 64512
vrf = "{vrf}"
interface = "{interface}"
"""

LINKS = (
    LinkInfo(index=1, name="lo"),
    LinkInfo(index=2, name="eth0"),
    LinkInfo(index=3, name="eth1", master=5),
    LinkInfo(index=4, name="eth2", master=6),
    LinkInfo(index=5, name="red", kind="vrf", table=10),
    LinkInfo(index=6, name="blue", kind="vrf", table=20),
)


def vrf_host(asked: list[tuple[str, str]] | None = None) -> Host:
    def route_error_in(peer: IPAddress, vrf: str) -> OSError | None:
        if asked is not None:
            asked.append((str(peer), vrf))
        return None

    return Host(
        interfaces=lambda: [link.name for link in LINKS],
        links=lambda: LINKS,
        route_error=lambda peer: OSError(errno.ENETUNREACH, "not in the default VRF"),
        route_error_in=route_error_in,
    )


def vrf_config(*, vrf: str = "red", interface: str = "eth1") -> str:
    return VRF_FILE.format(vrf=vrf, interface=interface)


def test_a_vrf_peer_on_its_vrf_is_clean_and_its_route_is_asked_in_the_vrf() -> None:
    asked: list[tuple[str, str]] = []
    found = host_issues(loads_config(vrf_config()), host=vrf_host(asked))
    assert (found.errors, found.warnings) == ((), ())
    assert asked == [("198.18.1.1", "red")]


def test_a_missing_vrf_is_an_error_with_a_suggestion() -> None:
    found = host_issues(loads_config(vrf_config(vrf="rde")), host=vrf_host())
    assert [str(e) for e in found.errors] == ['peers[0].vrf: no VRF "rde" on this host (did you'
                                              ' mean "red"?)']  # fmt: skip
    found = host_issues(loads_config(vrf_config(vrf="green")), strict=False, host=vrf_host())
    assert found.errors == ()
    assert [str(w) for w in found.warnings] == [
        'peers[0].vrf: no VRF "green" on this host (VRFs: blue, red)'
    ]


def test_a_device_that_is_not_a_vrf_is_an_error() -> None:
    found = host_issues(loads_config(vrf_config(vrf="eth0")), host=vrf_host())
    assert [str(e) for e in found.errors] == [
        'peers[0].vrf: "eth0" is a device of kind none, not a VRF'
    ]


def test_an_interface_not_enslaved_to_the_vrf_is_an_error() -> None:
    found = host_issues(loads_config(vrf_config(interface="eth2")), host=vrf_host())
    assert [str(e) for e in found.errors] == [
        'peers[0].interface: interface "eth2" is not enslaved to VRF "red" (it is in VRF blue;'
        " ip link set eth2 master red)"
    ]
    found = host_issues(loads_config(vrf_config(interface="eth0")), host=vrf_host())
    assert [str(e) for e in found.errors] == [
        'peers[0].interface: interface "eth0" is not enslaved to VRF "red" (it is in the'
        " default VRF; ip link set eth0 master red)"
    ]


def test_an_interface_in_a_vrf_for_a_peer_without_vrf_is_a_warning() -> None:
    text = vrf_config().replace('vrf = "red"\n', "")
    found = host_issues(loads_config(text), host=vrf_host())
    assert found.errors == ()
    assert str(found.warnings[0]) == (
        'peers[0].interface: interface "eth1" is in VRF "red" but the peer has no vrf: its'
        ' sessions would use the default VRF (set vrf = "red")'
    )


def test_the_real_vrf_probe_on_a_host_without_that_vrf() -> None:
    """Real kernel: no device "nosuchvrf9" here; check reports it on the vrf key."""
    found = host_issues(loads_config(vrf_config(vrf="nosuchvrf9", interface="lo")))
    assert [e.path for e in found.errors] == ["peers[0].vrf"]
    found = host_issues(loads_config(vrf_config(vrf="lo", interface="lo")))
    assert [str(e) for e in found.errors] == [
        'peers[0].vrf: "lo" is a device of kind none, not a VRF'
    ]
