"""``speaker import-metallb``: MetalLB manifests -> a TOML configuration that loads."""

from __future__ import annotations

import ipaddress
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from speaker.cli import main
from speaker.config import Config, loads_config
from speaker.metallb import ImportOptions, convert_files, toml_string
from speaker.metallb.peer import speaker_has

DATA = Path(__file__).parent.parent / "data" / "metallb"
EXAMPLES = [DATA / name for name in ("bfd-profiles.yaml", "peers.yaml", "pools.yaml")] + [
    DATA / "advertisements.yaml"
]
INVALID = sorted((DATA / "invalid").glob("*.yaml"))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, list[str]]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err.splitlines()


def secrets(tmp_path: Path) -> Path:
    """The directory the passwordSecret of peers.yaml is "mounted" in."""
    directory = tmp_path / "secrets"
    (directory / "tor-b-password").mkdir(parents=True)
    (directory / "tor-b-password" / "password").write_text("from-the-secret\n")
    return directory


def convert(tmp_path: Path, *files: Path, **options: Any) -> tuple[str, Config]:
    opts = ImportOptions(
        secrets_dir=str(secrets(tmp_path)),
        interfaces={"tor-a": "eth1"},
        **options,
    )
    result = convert_files(list(files), opts)
    assert result.errors == ()
    return result.toml, loads_config(result.toml)


def write(tmp_path: Path, text: str, name: str = "in.yaml") -> Path:
    file = tmp_path / name
    file.write_text(text)
    return file


PEER = """\
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {{name: {name}, namespace: metallb-system}}
spec:
  myASN: {my_asn}
  peerASN: 64501
  peerAddress: {address}
{extra}"""


def peer(name: str, address: str, my_asn: int = 64500, extra: str = "") -> str:
    return PEER.format(name=name, address=address, my_asn=my_asn, extra=extra)


# ---- the documented examples ------------------------------------------------------------------


def test_documented_examples_convert_to_a_valid_configuration(tmp_path: Path) -> None:
    text, config = convert(tmp_path, *EXAMPLES)
    assert config.speaker.my_asn == 64500
    assert str(config.speaker.router_id) == "198.18.0.1"

    profiles = {p.name: p for p in config.bfd_profiles}
    assert list(profiles) == ["basic", "echo", "passive", "multihop"]
    assert (profiles["basic"].receive_interval, profiles["basic"].detect_multiplier) == (300, 3)
    assert profiles["echo"].echo_mode and profiles["echo"].echo_interval == 50
    assert profiles["passive"].passive_mode and not profiles["passive"].echo_mode
    assert profiles["multihop"].minimum_ttl == 250

    tor_a, tor_b, core, legacy = config.peers
    assert tor_a.interface == "eth1" and tor_a.bfd_profile == profiles["echo"]
    assert str(tor_a.source_address) == "198.18.1.2"
    assert tor_b.hold_time == timedelta(seconds=9)
    assert tor_b.keepalive_time == timedelta(seconds=3)
    assert tor_b.connect_retry_max == timedelta(seconds=5)  # FRR's "timers connect"
    assert tor_b.connect_time == timedelta(seconds=10)
    assert tor_b.password == "from-the-secret"
    assert core.multihop and core.bfd_profile == profiles["multihop"]
    assert core.hold_time == timedelta(seconds=90)
    assert core.node_selectors[0].match_labels == {"kubernetes.io/hostname": "lb-1"}
    # v1beta1, without BFD
    assert legacy.bfd_profile is None and legacy.internal
    assert legacy.peer_address == ipaddress.ip_address("2001:2::1")
    assert legacy.peer_port == 1179 and legacy.password == "s3cret"
    assert legacy.hold_time == timedelta(seconds=30)
    assert legacy.keepalive_time == timedelta(seconds=10)
    expression = legacy.node_selectors[0].match_expressions[0]
    assert (expression.key, expression.operator, expression.values) == ("rack", "In", ("r1", "r2"))

    web, web_v6, internal = config.pools
    assert [str(a) for a in web.addresses] == ["198.18.100.0/28", "198.18.100.64-198.18.100.71"]
    assert [str(a) for a in web_v6.addresses] == ["2001:2:0:100::/124"]
    assert internal.auto_assign is False
    assert not any(p.announce_all for p in config.pools)

    to_tors, to_core, aggregate = config.advertisements
    assert to_tors.pools == ("web",) and to_tors.peers == ("tor-a", "tor-b")
    assert to_tors.local_pref == 100 and to_tors.aggregation_length == 32
    # the alias NO_ADVERTISE resolved through the Community object
    assert [str(c) for c in to_tors.communities] == ["65535:65282", "64500:100"]
    assert "# Community aliases: NO_ADVERTISE = 65535:65282" in text
    # ipAddressPoolSelectors resolved by the pools' labels (tier: frontend)
    assert to_core.pools == ("web", "web-v6")
    assert (to_core.aggregation_length, to_core.aggregation_length_v6) == (29, 124)
    assert [str(c) for c in to_core.communities] == ["large:64500:1:1"]
    assert aggregate.pools == ("internal",) and aggregate.aggregation_length == 24

    # the hint that services must be declared
    assert "# [[services]]" in text
    assert config.services == ()


