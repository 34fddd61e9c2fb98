"""Loading: TOML -> cattrs -> frozen attrs, structural errors with paths, effective values."""

from __future__ import annotations

import ipaddress
import socket
from datetime import timedelta
from pathlib import Path

import attrs
import pytest

from protocols.bgp import LargeCommunity as LargeCommunityType
from speaker.config import (
    Config,
    ConfigError,
    ConfigIssue,
    LabelSelector,
    load_config,
    loads_config,
)
from tests.helpers.configs import BASE_CONFIG, config_errors


def test_base_loads() -> None:
    config = loads_config(BASE_CONFIG)
    assert isinstance(config, Config)
    assert config.warnings == ()
    assert [p.name for p in config.peers] == ["tor"]


# ---- structural errors ---------------------------------------------------------------


def test_unknown_key_suggests_the_nearest() -> None:
    text = BASE_CONFIG.replace("peer_asn = 65000\n", 'peer_asn = 65000\nhold = "90s"\n')
    assert config_errors(text) == ['peers[0].hold: unknown key (did you mean "hold_time"?)']


def test_unknown_key_camel_case_suggests_snake_case() -> None:
    text = BASE_CONFIG.replace("peer_asn = 65000\n", 'peer_asn = 65000\nholdTime = "90s"\n')
    assert config_errors(text) == ['peers[0].holdTime: unknown key (did you mean "hold_time"?)']


def test_unknown_key_without_suggestion() -> None:
    text = BASE_CONFIG.replace("peer_asn = 65000\n", "peer_asn = 65000\nzzz = 1\n")
    assert config_errors(text) == ["peers[0].zzz: unknown key"]


def test_unknown_top_level_table() -> None:
    assert config_errors(BASE_CONFIG + '[[peer]]\nname = "x"\n') == [
        'peer: unknown key (did you mean "peers"?)'
    ]


def test_unknown_key_in_nested_table() -> None:
    text = BASE_CONFIG.replace(
        'address = "203.0.113.1"', 'address = "203.0.113.1"\nhealth = { tcp = "h:1", rize = 2 }'
    )
    assert config_errors(text) == ['services[0].health.rize: unknown key (did you mean "rise"?)']


def test_type_error_names_the_path() -> None:
    text = BASE_CONFIG.replace("peer_asn = 65000", 'peer_asn = 65000\nmy_asn = "64512"')
    assert config_errors(text) == ['peers[0].my_asn: expected an integer, got a string ("64512")']


def test_boolean_is_not_an_integer() -> None:
    text = BASE_CONFIG.replace("peer_asn = 65000", "peer_asn = true")
    assert config_errors(text) == [
        'peers[0].peer_asn: expected an AS number, "internal" or "external", got a boolean (true)'
    ]


def test_peer_asn_is_a_number_or_internal_or_external() -> None:
    # MetalLB's dynamicASN: the AS is taken from the peer's OPEN
    for word, expected, internal in (("internal", 64512, True), ("external", None, False)):
        config = loads_config(BASE_CONFIG.replace("peer_asn = 65000", f'peer_asn = "{word}"'))
        peer = config.peer("tor")
        assert (peer.peer_asn, peer.dynamic_asn) == (word, word)
        assert (peer.expected_asn, peer.internal) == (expected, internal)
    peer = loads_config(BASE_CONFIG).peer("tor")
    assert (peer.expected_asn, peer.dynamic_asn, peer.internal) == (65000, None, False)
    assert config_errors(BASE_CONFIG.replace("peer_asn = 65000", 'peer_asn = "65000"')) == [
        'peers[0].peer_asn: "65000" is a string: write the AS number without quotes'
    ]
    assert config_errors(BASE_CONFIG.replace("peer_asn = 65000", 'peer_asn = "ibgp"')) == [
        'peers[0].peer_asn: "ibgp" is not an AS number, "internal" or "external"'
    ]


def test_string_is_not_an_array() -> None:
    text = BASE_CONFIG.replace('addresses = ["203.0.113.0/28"]', 'addresses = "203.0.113.0/28"')
    assert config_errors(text) == [
        'pools[0].addresses: expected an array, got a string ("203.0.113.0/28")'
    ]


