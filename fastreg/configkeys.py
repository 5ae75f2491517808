"""Moved: the key table to ``fastreg.config.keys``, the converters and ``ConfigError`` to
``fastreg.config.convert``. This name stays only until code written against it is merged."""

from fastreg.config.convert import (
    ConfigError,
    as_bool,
    as_duration,
    as_headers,
    as_int,
    as_mapping,
    as_str,
    as_strlist,
    describe,
    parse_duration,
    parse_size,
)
from fastreg.config.keys import ROOT, STORAGE_SECTIONS, Key, Kind, apply_env, check

__all__ = [
    "ROOT",
    "STORAGE_SECTIONS",
    "ConfigError",
    "Key",
    "Kind",
    "apply_env",
    "as_bool",
    "as_duration",
    "as_headers",
    "as_int",
    "as_mapping",
    "as_str",
    "as_strlist",
    "check",
    "describe",
    "parse_duration",
    "parse_size",
]
