"""The one set of value converters every configuration parser uses, and ``ConfigError``.

Values arrive as PyYAML gives them (the file, or a ``REGISTRY_*`` variable parsed as a YAML
document), so a key may hold a string where a number is meant (``chunksize: "10485760"``). Each
converter takes the value and the dotted key, and returns the typed value or raises
``ConfigError("<key>: expected ..., got ...")``. The rules are Distribution's (Go), one per type:

- **string**: any scalar, as yaml.v2 decodes a scalar into a Go ``string`` (``5`` -> ``"5"``).
- **boolean**: a YAML boolean, or a string Go's ``strconv.ParseBool`` takes (``true``/``false``
  in any case, ``t``/``f``, ``1``/``0``), which is how Distribution's drivers read their flags.
- **integer**: a YAML integer, or a string as Go's ``strconv.ParseInt(s, 0, 64)`` reads it (the
  drivers' ``GetLimitFromParameter`` and friends): optional sign, ``0x``/``0o``/``0b`` prefixes,
  a leading ``0`` meaning octal, ``_`` between digits. Floats and booleans are refused.
- **duration**: Go's ``time.ParseDuration`` (``"1m30s"``); a bare number is nanoseconds, as a
  ``time.Duration`` field decodes it, except for fastreg's own driver timeouts, which have
  always counted a bare number in seconds (``numbers=SECONDS``).
- **size**: an integer (rule above) that is not negative.
- **list of strings**: a YAML list of strings, or one scalar as a list of one.
- **header map**: name -> list of strings (``http.headers``, notification and health headers).

``Section`` reads one mapping with these converters, naming ``<section>.<key>`` on error; an
absent key, ``null`` and ``""`` (an empty environment variable) all give the default.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import yaml

#: the loader of every YAML document fastreg reads (config file, its environment values, the
#: token server's ACL): libyaml's where PyYAML has it (same safe tag set), ~8x faster
#: (a config: 1.8 -> 0.2 ms here)
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ConfigError(Exception):
    """The configuration cannot be used; the message starts with the offending dotted key."""


NANOSECONDS = 1e-9
SECONDS = 1.0

_DURATION_UNITS = MappingProxyType({"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600})
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|ms|s|m|h)")
_GO_INT = re.compile(r"[+-]?(0[xX](_?[0-9a-fA-F])+|0[oO](_?[0-7])+|0[bB](_?[01])+|0(_?[0-7])*"
                     r"|[1-9](_?[0-9])*)")
_TRUE = frozenset({"1", "t", "true"})
_FALSE = frozenset({"0", "f", "false"})


def describe(value: Any) -> str:
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, (list, tuple)):
        return "list"
    return repr(value)


def parse_duration(value: str | float, numbers: float = NANOSECONDS) -> float:
    """A Go duration (``"10s"``, ``"1m30s"``, ``"1.5h"``) in seconds; numbers count ``numbers``."""
    if isinstance(value, bool):
        raise ConfigError(f"invalid duration {value!r}")
    if isinstance(value, (int, float)):
        return value * numbers
    if not isinstance(value, str):
        raise ConfigError(f"invalid duration {describe(value)}")
    text = value.strip().replace("µ", "u").replace("μ", "u")  # Go accepts µs and μs
    sign = -1.0 if text.startswith("-") else 1.0
    body = text[1:] if text[:1] in ("-", "+") else text
    if body == "0":
        return 0.0
    total, pos = 0.0, 0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if match is None:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not body or pos != len(body):
        raise ConfigError(f"invalid duration {value!r}")
    return sign * total


def _go_int(text: str) -> int | None:
    """``strconv.ParseInt(text, 0, 64)``, or None where Go refuses it."""
    text = text.strip()
    if not _GO_INT.fullmatch(text):
        return None
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-").replace("_", "")
    if len(body) > 1 and body[0] == "0" and body[1].isdigit():
        number = int(body[1:], 8)  # Go's leading-zero octal, which Python's int(x, 0) refuses
    else:
        number = int(body, 0)
    number *= sign
    return number if -(2**63) <= number < 2**63 else None


def parse_size(value: str | int) -> int:
    """A byte count: a non-negative integer (the integer rule above)."""
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        number = _go_int(value)
    if number is None or number < 0:
        raise ConfigError(f"invalid size {value!r}")
    return number


def as_mapping(value: Any, path: str) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: expected a mapping, got {describe(value)}")
    return value


def as_str(value: Any, path: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, datetime.date)):
        return str(value)  # yaml.v2 decodes any scalar into a Go string
    raise ConfigError(f"{path}: expected a string, got {describe(value)}")


def as_bool(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigError(f"{path}: expected a boolean, got {describe(value)}")


def as_int(value: Any, path: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    number = _go_int(value) if isinstance(value, str) else None
    if number is None:
        raise ConfigError(f"{path}: expected an integer, got {describe(value)}")
    return number


def as_size(value: Any, path: str) -> int:
    try:
        return parse_size(value)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def as_duration(value: Any, path: str, numbers: float = NANOSECONDS) -> float:
    try:
        return parse_duration(value, numbers)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def as_strlist(value: Any, path: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(as_str(v, f"{path}[{i}]") for i, v in enumerate(value))
    return (as_str(value, path),)


def as_headers(value: Any, path: str) -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType(
        {as_str(k, path): as_strlist(v, f"{path}.{k}") for k, v in as_mapping(value, path).items()}
    )


def header_pairs(headers: Mapping[str, tuple[str, ...]]) -> tuple[tuple[str, str], ...]:
    """A header map flattened to (name, value) pairs, one per value."""
    return tuple((name, v) for name, values in headers.items() for v in values)


def host_port(addr: str, key: str) -> tuple[str, int]:
    """A listening address: ``":5000"`` -> ``("0.0.0.0", 5000)``, ``"[::1]:5"`` -> ``("::1", 5)``.

    Go's ``host:port`` as net.Listen takes it; ConfigError naming ``key`` for anything else.
    """
    match = re.fullmatch(r"\[([^\]]*)\]:(\d+)|([^:\[\]]*):(\d+)", addr)
    if match is None:
        raise ConfigError(f"{key}: expected host:port, got {addr!r}")
    host = match.group(1) if match.group(1) is not None else match.group(3)
    port = int(match.group(2) or match.group(4))
    if port > 65535:
        raise ConfigError(f"{key}: port out of range in {addr!r}")
    return (host or "0.0.0.0", port)


class Section:
    """One mapping of the configuration, read with the converters above.

    ``path`` is the dotted name of the mapping (``storage.s3``); every error names
    ``<path>.<key>``. Absent, ``null`` and ``""`` values give the default.
    """

    def __init__(self, raw: Any, path: str) -> None:
        self.raw: Mapping[Any, Any] = {} if raw is None else as_mapping(raw, path)
        self.path = path

    def key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def value(self, key: str) -> Any:
        value = self.raw.get(key)
        return None if value == "" else value

    def has(self, key: str) -> bool:
        return self.value(key) is not None

    def text(self, key: str, default: str = "") -> str:
        value = self.value(key)
        return default if value is None else as_str(value, self.key(key))

    def optional(self, key: str) -> str | None:
        value = self.value(key)
        return None if value is None else as_str(value, self.key(key))

    def required(self, key: str) -> str:
        value = self.optional(key)
        if not value:
            raise ConfigError(f"{self.key(key)}: required")
        return value

    def choice(self, key: str, default: str, allowed: Sequence[str]) -> str:
        chosen = self.text(key, default).lower() or default
        if chosen not in allowed:
            raise ConfigError(f"{self.key(key)}: expected one of {', '.join(allowed)}, got {chosen!r}")
        return chosen

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.value(key)
        return default if value is None else as_bool(value, self.key(key))

    def maybe_flag(self, key: str) -> bool | None:
        value = self.value(key)
        return None if value is None else as_bool(value, self.key(key))

    def integer(
        self, key: str, default: int, low: int | None = None, high: int | None = None
    ) -> int:
        value = self.value(key)
        number = default if value is None else as_int(value, self.key(key))
        if (low is not None and number < low) or (high is not None and number > high):
            if high is None:
                raise ConfigError(f"{self.key(key)}: {number} is less than {low}")
            raise ConfigError(f"{self.key(key)}: {number} is not between {low} and {high}")
        return number

    def size(self, key: str, default: int) -> int:
        value = self.value(key)
        return default if value is None else as_size(value, self.key(key))

    def duration(self, key: str, default: float, numbers: float = NANOSECONDS) -> float:
        value = self.value(key)
        return default if value is None else as_duration(value, self.key(key), numbers)

    def positive_duration(self, key: str, default: float, numbers: float = NANOSECONDS) -> float:
        seconds = self.duration(key, default, numbers)
        if seconds <= 0:
            raise ConfigError(
                f"{self.key(key)}: expected a positive duration, got {self.raw.get(key)!r}"
            )
        return seconds

    def strlist(self, key: str) -> tuple[str, ...]:
        return as_strlist(self.value(key), self.key(key))

    def headers(self, key: str) -> Mapping[str, tuple[str, ...]]:
        value = self.value(key)
        return MappingProxyType({}) if value is None else as_headers(value, self.key(key))

    def section(self, key: str) -> Section:
        return Section(self.value(key), self.key(key))

    def sections(self, key: str) -> list[Section]:
        """A list of mappings (``notifications.endpoints``, ``health.file``)."""
        value = self.value(key)
        if value is None:
            return []
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{self.key(key)}: expected a list, got {describe(value)}")
        return [Section(v, f"{self.key(key)}[{i}]") for i, v in enumerate(value)]