def test_section_must_be_an_array_of_tables() -> None:
    text = BASE_CONFIG.replace("[[advertisements]]", "[advertisements]")
    assert config_errors(text) == [
        "advertisements: expected an array of tables ([[advertisements]]), got a table"
    ]


def test_missing_required_key() -> None:
    text = BASE_CONFIG.replace("peer_asn = 65000\n", "")
    assert config_errors(text) == ["peers[0].peer_asn: required key is missing"]


def test_missing_name() -> None:
    text = BASE_CONFIG.replace(
        '[[bfd_profiles]]\nname = "basic"', "[[bfd_profiles]]\ndetect_multiplier = 3"
    )
    assert config_errors(text) == [
        "bfd_profiles[0].name: required key is missing",
        'peers[0].bfd_profile: no BFD profile named "basic" (none defined)',
    ]


def test_bad_address() -> None:
    text = BASE_CONFIG.replace('peer_address = "192.0.2.1"', 'peer_address = "192.0.2.300"')
    assert config_errors(text) == ['peers[0].peer_address: "192.0.2.300" is not an IP address']


def test_router_id_must_be_ipv4() -> None:
    text = BASE_CONFIG.replace("my_asn = 64512", 'my_asn = 64512\nrouter_id = "2001:db8::1"')
    assert config_errors(text) == ['speaker.router_id: "2001:db8::1" is not an IPv4 address']


def test_label_paths_quote_odd_keys() -> None:
    text = BASE_CONFIG.replace('labels = { rack = "r1" }', 'labels = { "kubernetes.io/os" = 1 }')
    assert config_errors(text) == [
        'speaker.labels."kubernetes.io/os": expected a string, got an integer (1)'
    ]


def test_nested_selector_path() -> None:
    text = BASE_CONFIG.replace(
        'bfd_profile = "basic"',
        'bfd_profile = "basic"\nnode_selectors = [{}, { match_expressions = [{ key = "a",'
        ' operator = "in", values = ["x"] }] }]',
    )
    assert config_errors(text) == [
        "peers[0].node_selectors[1].match_expressions[0].operator: "
        '"in" is not an operator (use one of In, NotIn, Exists, DoesNotExist)'
    ]


def test_cross_field_rule_of_a_table_reports_on_the_table() -> None:
    text = BASE_CONFIG.replace(
        'bfd_profile = "basic"',
        'bfd_profile = "basic"\nnode_selectors = [{ match_expressions = [{ key = "a",'
        ' operator = "In" }] }]',
    )
    assert config_errors(text) == [
        "peers[0].node_selectors[0].match_expressions[0]: operator In needs at least one value"
    ]


def test_bfd_auth_is_checked() -> None:
    text = BASE_CONFIG.replace(
        '[[bfd_profiles]]\nname = "basic"',
        '[[bfd_profiles]]\nname = "basic"\n'
        'auth = { type = "keyed-md5", keys = { "1" = "s" }, send_key_id = 2 }',
    )
    assert config_errors(text) == ["bfd_profiles[0].auth: send_key_id 2 is not among the keys"]


def test_bfd_auth_key_ids_are_numbers() -> None:
    text = BASE_CONFIG.replace(
        '[[bfd_profiles]]\nname = "basic"',
        '[[bfd_profiles]]\nname = "basic"\n'
        'auth = { type = "simple", keys = { one = "s" }, send_key_id = 1 }',
    )
    assert config_errors(text) == ['bfd_profiles[0].auth.keys.one: key "one" is not a number']


def test_every_error_at_once() -> None:
    text = (
        BASE_CONFIG.replace("peer_asn = 65000", 'peer_asn = 65000\nhold = "1s"')
        .replace('name = "basic"', 'name = "basic"\ntransmit_interval = 5\ndetect_multiplier = 1')
        .replace('address = "203.0.113.1"', 'address = "198.51.100.1"\npool = "nope"')
    )
    assert config_errors(text) == [
        "bfd_profiles[0].transmit_interval: 5 is below the minimum of 10 ms",
        "bfd_profiles[0].detect_multiplier: 1 is below the minimum of 2",
        'peers[0].hold: unknown key (did you mean "hold_time"?)',
        'services[0].pool: no pool named "nope" (defined: web)',
    ]


