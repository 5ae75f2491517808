"""Structured logs: one JSON line per event (or key=value text when `log.formatter: text`).

Tokens and Authorization headers are never passed to a logger by fastreg code; this module adds
no request data on its own.
"""

from __future__ import annotations

import datetime
import logging
import sys
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp.http_exceptions import HttpProcessingError

_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
            timespec="milliseconds"
        ),
        "level": record.levelname.lower(),
        "msg": record.getMessage(),
        "logger": record.name,
        "pid": record.process,
    }
    out.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED})
    if record.exc_info:
        out["exc"] = logging.Formatter().formatException(record.exc_info)
    return out


class JSONFormatter(logging.Formatter):
    def __init__(self, static: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.static = dict(static or {})

    def format(self, record: logging.LogRecord) -> str:
        fields = {**self.static, **_fields(record)}
        try:
            return orjson.dumps(fields, default=str).decode()
        except orjson.JSONEncodeError:  # a client's undecodable bytes (surrogates) in a field
            return orjson.dumps(_escaped(fields), default=lambda o: _escaped(str(o))).decode()


def _escaped(value: Any) -> Any:
    """``value`` with every surrogate in its strings written as a `\\udcxx` escape."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode()
    if isinstance(value, dict):
        return {_escaped(k): _escaped(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_escaped(v) for v in value]
    return value


class TextFormatter(logging.Formatter):
    def __init__(self, static: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.static = dict(static or {})

    def format(self, record: logging.LogRecord) -> str:
        fields = {**self.static, **_fields(record)}
        head = f'{fields.pop("time")} {fields.pop("level")} {fields.pop("msg")!r}'
        return head + "".join(f" {k}={v}" for k, v in fields.items())


class MalformedRequests(logging.Filter):
    """aiohttp's server logs every request its HTTP parser refuses (a bad method, a duplicate
    Host, a line past the limits) at error level with a traceback, and answers it a plain 400
    itself, before any route runs (as Go's net/http does for Distribution). That is the client's
    fault, and any client can send it at will: a traceback per request would flood the log and
    page an operator. Such a record becomes one warning line with the parser's reason."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args = "malformed request refused: %s", (str(exc)[:200],)
            record.exc_info = record.exc_text = None
        return True


def setup_logging(level: str = "info", formatter: str = "json", static: Mapping[str, str] | None = None) -> None:
    """Configure the root logger once per process (called by the CLI, never at import)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter(static) if formatter == "text" else JSONFormatter(static))
    handler.addFilter(MalformedRequests())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level.lower(), logging.INFO))


_LEVELS = {
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}