def test_output_is_ordered_and_names_its_sources(tmp_path: Path) -> None:
    # the files in any order: the tables still come speaker, profiles, peers, pools, ads
    text, _ = convert(tmp_path, *reversed(EXAMPLES))
    headers = [line for line in text.splitlines() if line.startswith("[")]
    order = ["[speaker]", "[[bfd_profiles]]", "[[peers]]", "[[pools]]", "[[advertisements]]"]
    assert sorted(headers, key=order.index) == headers
    assert headers[0] == "[speaker]"
    assert f'# {DATA / "peers.yaml"}: document 2 (BGPPeer "tor-b") metallb.io/v1beta2' in text


def test_cli_prints_toml_that_speaker_check_accepts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, out, err = run(
        capsys,
        "import-metallb",
        *map(str, EXAMPLES),
        "--interface",
        "tor-a=eth1",
        "--secrets-dir",
        str(secrets(tmp_path)),
    )
    assert status == 0, err
    assert err == []
    file = tmp_path / "speaker.toml"
    file.write_text(out)
    status, check_out, err = run(capsys, "check", "--host-checks", "off", "-c", str(file))
    assert status == 0, err
    assert check_out == (
        "ok: 4 peers, 3 pools, 0 services\nrouter ID: 198.18.0.1 (router_id in [speaker])\n"
    )


def test_announce_all(tmp_path: Path) -> None:
    text, config = convert(tmp_path, *EXAMPLES, announce_all=True)
    assert all(pool.announce_all for pool in config.pools)
    assert "# [[services]]" not in text
    assert "announce_all = true" in text


def test_interface_for_every_peer(tmp_path: Path) -> None:
    result = convert_files(
        EXAMPLES, ImportOptions(secrets_dir=str(secrets(tmp_path)), interfaces={"": "eth0"})
    )
    assert result.errors == ()
    assert loads_config(result.toml).peer("tor-a").interface == "eth0"


def test_echo_without_interface_imports_and_passes_check(tmp_path: Path) -> None:
    """The interface is the route's, found when the peer starts: no --interface needed."""
    result = convert_files([DATA / "echo-no-interface.yaml"])
    assert result.errors == ()
    peer = loads_config(result.toml).peer("tor-a")
    assert peer.interface is None and peer.bfd_profile is not None
    assert peer.bfd_profile.echo_mode


def test_vrf_is_carried_over() -> None:
    result = convert_files([DATA / "unsupported.yaml"])
    assert result.errors == ()
    assert [p.vrf for p in loads_config(result.toml).peers if p.vrf] == ["red"]


def test_bad_interface_option(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "import-metallb", str(EXAMPLES[0]), "--interface", "tor-a=")
    assert status == 2 and out == ""
    assert err == ["import-metallb: --interface 'tor-a=': no interface name"]


# ---- what cannot be carried ---------------------------------------------------------------------