def test_toml_syntax_error_has_line_and_column() -> None:
    with pytest.raises(ConfigError) as info:
        loads_config("[speaker]\nmy_asn = = 1\n")
    (issue,) = info.value.errors
    assert issue.path == "line 2, column 10"
    assert issue.message == "TOML syntax error: Invalid value"


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.toml")
    assert [str(i) for i in info.value.errors] == [
        "cannot read the file: No such file or directory"
    ]


def test_issue_str() -> None:
    assert str(ConfigIssue("peers[0].x", "bad")) == "peers[0].x: bad"
    assert str(ConfigIssue("", "bad")) == "bad"


# ---- effective values --------------------------------------------------------------------


def test_defaults() -> None:
    config = loads_config(BASE_CONFIG)
    peer = config.peer("tor")
    assert peer.my_asn == 64512
    assert peer.peer_port == 179
    assert peer.hold_time == timedelta(seconds=90)
    assert peer.keepalive_time == timedelta(seconds=30)
    assert peer.connect_time == timedelta(seconds=10)
    assert peer.bfd_profile is config.profile("basic")
    assert peer.bfd_profile.transmit_interval == 300
    assert peer.password is None
    assert peer.multihop_ttl is None and not peer.multihop
    assert not peer.internal
    assert config.speaker.hold_down == timedelta(milliseconds=500)
    assert config.speaker.state_file == Path("/var/lib/speaker/state.json")
    pool = config.pool("web")
    assert pool.auto_assign and not pool.announce_all
    ad = config.advertisements[0]
    assert (ad.aggregation_length, ad.aggregation_length_v6, ad.local_pref) == (32, 128, None)
    assert ad.pools == () and ad.peers == ()


def test_node_name_defaults_to_the_host_name() -> None:
    config = loads_config(BASE_CONFIG.replace('node_name = "lb-1"\n', ""))
    assert config.node_name == socket.gethostname()


def test_peer_my_asn_overrides_speaker() -> None:
    config = loads_config(
        BASE_CONFIG.replace("peer_asn = 65000", "peer_asn = 65000\nmy_asn = 65000")
    )
    assert config.peer("tor").my_asn == 65000
    assert config.peer("tor").internal


@pytest.mark.parametrize(
    ("timers", "hold", "keepalive"),
    [
        ('hold_time = "9s"', 9, 3),
        ('keepalive_time = "10s"', 30, 10),
        ('hold_time = "30s"\nkeepalive_time = "5s"', 30, 5),
        ('hold_time = "0s"', 0, 0),
        ('keepalive_time = "1.5s"', 4, 1.5),  # 4.5s rounded down to whole seconds
    ],
)
def test_hold_and_keepalive_derivation(timers: str, hold: int, keepalive: float) -> None:
    config = loads_config(BASE_CONFIG.replace("peer_asn = 65000", f"peer_asn = 65000\n{timers}"))
    peer = config.peer("tor")
    assert peer.hold_time == timedelta(seconds=hold)
    assert peer.keepalive_time == timedelta(seconds=keepalive)


def test_multihop() -> None:
    config = loads_config(
        BASE_CONFIG.replace("peer_asn = 65000", "peer_asn = 65000\nebgp_multihop = true")
    )
    assert config.peer("tor").multihop_ttl == 255 and config.peer("tor").multihop
    config = loads_config(
        BASE_CONFIG.replace("peer_asn = 65000", "peer_asn = 65000\nebgp_multihop = 1")
    )
    assert config.peer("tor").multihop_ttl == 1 and not config.peer("tor").multihop


def test_router_id_derived_from_first_ipv4_source_address_of_this_node() -> None:
    text = BASE_CONFIG.replace(
        "[[peers]]",
        '[[peers]]\nname = "elsewhere"\npeer_address = "192.0.2.7"\npeer_asn = 65000\n'
        'source_address = "192.0.2.77"\nnode_selectors = [{ match_labels = { rack = "r2" } }]\n\n'
        '[[peers]]\nname = "v6"\npeer_address = "2001:db8::1"\npeer_asn = 65000\n'
        'source_address = "2001:db8::10"\n\n[[peers]]',
    )
    config = loads_config(text)
    assert config.router_id == ipaddress.IPv4Address("192.0.2.10")
    assert [p.name for p in config.local_peers] == ["v6", "tor"]


