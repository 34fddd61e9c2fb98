"""Secrets never in an error message, whatever the file holds where a secret goes.

A ``password`` written as an integer (``password = 31337424242``) used to come back
as ``expected a string, got an integer (31337424242)`` from ``speaker check``, a
refused ``speaker reload`` and the log. Every secret field (attrs ``repr=False``, or
named like one: found below by walking the configuration's classes, so a new secret
field is covered or this test fails) is tried with an integer, a float, a boolean, a
date, an array and a table, and each message is searched for the value.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from speaker import cli
from speaker.config import ConfigError, loads_config
from speaker.config.load import _LISTS, is_secret
from speaker.config.model import ControlSettings, MetricsSettings, SpeakerSettings
from tests.helpers.running import running_speaker

PEER = """
[[peers]]
name = "r1"
peer_address = "198.18.0.1"
peer_asn = 65000
my_asn = 65001
"""

# Where each secret field is written: a TOML file with {value} in its place.
PLACES = {
    ("PeerSpec", "password"): PEER + "password = {value}\n",
    ("BfdAuth", "keys"): PEER
    + '\n[[bfd_profiles]]\nname = "p"\n[bfd_profiles.auth]\ntype = "keyed-md5"\n'
    "send_key_id = 1\nkeys = {value}\n",
}
ONE_KEY = PLACES[("BfdAuth", "keys")].replace("keys = {value}", 'keys = {{ "1" = {value} }}')

# (TOML value, texts none of which may appear in a message, the type the message names)
VALUES = [
    ("31337424242", ["31337424242"], "an integer"),
    ("-31337424243", ["31337424243"], "an integer"),
    ("3133.7424242", ["3133.7424242", "7424242"], "a float"),
    ("3.1337e+42", ["1337", "e+42"], "a float"),
    ("true", ["(true)"], "a boolean"),
    ("1979-05-27T07:31:33.7Z", ["1979", "07:31"], "a date/time"),
    ('["arr-SECRET-5", 31337424244]', ["arr-SECRET-5", "31337424244"], "an array"),
    ('{ t = "tab-SECRET-6", n = 31337424245 }', ["tab-SECRET-6", "31337424245"], "a table"),
]
A_STRING = ('"str-SECRET-7"', ["str-SECRET-7"], "a string")  # where a table is expected


def _classes(cls: Any) -> Iterator[type]:
    """``cls`` and every attrs class its fields can hold, recursively."""
    seen: set[type] = set()
    todo = [cls]
    while todo:
        typ = todo.pop()
        if attrs.has(typ) and typ not in seen:
            seen.add(typ)
            attrs.resolve_types(typ)
            todo += [f.type for f in attrs.fields(typ)]
        todo += list(typing.get_args(typ))
    yield from seen


def secret_fields() -> set[tuple[str, str]]:
    roots = [SpeakerSettings, ControlSettings, MetricsSettings, *_LISTS.values()]
    return {
        (cls.__name__, field.alias)
        for root in roots
        for cls in _classes(root)
        for field in attrs.fields(cls)
        if field.init and is_secret(field)
    }


def cases() -> Iterator[tuple[str, str, list[str], str]]:
    """(case id, TOML file, forbidden texts, the type the message names)."""
    for (cls, key), template in PLACES.items():
        values = [*VALUES, A_STRING] if key == "keys" else VALUES
        for value, forbidden, named in values:
            # keys = { t = ... } is a table, as it should be; its keys are not numbers.
            kind = 'key "t" is not a number' if key == "keys" and named == "a table" else named
            yield f"{cls}.{key}={value}", template.format(value=value), forbidden, kind
    for value, forbidden, kind in VALUES:
        yield f"BfdAuth.keys.1={value}", ONE_KEY.format(value=value), forbidden, kind


CASES = list(cases())
IDS = [case[0] for case in CASES]


def test_every_secret_field_is_tried() -> None:
    assert secret_fields() == set(PLACES)


def messages(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        loads_config(text)
    return [str(issue) for issue in info.value.errors]


@pytest.mark.parametrize(("name", "text", "forbidden", "kind"), CASES, ids=IDS)
def test_no_secret_value_in_load_errors(
    name: str, text: str, forbidden: list[str], kind: str
) -> None:
    found = messages(text)
    joined = "\n".join(found)
    assert f"got {kind}" in joined or kind in joined, found  # still says what is wrong...
    for secret in forbidden:
        assert secret not in joined, found  # ...but not what the value is


def test_the_messages_say_where_and_what_type() -> None:
    assert messages(PLACES[("PeerSpec", "password")].format(value="31337424242")) == [
        "peers[0].password: expected a string, got an integer"
    ]
    assert messages(ONE_KEY.format(value="[1, 2]")) == [
        "bfd_profiles[0].auth.keys.1: expected a string, got an array"
    ]
    # A key that is not a number: the key is in the path, the message keeps it.
    bad_id = ONE_KEY.format(value='"key-SECRET-8"').replace('"1" =', '"x" =')
    found = messages(bad_id)
    assert found[0] == 'bfd_profiles[0].auth.keys.x: key "x" is not a number', found
    assert "key-SECRET-8" not in "\n".join(found)
    # Not a secret: the value is still shown, as it helps.
    assert messages(PEER.replace("65000", "3.5")) == [
        'peers[0].peer_asn: expected an AS number, "internal" or "external", got a float (3.5)'
    ]


def test_a_password_that_is_too_long_or_not_utf8_is_not_shown(tmp_path: Path) -> None:
    long = "long-SECRET-" * 10
    found = messages(PLACES[("PeerSpec", "password")].format(value=f'"{long}"'))
    assert found == ["peers[0].password: the password is 120 bytes; TCP MD5 keys are at most 80"]
    key = tmp_path / "r1.key"
    key.write_bytes(b"md5-\xe9SECRET")  # latin-1, not UTF-8
    with pytest.raises(ConfigError) as info:
        loads_config(PEER + 'password_file = "r1.key"\n', base_dir=tmp_path)
    (issue,) = info.value.errors
    assert str(issue) == f"peers[0].password_file: cannot read {key}: not UTF-8 text (at byte 4)"


def test_url_credentials_are_not_shown() -> None:
    service = (
        '\n[[pools]]\nname = "v"\naddresses = ["198.19.0.0/24"]\n[[services]]\nname = "w"\n'
        'health = { http = "ftp://admin:url-SECRET-9@198.18.0.5/health" }\n'
    )
    found = "\n".join(messages(PEER + service))
    assert "services[0].health.http" in found and "ftp://<redacted>@198.18.0.5" in found
    assert "url-SECRET-9" not in found and "admin" not in found


CLI_CASES = [CASES[0], CASES[4], *(c for c in CASES if c[0].startswith("BfdAuth.keys.1="))]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_no_secret_value_from_check_or_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: tuple[str, str, list[str], str]
) -> None:
    _, text, forbidden, kind = case
    file = tmp_path / "speaker.toml"
    file.write_text(text)
    assert cli.main(["check", "-c", str(file), "--host-checks", "off"]) == cli.EXIT_CONFIG
    assert cli.main(["run", "-c", str(file)]) == cli.EXIT_CONFIG
    out = capsys.readouterr()
    assert f"got {kind}" in out.err
    for secret in forbidden:
        assert secret not in out.out + out.err


async def test_no_secret_value_from_a_refused_reload_or_its_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_speaker(tmp_path) as spk:
        good = spk.config.read_text()
        for value, forbidden, kind in VALUES:
            bad = good.replace('password = "md5-SECRET-1"', f"password = {value}")
            bad = bad.replace('"2" = "bfd-SECRET-4"', f'"2" = {value}')
            assert f"password = {value}" in bad and f'"2" = {value}' in bad
            spk.config.write_text(bad)
            caplog.clear()
            # speaker reload: the control socket's answer, printed by the CLI.
            assert await spk.cli("reload", "-s", str(spk.path)) == cli.EXIT_CONFIG
            out = capsys.readouterr()
            assert f"error: peers[0].password: expected a string, got {kind}" in out.err
            assert f"error: bfd_profiles[0].auth.keys.2: expected a string, got {kind}" in out.err
            # SIGHUP's path: the same reload, its errors only in the log.
            result = await spk.speaker.reload_file()
            assert not result.ok
            assert f"got {kind}" in caplog.text
            for secret in forbidden:
                assert secret not in out.out + out.err
                assert secret not in caplog.text
                assert all(secret not in error for error in result.errors)
        assert "md5-SECRET-1" not in caplog.text and "bfd-SECRET-4" not in caplog.text


def test_no_secret_value_from_import_metallb(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "peer.yaml"
    manifest.write_text(
        "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\n"
        "metadata: {name: a, namespace: metallb-system}\n"
        "spec: {myASN: 64500, peerASN: 64501, peerAddress: 198.18.1.1, password: 31337424242}\n"
    )
    assert cli.main(["import-metallb", str(manifest)]) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "spec.password: expected a string" in err
    assert "31337424242" not in err
