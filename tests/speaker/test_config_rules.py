"""One test per validation rule: the exact path and message (and nothing else)."""

from __future__ import annotations

from pathlib import Path

import pytest

from speaker.config import ConfigError, loads_config

SPEAKER = """
[speaker]
my_asn = 64512
node_name = "lb-1"
"""

PROFILES = """
[[bfd_profiles]]
name = "basic"

[[bfd_profiles]]
name = "echo"
transmit_interval = 50
receive_interval = 50
echo_mode = true
"""

TOR = """
[[peers]]
name = "tor"
peer_address = "192.0.2.1"
peer_asn = 65000
"""

POOL = """
[[pools]]
name = "web"
addresses = ["203.0.113.0/28"]
"""

V6POOL = """
[[pools]]
name = "v6"
addresses = ["2001:db8::/124"]
"""


def issues(*parts: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        loads_config(SPEAKER + "".join(parts))
    return [str(i) for i in info.value.errors]


def warnings(*parts: str) -> list[str]:
    return [str(w) for w in loads_config(SPEAKER + "".join(parts)).warnings]


def peer(**keys: object) -> str:
    lines = ["[[peers]]"]
    keys = {"name": "tor", "peer_address": "192.0.2.1", "peer_asn": 65000, **keys}
    for key, value in keys.items():
        lines.append(f"{key} = {_toml(value)}")
    return "\n" + "\n".join(lines) + "\n"


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


def table(kind: str, **keys: object) -> str:
    return f"\n[[{kind}]]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in keys.items())


# ---- references ------------------------------------------------------------------------


def test_peer_references_unknown_bfd_profile() -> None:
    assert issues(PROFILES, peer(bfd_profile="my-bfd-profile")) == [
        'peers[0].bfd_profile: no BFD profile named "my-bfd-profile" (defined: basic, echo)'
    ]


def test_peer_references_bfd_profile_when_none_is_defined() -> None:
    assert issues(peer(bfd_profile="basic")) == [
        'peers[0].bfd_profile: no BFD profile named "basic" (none defined)'
    ]


def test_advertisement_references_unknown_pool() -> None:
    assert issues(POOL, table("advertisements", name="a", pools=["web", "api"])) == [
        'advertisements[0].pools[1]: no pool named "api" (defined: web)'
    ]


def test_advertisement_references_unknown_peer() -> None:
    assert issues(TOR, POOL, table("advertisements", name="a", peers=["tor2"])) == [
        'advertisements[0].peers[0]: no peer named "tor2" (defined: tor)'
    ]


def test_service_references_unknown_pool() -> None:
    assert issues(POOL, table("services", name="www", pool="api")) == [
        'services[0].pool: no pool named "api" (defined: web)'
    ]


@pytest.mark.parametrize(
    "section", ["bfd_profiles", "peers", "pools", "advertisements", "services"]
)
def test_duplicate_names(section: str) -> None:
    items = {
        "bfd_profiles": table("bfd_profiles", name="x"),
        "peers": peer(name="x"),
        "pools": table("pools", name="x", addresses=["198.51.100.0/30"]),
        "advertisements": table("advertisements", name="x"),
        "services": table("services", name="x", pool="web", address="203.0.113.1"),
    }
    second = items[section]
    if section == "peers":
        second = peer(name="x", peer_address="192.0.2.2")
    if section == "pools":
        second = table("pools", name="x", addresses=["198.51.100.4/30"])
    if section == "services":
        second = table("services", name="x", pool="web", address="203.0.113.2")
    assert issues(POOL, items[section], second) == [
        f'{section}[1].name: duplicate name "x" (also {section}[0])'
        if section != "pools"
        else 'pools[2].name: duplicate name "x" (also pools[1])'
    ]


# ---- peers and timers ------------------------------------------------------------------


def test_my_asn_must_be_set_somewhere() -> None:
    with pytest.raises(ConfigError) as info:
        loads_config(TOR)
    assert [str(i) for i in info.value.errors] == [
        "peers[0].my_asn: not set (set it here or as my_asn in [speaker])"
    ]


def test_asn_range() -> None:
    assert issues(peer(peer_asn=0)) == ["peers[0].peer_asn: 0 is below the minimum of 1"]
    assert issues(peer(peer_asn=4294967296)) == [
        "peers[0].peer_asn: 4294967296 is above the maximum of 4294967295"
    ]


def test_peer_port_range() -> None:
    assert issues(peer(peer_port=0)) == ["peers[0].peer_port: 0 is below the minimum of 1"]
    assert issues(peer(peer_port=65536)) == [
        "peers[0].peer_port: 65536 is above the maximum of 65535"
    ]


def test_keepalive_above_hold_time() -> None:
    assert issues(peer(hold_time="90s", keepalive_time="2m")) == [
        "peers[0].keepalive_time: 2m is above the hold time of 1m30s"
    ]


def test_keepalive_above_hold_time_zero() -> None:
    assert issues(peer(hold_time="0s", keepalive_time="10s")) == [
        "peers[0].keepalive_time: 10s is above the hold time of 0s"
    ]


def test_zero_keepalive_needs_zero_hold() -> None:
    assert issues(peer(hold_time="9s", keepalive_time="0s")) == [
        "peers[0].keepalive_time: 0 sends no keepalives, so the peer's hold timer (9s) would"
        " expire; use 0 only with hold_time 0"
    ]


def test_hold_time_below_three_seconds() -> None:
    assert issues(peer(hold_time="2s")) == [
        "peers[0].hold_time: 2s is below the minimum of 3s (use 0 or >= 3s)"
    ]


def test_hold_time_whole_seconds() -> None:
    assert issues(peer(hold_time="3500ms")) == [
        "peers[0].hold_time: 3.5s is not a whole number of seconds"
    ]


def test_hold_time_derived_from_keepalive_below_three_seconds() -> None:
    assert issues(peer(keepalive_time="500ms")) == [
        "peers[0].keepalive_time: 500ms gives a hold time of 1.5s (3 x keepalive), below the"
        " minimum of 3s; set hold_time too"
    ]


def test_bfd_profile_ranges() -> None:
    assert issues(table("bfd_profiles", name="p", transmit_interval=5)) == [
        "bfd_profiles[0].transmit_interval: 5 is below the minimum of 10 ms"
    ]
    assert issues(table("bfd_profiles", name="p", receive_interval=60001, minimum_ttl=255)) == [
        "bfd_profiles[0].receive_interval: 60001 is above the maximum of 60000 ms",
        "bfd_profiles[0].minimum_ttl: 255 is above the maximum of 254",
    ]


def test_detect_multiplier_of_one() -> None:
    assert issues(table("bfd_profiles", name="p", detect_multiplier=1)) == [
        "bfd_profiles[0].detect_multiplier: 1 is below the minimum of 2"
    ]


def test_bfd_detection_time_not_below_hold_time() -> None:
    slow = table(
        "bfd_profiles",
        name="slow",
        transmit_interval=1000,
        receive_interval=1000,
        detect_multiplier=5,
    )
    assert issues(slow, peer(bfd_profile="slow", hold_time="5s")) == [
        'peers[0].bfd_profile: BFD detection time 5000 ms (5 x 1000 ms) of profile "slow" is not'
        " below the hold time of 5s, so BFD would not detect a failure before BGP does"
    ]


def test_bfd_detection_time_uses_the_larger_interval() -> None:
    lopsided = table("bfd_profiles", name="p", transmit_interval=2000, receive_interval=100)
    assert issues(lopsided, peer(bfd_profile="p", hold_time="6s")) == [
        'peers[0].bfd_profile: BFD detection time 6000 ms (3 x 2000 ms) of profile "p" is not'
        " below the hold time of 6s, so BFD would not detect a failure before BGP does"
    ]


def test_hold_time_zero_is_exempt_from_the_detection_rule() -> None:
    slow = table("bfd_profiles", name="slow", transmit_interval=60000, receive_interval=60000)
    loads_config(SPEAKER + slow + peer(bfd_profile="slow", hold_time="0s"))


def test_echo_with_ipv6_peer() -> None:
    assert issues(
        PROFILES, peer(peer_address="2001:db8::1", bfd_profile="echo", interface="eth0")
    ) == [
        'peers[0].bfd_profile: profile "echo" has echo_mode, which is IPv4 only, but peer_address'
        " 2001:db8::1 is IPv6"
    ]


def test_echo_needs_no_interface() -> None:
    """Without ``interface`` echo uses the interface of the route to the peer (looked up
    when the peer starts), as FRR does."""
    loads_config(SPEAKER + PROFILES + peer(bfd_profile="echo"))


def test_vrf_is_a_device_name() -> None:
    assert loads_config(SPEAKER + peer(vrf="red")).peers[0].vrf == "red"
    loads_config(SPEAKER + peer(vrf="a-name-too-long"))  # 15 bytes
    assert issues(peer(vrf="a-name-too-long!")) == [
        'peers[0].vrf: "a-name-too-long!" is not a device name (1-15 characters, no "/" or spaces)'
    ]
    assert issues(peer(vrf="red/x")) != []


def test_the_same_address_in_two_vrfs_is_two_peers() -> None:
    loads_config(SPEAKER + peer(name="a", vrf="red") + peer(name="b"))
    same = peer(name="a", vrf="red") + peer(name="b", vrf="red")
    assert issues(same) == [
        'peers[1].peer_address: 192.0.2.1 (port 179) is also the address of peer "a" in VRF'
        ' "red" on this node'
    ]


def test_echo_on_multihop_peer_is_a_warning() -> None:
    assert warnings(PROFILES, peer(bfd_profile="echo", ebgp_multihop=3)) == [
        'peers[0].bfd_profile: profile "echo" has echo_mode, which is single-hop only (RFC 5883);'
        " it is ignored for this multihop peer"
    ]


def test_multihop_ttl_range() -> None:
    assert issues(peer(ebgp_multihop=256)) == [
        "peers[0].ebgp_multihop: 256 is not a TTL (use true, false or 1-255)"
    ]


def test_source_address_family() -> None:
    assert issues(peer(source_address="2001:db8::10")) == [
        "peers[0].source_address: 2001:db8::10 is IPv6 but peer_address 192.0.2.1 is IPv4"
    ]


def test_password_and_password_file() -> None:
    assert issues(peer(password="a", password_file="/x")) == [
        "peers[0].password_file: password and password_file are both set; use one"
    ]


def test_password_file_unreadable(tmp_path: Path) -> None:
    missing = tmp_path / "nope.key"
    assert issues(peer(password_file=str(missing))) == [
        f"peers[0].password_file: cannot read {missing}: No such file or directory"
    ]


def test_password_too_long_for_tcp_md5() -> None:
    assert issues(peer(password="x" * 81)) == [
        "peers[0].password: the password is 81 bytes; TCP MD5 keys are at most 80"
    ]


def test_password_empty(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    assert issues(peer(password_file=str(tmp_path / "empty"))) == [
        "peers[0].password_file: the password is empty"
    ]


def test_two_peers_at_one_address_on_this_node() -> None:
    assert issues(peer(), peer(name="tor-again")) == [
        'peers[1].peer_address: 192.0.2.1 (port 179) is also the address of peer "tor" on this node'
    ]


def test_same_address_on_different_nodes_is_fine() -> None:
    other = peer(name="tor-r2", node_selectors=[])
    other = other.replace(
        "node_selectors = []", 'node_selectors = [{ match_labels = { r = "2" } }]'
    )
    loads_config(SPEAKER + peer() + other)


# ---- pools and advertisements ------------------------------------------------------------


def test_overlapping_pools() -> None:
    other = table("pools", name="api", addresses=["203.0.113.8-203.0.113.20"])
    assert issues(POOL, other) == [
        'pools[1].addresses[0]: 203.0.113.8-203.0.113.20 overlaps 203.0.113.0/28 of pool "web"'
        " (pools[0].addresses[0])"
    ]


def test_overlap_within_a_pool() -> None:
    pool = table("pools", name="web", addresses=["2001:db8::/64", "2001:db8::5-2001:db8::9"])
    assert issues(pool) == [
        "pools[0].addresses[1]: 2001:db8::5-2001:db8::9 overlaps 2001:db8::/64 of addresses[0] of"
        " the same pool"
    ]


def test_pool_address_syntax() -> None:
    pool = table(
        "pools", name="web", addresses=["203.0.113.1/28", "203.0.113.9-203.0.113.2", "10.0.0.1"]
    )
    assert issues(pool) == [
        'pools[0].addresses[0]: "203.0.113.1/28" has host bits set (did you mean'
        ' "203.0.113.0/28"?)',
        'pools[0].addresses[1]: "203.0.113.9-203.0.113.2" ends before it starts',
        'pools[0].addresses[2]: "10.0.0.1" is neither a CIDR nor a range (for a single address'
        ' write "10.0.0.1/32" or "/128")',
    ]


def test_pool_needs_addresses() -> None:
    assert issues(table("pools", name="web", addresses=[])) == [
        "pools[0].addresses: must not be empty"
    ]


def test_aggregation_shorter_than_pool_prefix() -> None:
    ad = table("advertisements", name="a", aggregation_length=24)
    assert issues(POOL, ad) == [
        'advertisements[0].aggregation_length: 24 is shorter than 203.0.113.0/28 in pool "web";'
        " a /24 would attract traffic for addresses outside the pool"
    ]


def test_aggregation_of_a_range_pool_uses_its_cidrs() -> None:
    # 203.0.113.1-203.0.113.14 is summarised to /32, /31, /30, /30, /31, /32: nothing but
    # /32 is safe.
    pool = table("pools", name="web", addresses=["203.0.113.1-203.0.113.14"])
    ad = table("advertisements", name="a", aggregation_length=30)
    assert issues(pool, ad) == [
        "advertisements[0].aggregation_length: 30 is shorter than 203.0.113.1/32 in pool"
        ' "web"; a /30 would attract traffic for addresses outside the pool'
    ]


def test_aggregation_v6() -> None:
    ad = table("advertisements", name="a", aggregation_length_v6=64)
    assert issues(V6POOL, ad) == [
        'advertisements[0].aggregation_length_v6: 64 is shorter than 2001:db8::/124 in pool "v6";'
        " a /64 would attract traffic for addresses outside the pool"
    ]


def test_aggregation_length_range() -> None:
    assert issues(table("advertisements", name="a", aggregation_length=33)) == [
        "advertisements[0].aggregation_length: 33 is above the maximum of 32"
    ]


def test_announce_all_route_limit() -> None:
    pool = table("pools", name="big", addresses=["2001:db8::/64"], announce_all=True)
    ad = table("advertisements", name="a", aggregation_length_v6=128)
    assert issues(pool, ad) == [
        'advertisements[0].aggregation_length_v6: pool "big" has announce_all, which at /128'
        " makes 18446744073709551616 routes (the limit is 65536); use a shorter aggregation"
        " length"
    ]


def test_local_pref_conflict() -> None:
    a = table("advertisements", name="a", pools=["web"], local_pref=100)
    b = table("advertisements", name="b", local_pref=200)
    assert issues(TOR, POOL, a, b) == [
        'advertisements[1].local_pref: 200 conflicts with local_pref 100 of advertisement "a"'
        ' (advertisements[0]): both send pool "web" at /32 to peer "tor"'
    ]


def test_local_pref_no_conflict_at_other_length_or_other_peers() -> None:
    a = table("advertisements", name="a", local_pref=100, aggregation_length=28)
    b = table("advertisements", name="b", local_pref=200)
    loads_config(SPEAKER + TOR + POOL + a + b)
    a = table("advertisements", name="a", local_pref=100, peers=["tor"])
    b = table("advertisements", name="b", local_pref=200, peers=["tor2"])
    loads_config(SPEAKER + TOR + peer(name="tor2", peer_address="192.0.2.2") + POOL + a + b)


def test_advertisement_sends_ipv6_pool_to_echo_peer() -> None:
    ad = table("advertisements", name="a", pools=["v6"])
    assert issues(PROFILES, peer(bfd_profile="echo", interface="eth0"), V6POOL, ad) == [
        'advertisements[0].pools: sends IPv6 pool "v6" to peer "tor", whose BFD profile "echo"'
        " has echo_mode (IPv4 only; as in MetalLB, list the peers or pools explicitly)"
    ]


def test_bad_community() -> None:
    ad = table("advertisements", name="a", communities=["65000:70000", "large:1:2", "no-such"])
    message = (
        'is not a community (write "65000:100" with 16-bit halves, a well-known name such as'
        ' "no-export", or "large:1:2:3" with 32-bit parts)'
    )
    assert issues(ad) == [
        f'advertisements[0].communities[0]: "65000:70000" {message}',
        f'advertisements[0].communities[1]: "large:1:2" {message}',
        f'advertisements[0].communities[2]: "no-such" {message}',
    ]


# ---- services --------------------------------------------------------------------------


def test_service_address_outside_its_pool() -> None:
    assert issues(POOL, table("services", name="www", pool="web", address="203.0.113.99")) == [
        'services[0].address: 203.0.113.99 is outside its pool "web" (203.0.113.0/28)'
    ]


def test_service_address_in_no_pool() -> None:
    assert issues(POOL, table("services", name="www", address="198.51.100.1")) == [
        "services[0].address: 198.51.100.1 is in no pool (defined: web); advertisements"
        " announce pools"
    ]


def test_service_needs_address_or_pool() -> None:
    assert issues(POOL, table("services", name="www")) == [
        "services[0]: needs an address or a pool to take one from"
    ]


def test_service_pool_without_auto_assign() -> None:
    pool = table("pools", name="web", addresses=["203.0.113.0/28"], auto_assign=False)
    assert issues(pool, table("services", name="www", pool="web")) == [
        'services[0].pool: pool "web" has auto_assign = false; give the service an address'
    ]


def test_pool_too_small_for_its_services() -> None:
    pool = table("pools", name="web", addresses=["203.0.113.0/31"])
    services = "".join(table("services", name=f"s{i}", pool="web") for i in range(3))
    assert issues(NODE_LOCAL, pool, services) == [
        'services[2].pool: pool "web" is full: its 2 addresses are all taken by the services'
        " before this one"
    ]


NODE_LOCAL = 'allocation = "node-local"\n'


def test_a_pool_service_needs_an_address_in_the_file() -> None:
    services = table("services", name="www", pool="web") + table(
        "services", name="api", pool="web", address="203.0.113.3"
    )
    assert issues(POOL, services) == [
        'services[0].address: missing: service "www" takes its address from pool "web", and'
        " every node must give it the same one; run `speaker allocate -c FILE` to write it"
        ' into this file (or set allocation = "node-local" in [speaker]: each node allocates'
        " alone, unsafe with more than one node)"
    ]
    assert loads_config(SPEAKER + NODE_LOCAL + POOL + services).speaker.allocation == "node-local"


def test_allocation_mode_is_config_or_node_local() -> None:
    assert loads_config(SPEAKER).speaker.allocation == "config"
    assert issues('allocation = "cluster"\n') == [
        'speaker.allocation: "cluster" is not an allocation mode (use "config": addresses'
        ' written into this file by speaker allocate, or "node-local")'
    ]


def test_a_broken_speaker_table_does_not_also_blame_the_services() -> None:
    found = issues('hold_down = "soon"\n', POOL, table("services", name="www", pool="web"))
    assert len(found) == 1 and found[0].startswith("speaker.hold_down: "), found


def test_two_services_one_address() -> None:
    a = table("services", name="a", address="203.0.113.1")
    b = table("services", name="b", address="203.0.113.1")
    assert issues(POOL, a, b) == [
        'services[1].address: 203.0.113.1 is also the address of service "a"'
    ]


def test_health_check_needs_exactly_one_probe() -> None:
    text = POOL + '[[services]]\nname = "www"\npool = "web"\nhealth = { interval = "5s" }\n'
    assert issues(text) == ["services[0].health: set exactly one of tcp, http or exec (got none)"]


def test_health_check_timeout_above_interval_is_a_warning() -> None:
    text = POOL + (
        '[[services]]\nname = "www"\npool = "web"\naddress = "203.0.113.1"\n'
        'health = { tcp = "127.0.0.1:80", interval = "500ms", timeout = "1s" }\n'
    )
    assert warnings(text) == [
        "services[0].health.timeout: 1s is longer than the interval 500ms; a slow probe delays"
        " the next one"
    ]


def test_health_check_targets() -> None:
    text = POOL + (
        '[[services]]\nname = "a"\npool = "web"\nhealth = { tcp = "localhost" }\n'
        '[[services]]\nname = "b"\npool = "web"\nhealth = { http = "ftp://x/" }\n'
        '[[services]]\nname = "c"\npool = "web"\nhealth = { exec = [] }\n'
    )
    assert issues(text) == [
        'services[0].health.tcp: "localhost" is not "host:port" (e.g. "127.0.0.1:8080",'
        ' "[::1]:80")',
        'services[1].health.http: "ftp://x/" is not an http:// or https:// URL',
        'services[2].health: exec needs a command (a non-empty array, e.g. ["/bin/true"])',
    ]


# ---- warnings ------------------------------------------------------------------------------


def test_timers_at_the_floor_pass_with_a_warning() -> None:
    fast = table("bfd_profiles", name="fast", transmit_interval=10, receive_interval=10)
    assert warnings(fast) == [
        f"bfd_profiles[0].{key}: 10 ms is the floor; timers this short cause false positives"
        " under load (CPU starvation, busy links)"
        for key in ("transmit_interval", "receive_interval")
    ]


def test_detect_multiplier_two_passes_with_a_warning() -> None:
    assert warnings(table("bfd_profiles", name="p", detect_multiplier=2)) == [
        "bfd_profiles[0].detect_multiplier: 2 declares the session down after only two lost"
        " packets; expect false positives under load (3 is usual)"
    ]


def test_warnings_are_also_reported_with_errors() -> None:
    with pytest.raises(ConfigError) as info:
        loads_config(
            SPEAKER + table("bfd_profiles", name="p", detect_multiplier=2) + peer(peer_asn=0)
        )
    assert len(info.value.errors) == 1
    assert [w.path for w in info.value.warnings] == ["bfd_profiles[0].detect_multiplier"]