def test_unsupported_fields_become_comments(tmp_path: Path) -> None:
    result = convert_files([DATA / "unsupported.yaml"])
    assert result.errors == ()
    config = loads_config(result.toml)
    lines = result.toml.splitlines()

    def comment(prefix: str) -> str:
        found = [line for line in lines if line.startswith(prefix)]
        assert len(found) == 1, (prefix, lines)
        return found[0]

    # MARKED: vrf and graceful_restart are keys other parts of the speaker add; until
    # [[peers]] has them the peer is left out (never put in the default VRF).
    if not speaker_has("vrf"):
        assert comment("# vrf: vrf is not in this speaker").endswith('it was "red"')
        assert "# [[peers]]" in lines
    if not speaker_has("graceful_restart"):
        assert comment("# enableGracefulRestart: graceful_restart is not in this speaker")
    left_out = "# " if not speaker_has("vrf") else ""  # the peer is commented without vrf
    written = f'{left_out}peer_asn = "internal"  # dynamicASN: the AS the router\'s OPEN brings'
    assert written in lines
    # disableMP with dualStackAddressFamily: MetalLB's FRR mode gives both families
    assert comment("# disableMP: dualStackAddressFamily wins")
    assert not any("disable_mp" in line for line in lines)
    assert ".0 and .255" in comment("# avoidBuggyIPs: not supported")
    assert "[[services]]" in comment("# serviceAllocation: not supported")
    assert "tenant-a" in comment("# serviceAllocation:")
    assert comment("# serviceSelectors: services are declared in [[services]] instead")
    assert "lb-1" in comment("# nodeSelectors: not supported")
    assert "MetalLB used 198.18.50.0/24" in comment('# addresses: "198.18.50.1/24" had host bits')
    # other kinds: skipped, with a warning and a comment
    assert "L2 mode" in comment("# " + str(DATA / "unsupported.yaml") + ": document 2")
    assert any('(Service "www"): skipped: not a MetalLB object' in w for w in result.warnings)
    # an advertisement selecting no pool is left out, not turned into "all pools"
    assert "# [[advertisements]]" in lines
    assert [a.name for a in config.advertisements] == ["selected"]
    assert any("selects no IPAddressPool" in w for w in result.warnings)

    if speaker_has("vrf"):  # MARKED (above)
        red = config.peer("red")
        assert (red.peer_asn, red.expected_asn) == ("internal", 64500)  # dynamicASN
    assert [str(a) for a in config.pool("shared").addresses] == [
        "198.18.50.0/24",
        "198.18.51.0-198.18.51.9",
    ]


def test_kind_list_and_empty_documents(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "---\n---\napiVersion: v1\nkind: List\nitems:\n"
        "  - apiVersion: metallb.io/v1beta1\n    kind: BFDProfile\n"
        "    metadata: {name: only, namespace: metallb-system}\n",
    )
    result = convert_files([file])
    assert result.errors == ()
    assert [p.name for p in loads_config(result.toml).bfd_profiles] == ["only"]


def test_router_ids_that_disagree_are_each_peers_own(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        peer("a", "198.18.1.1", extra="  routerID: 198.18.0.1\n")
        + "---\n"
        + peer("b", "198.18.2.1", my_asn=64510, extra="  routerID: 198.18.0.2\n")
        + "---\n"
        + peer("c", "198.18.3.1", my_asn=64510),
    )
    result = convert_files([file])
    assert result.errors == ()
    config = loads_config(result.toml)
    assert config.speaker.router_id is None and config.speaker.my_asn is None
    assert (config.peer("a").my_asn, config.peer("b").my_asn) == (64500, 64510)
    assert str(config.peer("a").router_id) == "198.18.0.1"
    assert str(config.peer("b").router_id) == "198.18.0.2"
    assert config.peer("c").router_id is None  # the speaker's


def test_missing_namespace_is_a_warning(tmp_path: Path) -> None:
    file = write(
        tmp_path, "apiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {name: x}\n"
    )
    result = convert_files([file])
    assert result.errors == ()
    assert result.warnings == (
        f'{file}: document 1 (BFDProfile "x"): metadata.namespace: not set: MetalLB only reads'
        " objects in metallb-system; apply it there",
    )


def test_unknown_field_is_a_warning_with_a_suggestion(tmp_path: Path) -> None:
    file = write(tmp_path, peer("a", "198.18.1.1", extra="  holdtime: 30s\n"))
    result = convert_files([file])
    assert result.errors == ()
    assert any("spec.holdtime: unknown field" in w and '"holdTime"' in w for w in result.warnings)
    assert '# holdtime: unknown field, ignored; it was "30s"' in result.toml


def test_other_namespace_option(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "apiVersion: metallb.io/v1beta1\nkind: BFDProfile\n"
        "metadata: {name: x, namespace: metallb}\n",
    )
    assert convert_files([file]).errors
    assert convert_files([file], ImportOptions(namespace="metallb")).errors == ()


# ---- manifests MetalLB itself rejects --------------------------------------------------------


