"""Logging setup, run once from the CLI: logfmt (default) or JSON lines on stderr.

Modules log with ``logging.getLogger("speaker.<part>")`` and put structured fields in
``extra={"fields": {...}}``; the formatters print them as ``key=value`` pairs (or
JSON members) after the message. Secrets never reach a log call.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

__all__ = ["JsonFormatter", "LogfmtFormatter", "fields", "setup_logging"]

_RESERVED = ("ts", "level", "logger", "msg")


def fields(**values: Any) -> dict[str, Any]:
    """``log.info("...", extra=fields(peer=..., old=...))``."""
    return {"fields": values}


def _timestamp(record: logging.LogRecord) -> str:
    t = time.gmtime(record.created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"


def _record_fields(record: logging.LogRecord) -> dict[str, Any]:
    extra = getattr(record, "fields", None)
    return dict(extra) if isinstance(extra, dict) else {}


def _logfmt_value(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\\') or not text.isprintable():
        return json.dumps(text)
    return text


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        pairs = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **{k: v for k, v in _record_fields(record).items() if k not in _RESERVED},
        }
        line = " ".join(f"{k}={_logfmt_value(v)}" for k, v in pairs.items())
        if record.exc_info:
            line += " error=" + _logfmt_value(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data.update({k: v for k, v in _record_fields(record).items() if k not in _RESERVED})
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def setup_logging(fmt: str = "logfmt", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
