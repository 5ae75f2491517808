"""Logs as Distribution writes them, so log pipelines built for it (Loki, ELK) keep working.

Distribution logs through logrus, and `log.formatter` picks one of its three formatters; each is
reproduced here on Python's `logging`:

- `json`: logrus' JSONFormatter: one object per line, the event's fields plus `time` (RFC 3339
  with nanosecond precision, trailing zeros dropped, as Go's `time.RFC3339Nano`), `level`
  (logrus' names: `debug`, `info`, `warning`, `error`, `fatal`) and `msg`.
- `text` (the default, as in Distribution): logrus' TextFormatter, logfmt: `time="..."
  level=info msg="..."` then the fields sorted by name, `key=value`. A value is written bare
  when it holds only ``[A-Za-z0-9-._/@^+]`` (the empty string included) and otherwise quoted with
  Go's `strconv.Quote` (`go_quote`), so a value with a space, quote, `=` or a control character
  can never be read as more fields.
- `logstash`: the logstash formatter Distribution 2.x used (`bshuster-repo/logrus-logstash-hook`):
  the fields plus `@timestamp`, `@version: "1"`, `message` and `level`.

A field that would overwrite a formatter's own key (`time`, `level`) is renamed `fields.<key>`,
as logrus and the logstash hook do. A field whose value is None is left out (Distribution leaves out what its
context does not hold). Every line carries the process's `instance.id` (a fresh UUID, as
Distribution's), `version` (fastreg's) and `log.fields`; fastreg adds `logger` and `pid`.

The formatters are written here rather than taken from a library: none on PyPI writes logrus'
quoting (logfmt libraries follow go-logfmt, which quotes differently and escapes `\\x01` as
`\\u0001`), and a parser in the test suite (`logfmtkv`) checks that what is written reads back.

Tokens and Authorization headers are never passed to a logger by fastreg code; this module adds
no request data on its own.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from aiohttp.http_exceptions import HttpProcessingError

from fastreg import __version__

ACCESS_LOGGER = "fastreg.access"  # the "response completed" line of every request (api/middleware.py)
_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
#: logrus' level names (Python's CRITICAL is logrus' fatal)
_LEVEL_NAMES = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "fatal",
}


class _Clock:
    """Go's `time.RFC3339Nano` in UTC, the second's prefix formatted once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def format(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        fraction = f"{int((created - second) * 1_000_000):06d}".rstrip("0")
        return f"{self._prefix}.{fraction}Z" if fraction else f"{self._prefix}Z"


def level_name(record: logging.LogRecord) -> str:
    return _LEVEL_NAMES.get(record.levelno) or record.levelname.lower()


def _fields(record: logging.LogRecord, static: Mapping[str, Any], own: tuple[str, ...]) -> dict[str, Any]:
    """The event's fields without the formatter's own keys (``own``, renamed `fields.<key>`)."""
    data: dict[str, Any] = dict(static)
    data["logger"] = record.name
    data["pid"] = record.process
    for key, value in record.__dict__.items():
        if key not in _RESERVED and value is not None:
            data[key] = value
    if record.exc_info:
        data["exc"] = logging.Formatter().formatException(record.exc_info)
    for key in own:
        if key in data:
            data["fields." + key] = data.pop(key)
    return data


class _Formatter(logging.Formatter):
    own: tuple[str, ...] = ()

    def __init__(self, static: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.static = dict(static or {})
        self.clock = _Clock()

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        return _fields(record, self.static, self.own)


class JSONFormatter(_Formatter):
    """logrus' JSONFormatter (keys sorted, as Go's encoding/json writes a map)."""

    own = ("time", "level", "msg")

    def format(self, record: logging.LogRecord) -> str:
        fields = self.fields(record)
        fields["time"] = self.clock.format(record.created)
        fields["level"] = level_name(record)
        fields["msg"] = record.getMessage()
        return _dumps(fields)


class LogstashFormatter(_Formatter):
    """logrus-logstash-hook's LogstashFormatter as Distribution 2.x configured it."""

    own = ("message", "level")

    def format(self, record: logging.LogRecord) -> str:
        fields = self.fields(record)
        fields["@version"] = "1"
        fields["@timestamp"] = self.clock.format(record.created)
        fields["message"] = record.getMessage()
        fields["level"] = level_name(record)
        return _dumps(fields)


def _dumps(fields: dict[str, Any]) -> str:
    try:
        return orjson.dumps(fields, default=str, option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONEncodeError:  # a client's undecodable bytes (surrogates) in a field
        return orjson.dumps(
            _escaped(fields), default=lambda o: _escaped(str(o)), option=orjson.OPT_SORT_KEYS
        ).decode()


def _escaped(value: Any) -> Any:
    """``value`` with every surrogate in its strings written as a `\\udcxx` escape."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode()
    if isinstance(value, dict):
        return {_escaped(k): _escaped(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_escaped(v) for v in value]
    return value


class TextFormatter(_Formatter):
    """logrus' TextFormatter without colours: logfmt, the fixed keys first, then sorted."""

    own = ("time", "level", "msg")

    def format(self, record: logging.LogRecord) -> str:
        fields = self.fields(record)
        parts = [
            f"time={logfmt_value(self.clock.format(record.created))}",
            f"level={level_name(record)}",
        ]
        message = record.getMessage()
        if message:  # logrus leaves out an empty msg
            parts.append(f"msg={logfmt_value(message)}")
        parts.extend(f"{key}={logfmt_value(fields[key])}" for key in sorted(fields))
        return " ".join(parts)


# logrus' TextFormatter.needsQuoting: anything but these characters (the empty string has none)
_NEEDS_QUOTING = re.compile(r"[^A-Za-z0-9\-._/@^+]")
# what strconv.Quote writes as it is: printable, neither quote nor backslash (fast path)
_PLAIN_IN_QUOTES = re.compile(r'[^"\\\x00-\x1f\x7f]*')
_NAMED_ESCAPES = {
    "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
    "\\": "\\\\", '"': '\\"',
}


def logfmt_value(value: Any) -> str:
    """A field value as logrus writes it: `fmt.Sprint`'s text, quoted when it needs to be."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = value
    else:
        text = str(value)
    if _NEEDS_QUOTING.search(text) is None:
        return text
    return go_quote(text)


def go_quote(text: str) -> str:
    """Go's `strconv.Quote`: printable characters as they are (non-ASCII too), `\\n`-style
    escapes, `\\xNN` below space and for DEL, `\\uNNNN` / `\\UNNNNNNNN` for other unprintable
    characters. A surrogate that stands for an undecodable byte (Python's `surrogateescape`,
    how a client's invalid UTF-8 arrives) is that byte, `\\xNN`, as Go writes invalid UTF-8."""
    if _PLAIN_IN_QUOTES.fullmatch(text) and text.isprintable():
        return f'"{text}"'
    out = ['"']
    for char in text:
        named = _NAMED_ESCAPES.get(char)
        if named is not None:
            out.append(named)
        elif char.isprintable():
            out.append(char)
        else:
            code = ord(char)
            if code < 0x20 or code == 0x7F:
                out.append(f"\\x{code:02x}")
            elif 0xDC80 <= code <= 0xDCFF:
                out.append(f"\\x{code - 0xDC00:02x}")
            elif code < 0x10000:
                out.append(f"\\u{code:04x}")
            else:
                out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


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


FORMATTERS: Mapping[str, Callable[[Mapping[str, Any]], logging.Formatter]] = {
    "json": JSONFormatter,
    "text": TextFormatter,
    "logstash": LogstashFormatter,
}


def instance_fields(static: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What every line of this process carries: `instance.id`, `version`, then `log.fields`."""
    return {"instance.id": str(uuid.uuid4()), "version": __version__, **(static or {})}


def setup_logging(
    level: str = "info",
    formatter: str = "text",
    static: Mapping[str, str] | None = None,
    accesslog: bool = True,
) -> None:
    """Configure the root logger once per process (called by the CLI, never at import).
    ``accesslog=False`` (`log.accesslog.disabled`) silences the one line per request."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(FORMATTERS.get(formatter, TextFormatter)(instance_fields(static)))
    handler.addFilter(MalformedRequests())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level.lower(), logging.INFO))
    logging.getLogger(ACCESS_LOGGER).disabled = not accesslog


_LEVELS = {
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}