@pytest.mark.parametrize("file", INVALID, ids=[f.stem for f in INVALID])
def test_invalid_manifest_gives_its_specific_error(
    capsys: pytest.CaptureFixture[str], file: Path
) -> None:
    expected = file.read_text().splitlines()[0].removeprefix("# expect: ")
    status, out, err = run(capsys, "import-metallb", str(file))
    assert status == 2
    assert out == ""
    assert err[-1] == "import-metallb: 1 error"
    errors = [line for line in err[:-1] if not line.startswith("warning: ")]
    assert len(errors) == 1, err
    if expected.startswith("document"):
        assert errors[0].startswith(f"{file}: {expected}")
    else:  # "NAME.yaml: ...": about the file as a whole
        assert errors[0].startswith(f"{file.parent}/{expected}")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("  peerASN: 1\n", None),  # set twice in YAML: last wins; not our business
        ("  myASN: 65536.5\n", "spec.myASN: expected an integer, got a number (65536.5)"),
        ("  holdTime: 90\n", 'spec.holdTime: expected a duration string such as "90s"'),
        ("  holdTime: 90x\n", 'spec.holdTime: "90x" is not a duration'),
        ("  connectTime: 1.5s\n", "spec.connectTime: 1.5s is not 1-65535 whole seconds"),
        ("  routerID: 2001:2::1:x\n", 'spec.routerID: "2001:2::1:x" is not an IP address'),
        ("  sourceAddress: nowhere\n", 'spec.sourceAddress: "nowhere" is not an IP address'),
        ("  interface: eth0\n", "spec.interface: set either peerAddress or interface"),
        (
            "  passwordSecret: {name: s, namespace: default}\n",
            'spec.passwordSecret.namespace: "default": MetalLB only reads Secrets in',
        ),
        (
            "  nodeSelectors: [{matchExpressions: [{key: a, operator: Gt, values: ['1']}]}]\n",
            'spec.nodeSelectors[0].matchExpressions[0].operator: "Gt" is not an operator',
        ),
        (
            "  nodeSelectors: [{matchExpressions: [{key: a, operator: In}]}]\n",
            "spec.nodeSelectors[0].matchExpressions[0]: operator In needs at least one value",
        ),
        (
            "  nodeSelectors: [{matchLabels: {rack: 1}}]\n",
            "spec.nodeSelectors[0].matchLabels.rack: expected a string, got an integer (1)",
        ),
    ],
)
def test_peer_field_errors(tmp_path: Path, extra: str, message: str | None) -> None:
    text = peer("a", "198.18.1.1", extra=extra)
    if extra.startswith("  peerASN"):  # a duplicate key is a YAML matter: PyYAML keeps the last
        text = text.replace("  peerASN: 64501\n", "")
    result = convert_files([write(tmp_path, text)])
    if message is None:
        assert result.errors == ()
        return
    assert len(result.errors) == 1, result.errors
    assert f'document 1 (BGPPeer "a"): {message}' in result.errors[0]


def test_required_peer_fields(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "apiVersion: metallb.io/v1beta1\nkind: BGPPeer\n"
        "metadata: {name: a, namespace: metallb-system}\nspec: {}\n",
    )
    assert [e.split(": ", 2)[2] for e in convert_files([file]).errors] == [
        "spec.myASN: required",
        "spec.peerASN: required",
        "spec.peerAddress: required",
    ]


def test_v1beta1_has_no_v1beta2_fields(tmp_path: Path) -> None:
    text = peer("a", "198.18.1.1", extra="  vrf: red\n").replace("v1beta2", "v1beta1")
    result = convert_files([write(tmp_path, text)])
    assert result.errors == ()
    assert any("unknown field for BGPPeer v1beta1" in w for w in result.warnings)


def test_duplicate_names(tmp_path: Path) -> None:
    file = write(tmp_path, peer("a", "198.18.1.1") + "---\n" + peer("a", "198.18.2.1"))
    (error,) = convert_files([file]).errors
    assert error.startswith(f'{file}: document 2 (BGPPeer "a"): metadata.name: duplicate BGPPeer')


