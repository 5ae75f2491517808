"""The log formatters line by line: logrus' text format read back by a logfmt parser for any
string (hypothesis), Go's quoting and duration strings, the JSON and logstash shapes."""

from __future__ import annotations

import json
import logging
from typing import Any

import logfmtkv
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastreg.api.middleware import go_duration
from fastreg.server.logs import (
    JSONFormatter,
    LogstashFormatter,
    TextFormatter,
    go_quote,
    instance_fields,
    logfmt_value,
    setup_logging,
)


def record(msg: str, levelno: int = logging.INFO, **fields: Any) -> logging.LogRecord:
    rec = logging.LogRecord("fastreg.test", levelno, __file__, 1, msg, (), None)
    rec.__dict__.update(fields)
    return rec


# hypothesis' text() leaves out surrogates: a client's undecodable byte is written `\xNN`, which
# reads back as that byte (a test below), not as the surrogate Python stood it for
@given(st.text(), st.text())
def test_any_string_reads_back_from_the_text_format(msg: str, value: str) -> None:
    line = TextFormatter().format(record(msg, **{"http.request.uri": value, "x": value}))
    assert "\n" not in line
    parsed = logfmtkv.parse(line)  # lenient: also reads Go's \a \v \xNN \UNNNNNNNN escapes
    assert parsed.get("msg", "") == msg  # logrus leaves an empty msg out
    assert parsed["http.request.uri"] == value == parsed["x"]
    assert parsed["level"] == "info" and parsed["logger"] == "fastreg.test"


# what go-logfmt (Loki's parser) reads strictly: every printable character and \n \r \t \b \f
_STRICT = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Cf", "Co", "Cn", "Zl", "Zp"))
                  | st.sampled_from("\n\r\t\b\f\"\\= "))  # fmt: skip


@given(_STRICT)
def test_printable_strings_read_back_with_go_logfmts_rules(value: str) -> None:
    line = TextFormatter().format(record("m", v=value))
    assert logfmtkv.parse(line, strict=True)["v"] == value


@given(st.text())
def test_any_string_reads_back_from_the_json_formats(value: str) -> None:
    for formatter, msg in ((JSONFormatter(), "msg"), (LogstashFormatter(), "message")):
        entry = json.loads(formatter.format(record(value, v=value)))
        assert entry[msg] == value == entry["v"]


@pytest.mark.parametrize(
    "text, written",
    [
        ("", ""),  # logrus writes `key=`
        ("GET", "GET"),
        ("/v2/a-b_c.d/blobs/sha256@x^y+z", "/v2/a-b_c.d/blobs/sha256@x^y+z"),
        ("a b", '"a b"'),
        ("x=1", '"x=1"'),
        ('say "hi"', r'"say \"hi\""'),
        ("C:\\tmp", r'"C:\\tmp"'),
        ("sha256:ab", '"sha256:ab"'),
        ("1.5µs", '"1.5µs"'),  # printable non-ASCII stays as it is
        ("a\nb\tc\rd\a\b\f\v", r'"a\nb\tc\rd\a\b\f\v"'),
        ("\x00\x1f\x7f", r'"\x00\x1f\x7f"'),
        ("\u0085\u200b\u2028", r'"\u0085\u200b\u2028"'),
        ("\U000f0000", r'"\U000f0000"'),
        ("bad\udcff", r'"bad\xff"'),  # an undecodable byte, as Go writes invalid UTF-8
    ],
)
def test_values_are_quoted_as_logrus_quotes_them(text: str, written: str) -> None:
    assert logfmt_value(text) == written


def test_go_quote_of_an_undecodable_byte_reads_back_as_that_byte() -> None:
    raw = b"bad\xff\xfe"
    assert go_quote(raw.decode("utf-8", "surrogateescape")) == r'"bad\xff\xfe"'


def test_values_print_as_go_prints_them() -> None:
    assert [logfmt_value(v) for v in (200, True, False, 0.25)] == ["200", "true", "false", "0.25"]


@pytest.mark.parametrize(
    "seconds, text",
    [(0, "0s"), (850e-9, "850ns"), (1.5e-6, "1.5µs"), (0.012345678, "12.345678ms"),
     (0.001, "1ms"), (2.5, "2.5s"), (63, "1m3s"), (3600, "1h0m0s"), (3723.5, "1h2m3.5s")],
)  # fmt: skip
def test_durations_read_as_gos(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def test_the_text_line_is_logrus_order_and_renames_clashes() -> None:
    line = TextFormatter({"instance.id": "i-1"}).format(
        record("response completed", b="2", a="1", time="mine", level="x"))
    assert line.startswith('time="') and ' level=info msg="response completed" a=1 b=2 ' in line
    parsed = logfmtkv.parse(line, strict=True)
    assert (parsed["fields.time"], parsed["fields.level"]) == ("mine", "x")
    assert parsed["instance.id"] == "i-1"


def test_levels_are_logruss_names_and_time_is_rfc3339nano() -> None:
    entry = json.loads(JSONFormatter().format(record("w", logging.WARNING)))
    assert entry["level"] == "warning"
    assert json.loads(JSONFormatter().format(record("c", logging.CRITICAL)))["level"] == "fatal"
    rec = record("t")
    rec.created = 1767225600.25  # 2026-01-01T00:00:00.25Z
    assert json.loads(JSONFormatter().format(rec))["time"] == "2026-01-01T00:00:00.25Z"
    rec.created = 1767225600.0
    assert json.loads(JSONFormatter().format(rec))["time"] == "2026-01-01T00:00:00Z"


def test_the_logstash_shape() -> None:
    entry = json.loads(LogstashFormatter({"service": "registry"}).format(
        record("hello", level="field-level", time="kept")))
    assert entry["@version"] == "1" and entry["message"] == "hello" and entry["level"] == "info"
    assert entry["fields.level"] == "field-level"
    assert entry["time"] == "kept" and entry["service"] == "registry" and "@timestamp" in entry


def test_none_is_left_out_and_instance_fields_are_on_every_line() -> None:
    static = instance_fields({"service": "registry"})
    entry = json.loads(JSONFormatter(static).format(record("m", gone=None)))
    assert "gone" not in entry
    assert entry["instance.id"] == static["instance.id"] and entry["service"] == "registry"
    assert entry["version"] and entry["pid"]
    assert instance_fields()["instance.id"] != static["instance.id"]


def test_accesslog_disabled_silences_the_access_logger() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        setup_logging("info", "json", None, accesslog=False)
        assert not logging.getLogger("fastreg.access").isEnabledFor(logging.ERROR)
        assert logging.getLogger("fastreg.api").isEnabledFor(logging.INFO)
        setup_logging("info", "json", None)
        assert logging.getLogger("fastreg.access").isEnabledFor(logging.INFO)
    finally:
        root.handlers[:], root.level = handlers, level
        logging.getLogger("fastreg.access").disabled = False
