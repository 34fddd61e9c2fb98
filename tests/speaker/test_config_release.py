"""A parsed file is freed a table at a time (speaker.config.load.let_go): dropping the
document of 65,536 services at once held the GIL for 40-60 ms in a reload's worker."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from speaker.config import load as load_module
from speaker.config import loads_config
from speaker.config.load import let_go

EXAMPLE = Path(__file__).parents[2] / "conf" / "speaker.toml"


def test_loading_empties_the_parsed_document_and_the_draft(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = EXAMPLE.read_text()
    kept: dict[str, Any] = {}
    parse, structure = tomllib.loads, load_module.structure

    def parse_and_keep(source: str) -> dict[str, Any]:
        document = parse(source)
        kept["document"] = document
        return document

    def structure_and_keep(data: Any) -> Any:
        kept["draft"], issues = structure(data)
        return kept["draft"], issues

    monkeypatch.setattr(tomllib, "loads", parse_and_keep)
    monkeypatch.setattr(load_module, "structure", structure_and_keep)
    config = loads_config(text, base_dir=EXAMPLE.parent)
    monkeypatch.undo()

    assert kept["document"] == {}
    draft = kept["draft"]
    assert (draft.services, draft.peers, draft.pools, draft.names) == ([], [], [], {})
    # What the config took from the document is intact.
    again = loads_config(text, base_dir=EXAMPLE.parent)
    assert config.services and config.peers and config.pools
    assert (config.services, config.peers, config.pools, config.advertisements) == (
        again.services, again.peers, again.pools, again.advertisements,
    )  # fmt: skip


def test_a_refused_file_is_let_go_of_too(monkeypatch: pytest.MonkeyPatch) -> None:
    kept: list[dict[str, Any]] = []
    parse = tomllib.loads

    def parse_and_keep(source: str) -> dict[str, Any]:
        kept.append(parse(source))
        return kept[0]

    monkeypatch.setattr(tomllib, "loads", parse_and_keep)
    with pytest.raises(load_module.ConfigError):
        loads_config('[[peers]]\nname = "x"\n[[services]]\nname = "a"\n')
    assert kept == [{}]


def test_let_go_empties_what_only_it_holds_and_keeps_what_is_shared() -> None:
    shared_list = [1, 2]
    shared_table = {"k": [3]}
    document: dict[str, Any] = {
        "own": {"deep": [{"x": [4, 5]}]},
        "shared_list": shared_list,
        "shared_table": shared_table,
        "rows": [{"a": 1}, shared_table],
    }
    own = document["own"]
    let_go(document)
    assert document == {}
    assert shared_list == [1, 2]
    assert shared_table == {"k": [3]}
    assert own == {"deep": [{"x": [4, 5]}]}  # held here too


def test_let_go_is_not_recursive() -> None:
    deep: list[Any] = []
    node = deep
    for _ in range(sys.getrecursionlimit() * 4):
        node.append([])
        node = node[0]
    del node
    let_go(deep)
    assert deep == []
