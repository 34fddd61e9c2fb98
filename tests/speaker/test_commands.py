"""The command table drives both the control socket's dispatch and the CLI's words."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from speaker import cli, commands

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def test_every_cli_form_matches_its_command() -> None:
    for command in commands.COMMANDS:
        for form in command.forms:
            words = [w.lower() + "-x" if w.isupper() else w for w in form.words]
            found = commands.match(form.verb, words)
            assert found is not None, form.usage
            assert found[0] is command
            for want, word in zip(form.words, words, strict=True):
                if want.isupper():
                    assert found[1][want.lower()] == word
            assert set(found[1]) <= {p.name for p in command.params}, form.usage


def test_words_naming_no_command_are_a_usage_error(capsys: Any) -> None:
    assert cli.main(["show", "bgp", "-s", "/nonexistent"]) == 2
    assert "no command 'bgp'" in capsys.readouterr().err
    assert commands.match("show", ["bfd"]) is None
    assert commands.match("clear", ["bgp", "summary", "x"]) is None


async def test_parameters_are_checked_before_the_command_runs() -> None:
    speaker: Any = None  # never reached: the checks fail first

    async def ask(request: dict[str, Any]) -> Any:
        return await commands.dispatch(speaker, request)

    assert await ask({}) == {"ok": False, "error": 'missing "command"'}
    assert await ask({"command": "nope"}) == {"ok": False, "error": 'unknown command "nope"'}
    assert (await ask({"command": "show bgp neighbor"}))["error"] == 'missing "name"'
    assert (await ask({"command": "show bgp neighbor", "name": 3}))["error"] == 'missing "name"'
    assert (await ask({"command": "withdraw", "service": ""}))["error"] == 'missing "service"'
    bad = await ask({"command": "clear bfd peers counters", "name": 1})
    assert bad["error"] == '"name" must be a string'
    bad = await ask({"command": "reload", "allow_empty": "yes"})
    assert bad["error"] == '"allow_empty" must be true or false'
    bad = await ask({"command": "show bgp summary", "family": "ipv5"})
    assert bad["error"] == 'unknown address family "ipv5" (ipv4 or ipv6)'
    bad = await ask({"command": "show bgp advertised-routes", "family": "l2vpn"})
    assert bad["error"] == 'missing "name"'  # what is missing first, then what is wrong
    bad = await ask({"command": "show bgp advertised-routes", "family": "l2vpn", "name": "r1"})
    assert bad["error"] == 'unknown address family "l2vpn" (ipv4 or ipv6)'


@pytest.mark.parametrize("verb", ["show", "clear"])
def test_docs_list_every_command(verb: str) -> None:
    text = DOCS.read_text().replace("[", "").replace("]", "")  # optional words
    for command in commands.COMMANDS:
        for form in command.forms:
            if form.verb != verb:
                continue
            usage = "speaker " + form.usage
            assert re.search(re.escape(usage) + r"\b", text), f"{usage} not in {DOCS.name}"
