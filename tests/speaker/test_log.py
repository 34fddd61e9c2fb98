from __future__ import annotations

import json
import logging

from speaker.log import JsonFormatter, LogfmtFormatter, fields


def record(msg: str, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("speaker.bfd", logging.INFO, __file__, 1, msg, None, None)
    rec.fields = extra
    return rec


def test_logfmt_quotes_what_needs_quoting() -> None:
    line = LogfmtFormatter().format(
        record("state change", peer="198.18.1.1", old="UP", reason="a b")
    )
    assert "level=info" in line and 'msg="state change"' in line
    assert "peer=198.18.1.1 old=UP" in line and 'reason="a b"' in line


def test_json_lines_carry_fields() -> None:
    data = json.loads(JsonFormatter().format(record("x", teardown_ms=0.4)))
    assert data["teardown_ms"] == 0.4 and data["logger"] == "speaker.bfd"


def test_fields_helper() -> None:
    assert fields(a=1) == {"fields": {"a": 1}}