def test_unknown_advertised_peer_and_conflicting_alias(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "apiVersion: metallb.io/v1beta1\nkind: Community\n"
        "metadata: {name: c1, namespace: metallb-system}\n"
        "spec: {communities: [{name: X, value: '1:1'}]}\n---\n"
        "apiVersion: metallb.io/v1beta1\nkind: Community\n"
        "metadata: {name: c2, namespace: metallb-system}\n"
        "spec: {communities: [{name: X, value: '1:2'}, {name: Y, value: '70000:1'}]}\n---\n"
        "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\n"
        "metadata: {name: ad, namespace: metallb-system}\nspec: {peers: [nobody]}\n",
    )
    errors = convert_files([file]).errors
    assert len(errors) == 3, errors
    assert (
        'document 2 (Community "c2"): spec.communities[0].name: community alias "X" is also'
        in (errors[0])
    )
    assert 'spec.communities[1].value: "70000:1" is not a community' in errors[1]
    assert (
        'document 3 (BGPAdvertisement "ad"): spec.peers[0]: no BGPPeer named "nobody"'
        in (errors[2])
    )


def test_speaker_rules_are_reported_at_their_document(tmp_path: Path) -> None:
    # Valid in MetalLB, but BFD would detect a failure only after BGP (5 x 1000 ms >= 3s),
    # and the speaker's echo is IPv4 only.
    file = write(
        tmp_path,
        "apiVersion: metallb.io/v1beta1\nkind: BFDProfile\n"
        "metadata: {name: slow, namespace: metallb-system}\n"
        "spec: {transmitInterval: 1000, receiveInterval: 1000, detectMultiplier: 5}\n---\n"
        "apiVersion: metallb.io/v1beta1\nkind: BFDProfile\n"
        "metadata: {name: echo, namespace: metallb-system}\nspec: {echoMode: true}\n---\n"
        + peer("a", "198.18.1.1", extra="  holdTime: 3s\n  bfdProfile: slow\n")
        + "---\n"
        + peer("b", "2001:2::1", extra="  bfdProfile: echo\n"),
    )
    errors = convert_files([file]).errors
    assert len(errors) == 2, errors
    assert errors[0].startswith(
        f'{file}: document 3 (BGPPeer "a"): speaker rule: peers[0].bfd_profile: BFD detection'
    )
    assert errors[1].startswith(
        f'{file}: document 4 (BGPPeer "b"): speaker rule: peers[1].bfd_profile: profile "echo"'
        " has echo_mode, which is IPv4 only"
    )


def test_unreadable_and_non_object_documents(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    assert convert_files([missing]).errors == (
        f"{missing}: cannot read the file: No such file or directory",
    )
    file = write(tmp_path, "- just\n- a list\n---\nkind: BGPPeer\n")
    assert convert_files([file]).errors == (
        f"{file}: document 1: not a Kubernetes object (expected a mapping)",
        f"{file}: document 2: not a Kubernetes object (apiVersion and kind are required)",
    )


# ---- TOML strings ----------------------------------------------------------------------------


@given(st.text(alphabet=st.characters(codec="utf-8")))
def test_toml_string_round_trips(text: str) -> None:
    assert tomllib.loads(f"k = {toml_string(text)}")["k"] == text


def test_odd_names_and_labels_round_trip(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        peer(
            "a",
            "198.18.1.1",
            extra='  nodeSelectors: [{matchLabels: {"example.com/x y": "q\\"uote\\u007f"}}]\n',
        ),
    )
    result = convert_files([file])
    assert result.errors == ()
    labels = loads_config(result.toml).peer("a").node_selectors[0].match_labels
    assert labels == {"example.com/x y": 'q"uote\x7f'}


def test_no_follow_on_errors(tmp_path: Path) -> None:
    # A broken profile or alias is reported once, not again where it is used.
    file = write(
        tmp_path,
        "apiVersion: metallb.io/v1beta1\nkind: BFDProfile\n"
        "metadata: {name: bad, namespace: metallb-system}\nspec: {detectMultiplier: 1}\n---\n"
        "apiVersion: metallb.io/v1beta1\nkind: Community\n"
        "metadata: {name: c, namespace: metallb-system}\n"
        "spec: {communities: [{name: X, value: 'no:good'}]}\n---\n"
        "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\n"
        "metadata: {name: ad, namespace: metallb-system}\nspec: {communities: [X]}\n---\n"
        + peer("a", "198.18.1.1", extra="  bfdProfile: bad\n"),
    )
    errors = convert_files([file]).errors
    assert [e.split(": ", 2)[1] for e in errors] == [
        'document 1 (BFDProfile "bad")',
        'document 2 (Community "c")',
    ]