def test_router_id_explicit_or_none() -> None:
    config = loads_config(
        BASE_CONFIG.replace("my_asn = 64512", 'my_asn = 64512\nrouter_id = "10.0.0.1"')
    )
    assert config.router_id == ipaddress.IPv4Address("10.0.0.1")
    config = loads_config(BASE_CONFIG.replace('source_address = "192.0.2.10"\n', ""))
    assert config.router_id is None


def test_password_from_file_and_never_in_repr(tmp_path: Path) -> None:
    (tmp_path / "tor.key").write_text("s3cret-key\n")
    text = BASE_CONFIG.replace("peer_asn = 65000", 'peer_asn = 65000\npassword_file = "tor.key"')
    config_file = tmp_path / "speaker.toml"
    config_file.write_text(text)
    config = load_config(config_file)
    peer = config.peer("tor")
    assert peer.password == "s3cret-key"
    assert peer.password_file == tmp_path / "tor.key"
    assert "s3cret" not in repr(peer)
    assert "s3cret" not in repr(config)


def test_inline_password_never_in_repr() -> None:
    config = loads_config(
        BASE_CONFIG.replace("peer_asn = 65000", 'peer_asn = 65000\npassword = "hunter2"')
    )
    assert config.peer("tor").password == "hunter2"
    assert "hunter2" not in repr(config)


def test_relative_state_file_is_taken_from_the_config_directory(tmp_path: Path) -> None:
    config_file = tmp_path / "speaker.toml"
    config_file.write_text(
        BASE_CONFIG.replace("my_asn = 64512", 'my_asn = 64512\nstate_file = "st.json"')
    )
    assert load_config(config_file).speaker.state_file == tmp_path / "st.json"


def test_service_pool_is_resolved_from_its_address() -> None:
    assert loads_config(BASE_CONFIG).service("www").pool == "web"


def test_communities_are_parsed() -> None:
    text = BASE_CONFIG.replace(
        'name = "all"', 'name = "all"\ncommunities = ["65000:100", "no-advertise", "large:1:2:3"]'
    )
    (ad,) = loads_config(text).advertisements
    assert [c.value for c in ad.communities] == [
        65000 << 16 | 100,
        0xFFFFFF02,
        LargeCommunityType(global_admin=1, local1=2, local2=3),
    ]


def test_config_is_immutable() -> None:
    config = loads_config(BASE_CONFIG)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.peers = ()  # type: ignore[misc]  # the point: frozen
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.peer("tor").peer_asn = 1  # type: ignore[misc]  # the point: frozen
    with pytest.raises(TypeError):
        config.speaker.labels["rack"] = "r2"  # type: ignore[index]  # the point: read-only


def test_lookups_raise_key_error() -> None:
    config = loads_config(BASE_CONFIG)
    for lookup in (config.peer, config.profile, config.pool, config.service):
        with pytest.raises(KeyError):
            lookup("nope")


def test_selectors_are_structured() -> None:
    text = BASE_CONFIG.replace(
        'bfd_profile = "basic"',
        'bfd_profile = "basic"\nnode_selectors = [{ match_labels = { rack = "r2" } }]',
    )
    config = loads_config(text)
    assert config.peer("tor").node_selectors == (LabelSelector(match_labels={"rack": "r2"}),)
    assert config.local_peers == ()


def test_bfd_auth_type_lists_the_choices() -> None:
    text = BASE_CONFIG.replace(
        '[[bfd_profiles]]\nname = "basic"',
        '[[bfd_profiles]]\nname = "basic"\n'
        'auth = { type = "keyed_md5", keys = { "1" = "s" }, send_key_id = 1 }',
    )
    assert config_errors(text) == [
        'bfd_profiles[0].auth.type: "keyed_md5" is not one of simple, keyed-md5,'
        " meticulous-keyed-md5, keyed-sha1, meticulous-keyed-sha1"
        ' (did you mean "keyed-md5"?)'
    ]
