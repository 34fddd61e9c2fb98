"""Every field of MetalLB's current kinds: listed here from MetalLB's Go types, used in
tests/data/metallb/coverage, converted, accepted by ``speaker check``; each field not
carried over is a warning naming the file, the object and the field.

The lists are written from MetalLB's ``api/v1beta1/*_types.go`` and
``api/v1beta2/bgppeer_types.go`` (json names; ``status`` and metadata are not
fields of a spec). A field MetalLB adds is missing from the lists, from the
importer's known fields or from the manifests: one of the first tests fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from speaker.cli import main
from speaker.config import loads_config
from speaker.metallb import ImportOptions, convert_files
from speaker.metallb.advertisement import ADVERTISEMENT_FIELDS
from speaker.metallb.bfd_profile import BFD_FIELDS, BFD_FLAGS
from speaker.metallb.peer import (
    PEER_FIELDS_V1BETA1,
    PEER_FIELDS_V1BETA2,
    speaker_has,
    unnumbered_supported,
)
from speaker.metallb.pool import POOL_FIELDS

DATA = Path(__file__).parent.parent / "data" / "metallb"
COVERAGE = sorted((DATA / "coverage").glob("*.yaml"))

_SELECTOR = ("matchLabels", "matchExpressions", "matchExpressions.key",
             "matchExpressions.operator", "matchExpressions.values")  # fmt: skip

#: (kind, version) -> every field of the spec, nested ones dotted.
METALLB_FIELDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("BGPPeer", "v1beta2"): (
        "myASN", "peerASN", "localASN", "dynamicASN", "peerAddress", "interface",
        "sourceAddress", "peerPort", "holdTime", "keepaliveTime", "connectTime", "routerID",
        "nodeSelectors", *(f"nodeSelectors.{s}" for s in _SELECTOR), "password",
        "passwordSecret", "passwordSecret.name", "passwordSecret.namespace", "bfdProfile",
        "enableGracefulRestart", "ebgpMultiHop", "vrf", "disableMP", "dualStackAddressFamily",
    ),
    ("BGPPeer", "v1beta1"): (
        "myASN", "peerASN", "peerAddress", "sourceAddress", "peerPort", "holdTime",
        "keepaliveTime", "routerID", "nodeSelectors",
        *(f"nodeSelectors.{s}" for s in _SELECTOR), "password", "bfdProfile", "ebgpMultiHop",
    ),
    ("BFDProfile", "v1beta1"): (
        "receiveInterval", "transmitInterval", "detectMultiplier", "echoInterval", "echoMode",
        "passiveMode", "minimumTtl",
    ),
    ("IPAddressPool", "v1beta1"): (
        "addresses", "autoAssign", "avoidBuggyIPs", "serviceAllocation",
        "serviceAllocation.priority", "serviceAllocation.namespaces",
        "serviceAllocation.namespaceSelectors", "serviceAllocation.serviceSelectors",
    ),
    ("BGPAdvertisement", "v1beta1"): (
        "aggregationLength", "aggregationLengthV6", "localPref", "communities",
        "ipAddressPools", "ipAddressPoolSelectors", "nodeSelectors", "peers",
        "serviceSelectors",
    ),
    ("Community", "v1beta1"): ("communities", "communities.name", "communities.value"),
}  # fmt: skip

#: The importer's known top-level fields of each kind.
KNOWN: dict[tuple[str, str], tuple[str, ...]] = {
    ("BGPPeer", "v1beta2"): PEER_FIELDS_V1BETA2,
    ("BGPPeer", "v1beta1"): PEER_FIELDS_V1BETA1,
    ("BFDProfile", "v1beta1"): (*(f[0] for f in BFD_FIELDS), *(f[0] for f in BFD_FLAGS)),
    ("IPAddressPool", "v1beta1"): POOL_FIELDS,
    ("BGPAdvertisement", "v1beta1"): ADVERTISEMENT_FIELDS,
    ("Community", "v1beta1"): ("communities",),
}

#: Fields the speaker does not carry over in any form: (kind, name, spec path).
NOT_CARRIED = {
    ("IPAddressPool", "web", "spec.avoidBuggyIPs"),
    ("IPAddressPool", "web", "spec.serviceAllocation"),
    ("BGPAdvertisement", "web-to-tors", "spec.nodeSelectors"),
    ("BGPAdvertisement", "web-to-tors", "spec.serviceSelectors"),
}


def _paths(value: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}{key}"
            yield path
            yield from _paths(item, path + ".")
    elif isinstance(value, list):
        for item in value:
            yield from _paths(item, prefix)


def used_fields() -> dict[tuple[str, str], set[str]]:
    used: dict[tuple[str, str], set[str]] = {}
    for file in COVERAGE:
        for doc in yaml.safe_load_all(file.read_text()):
            if not doc:
                continue
            key = (doc["kind"], doc["apiVersion"].rpartition("/")[2])
            used.setdefault(key, set()).update(_paths(doc.get("spec") or {}))
    return used


def secrets(tmp_path: Path) -> Path:
    directory = tmp_path / "secrets" / "tor-a-password"
    directory.mkdir(parents=True)
    (directory / "password").write_text("from-the-secret\n")
    return tmp_path / "secrets"


def options(tmp_path: Path) -> ImportOptions:
    return ImportOptions(secrets_dir=str(secrets(tmp_path)), interfaces={"tor-a": "to-rtr1"})


@pytest.mark.parametrize("kind", list(METALLB_FIELDS), ids="/".join)
def test_the_importer_knows_every_field_of_metallbs_types(kind: tuple[str, str]) -> None:
    top = {f for f in METALLB_FIELDS[kind] if "." not in f}
    assert set(KNOWN[kind]) == top


@pytest.mark.parametrize("kind", list(METALLB_FIELDS), ids="/".join)
def test_the_manifests_use_every_field(kind: tuple[str, str]) -> None:
    missing = set(METALLB_FIELDS[kind]) - used_fields().get(kind, set())
    assert not missing, f"{kind}: no manifest in tests/data/metallb/coverage sets {missing}"


def test_every_field_converts_and_passes_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = convert_files(COVERAGE, options(tmp_path))
    assert result.errors == ()
    file = tmp_path / "speaker.toml"
    file.write_text(result.toml)
    assert main(["check", "--host-checks", "off", "-c", str(file)]) == 0, capsys.readouterr()
    config = loads_config(result.toml)

    tor_a = config.peer("tor-a")
    assert (tor_a.peer_port, str(tor_a.source_address)) == (1179, "198.18.1.2")
    assert tor_a.disable_mp and tor_a.password == "from-the-secret"
    assert tor_a.interface == "to-rtr1" and tor_a.bfd_profile is not None
    assert tor_a.bfd_profile.passive_mode and tor_a.bfd_profile.minimum_ttl == 254
    assert str(config.router_id) == "198.18.0.1"
    # dynamicASN: the AS is taken from the router's OPEN
    ibgp, ebgp = config.peer("ibgp-dynamic"), config.peer("ebgp-dynamic")
    assert (ibgp.peer_asn, ibgp.expected_asn, ibgp.internal) == ("internal", 64500, True)
    assert (ebgp.peer_asn, ebgp.expected_asn, ebgp.internal) == ("external", None, False)
    # passwordSecret: {} is unset; the password beside it is the key
    assert ibgp.password == "s3cret" and config.peer("generated").password == "generated-key"
    assert ibgp.disable_mp is False  # dualStackAddressFamily: both families
    # localASN: the AS the router sees (FRR's local-as ... no-prepend replace-as)
    assert ebgp.my_asn == 64499 and ebgp.multihop
    # no dualStackAddressFamily and pools of the other family: MetalLB sent them not
    assert ebgp.disable_mp and config.peer("legacy").disable_mp
    legacy = config.peer("legacy")
    assert (legacy.peer_port, legacy.password) == (179, "legacy-key")
    assert legacy.node_selectors[0].match_expressions[0].operator == "NotIn"
    web = config.pool("web")
    assert web.auto_assign and not config.pool("web-v6").auto_assign
    to_tors = config.advertisements[0]
    assert [str(c) for c in to_tors.communities] == ["65535:65282", "64500:100", "large:64500:1:1"]
    assert (to_tors.aggregation_length, to_tors.aggregation_length_v6) == (32, 128)

    # Keys other parts of the speaker add: written once [[peers]] has them, until
    # then a commented peer (never a session in the wrong VRF) and a warning.
    # MARKED: these expectations switch with speaker_has / unnumbered_supported.
    names = [p.name for p in config.peers]
    if speaker_has("graceful_restart"):
        assert config.peer("ibgp-dynamic").graceful_restart
    else:
        assert "# enableGracefulRestart: graceful_restart is not in this speaker" in result.toml
    if speaker_has("vrf"):
        assert config.peer("red").vrf == "red"
    else:
        assert "red" not in names and '# name = "red"' in result.toml
    if unnumbered_supported():
        assert config.peer("unnumbered").interface == "to-rtr3"
    else:
        assert "unnumbered" not in names and '# name = "unnumbered"' in result.toml


def test_every_field_not_carried_is_a_warning_naming_file_object_and_field(
    tmp_path: Path,
) -> None:
    result = convert_files(COVERAGE, options(tmp_path))
    expected = set(NOT_CARRIED)
    # MARKED: keys other parts of the speaker add are warned about until they exist.
    if not speaker_has("graceful_restart"):
        expected.add(("BGPPeer", "ibgp-dynamic", "spec.enableGracefulRestart"))
    if not speaker_has("vrf"):
        expected.add(("BGPPeer", "red", "spec.vrf"))
    if not unnumbered_supported():
        expected.add(("BGPPeer", "unnumbered", "spec.interface"))
    found = set()
    for line in result.warnings:
        if ": not carried over: " not in line:
            continue
        head = line.split(": not carried over: ")[0]
        file, _, rest = head.partition(": document ")
        assert Path(file) in COVERAGE, line
        what, _, field = rest.partition("): ")
        kind, _, name = what.partition(" (")[2].partition(" ")
        found.add((kind, name.strip('"'), field))
    assert found == expected


def test_configmaptocrs_password_secret_is_unset(tmp_path: Path) -> None:
    # MetalLB's configmaptocrs writes passwordSecret: {} on every BGPPeer; MetalLB reads
    # an empty name as unset. Refused before ("spec.passwordSecret.name: required").
    file = tmp_path / "in.yaml"
    file.write_text(
        "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\n"
        "metadata: {name: p, namespace: metallb-system}\n"
        "spec: {myASN: 64512, peerASN: 64512, peerAddress: 10.0.0.1, peerPort: 179,"
        " passwordSecret: {}}\nstatus: {}\n"
    )
    result = convert_files([file])
    assert result.errors == ()
    peer = loads_config(result.toml).peer("p")
    assert peer.password is None and peer.password_file is None


def test_selectors_are_read_by_the_configurations_rules_in_kubernetes_words(
    tmp_path: Path,
) -> None:
    file = tmp_path / "in.yaml"
    file.write_text(
        "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\n"
        "metadata: {name: p, namespace: metallb-system}\n"
        "spec: {myASN: 64512, peerASN: 64513, peerAddress: 10.0.0.1,"
        " nodeSelectors: [{matchLabel: {a: b}}, {matchExpressions: x}]}\n"
    )
    errors = [e.split("): ", 1)[1] for e in convert_files([file]).errors]
    assert errors == [
        'spec.nodeSelectors[0].matchLabel: unknown key (did you mean "matchLabels"?)',
        'spec.nodeSelectors[1].matchExpressions: expected a list, got a string ("x")',
    ]


def test_show_prints_the_learned_as() -> None:
    from ipaddress import IPv4Address

    from protocols.bgp import SessionConfig
    from protocols.bgp.negotiation import negotiate
    from speaker.view.records import remote_as

    ours = SessionConfig(local_asn=64513, peer_asn=None, router_id=IPv4Address("192.0.2.1"),
                         dynamic_asn="external")  # fmt: skip
    theirs = SessionConfig(local_asn=64512, peer_asn=64513, router_id=IPv4Address("192.0.2.2"))
    negotiated = negotiate(ours, theirs.open_message())
    assert remote_as(None, "external", negotiated) == 64512
    assert remote_as(None, "external", None) == "external"  # before the first OPEN
    assert remote_as(64500, None, None) == 64500
