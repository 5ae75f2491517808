"""Loading Distribution's ``config.yml`` (plus ``REGISTRY_*`` environment overrides) into typed,
frozen dataclasses.

This module owns the configuration format: YAML parsing, the environment override rules, type
checks naming the dotted key, the warnings about unknown and not-yet-supported keys, and the
defaults. The table of keys Distribution 2.8 knows, and the mechanics that walk it (environment
resolution, type checks, ``ConfigError``, Go durations), live in ``fastreg.configkeys``.

Environment overrides follow Distribution: variables are applied in lexical order of their
names (so ``REGISTRY_STORAGE`` comes before ``REGISTRY_STORAGE_S3_BUCKET``); the name after
``REGISTRY_`` is split on ``_`` and each segment is matched case-insensitively against the known
fields; under free-form maps (driver parameters, ``auth``, ``http.headers``, ``log.fields``) a
segment matches an existing key case-insensitively or else creates the lower-cased key, so
free-form keys containing ``_`` cannot be reached from the environment. The value is parsed as a
YAML document (``true``, ``5``, ``10s``, or a whole ``{...}`` map); numeric segments index
lists. ``REGISTRY_STORAGE=<driver>`` replaces the driver section only (``delete``, ``cache``,
``maintenance``, ``redirect`` are kept); a YAML map value replaces the whole ``storage``.

Raw sections (``auth``, ``notifications``, ``redis``, ...) are handed over as given in the YAML,
read-only: nested mappings are ``Mapping`` (``MappingProxyType``) and sequences are tuples.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import yaml

from fastreg.configkeys import (
    ROOT,
    STORAGE_SECTIONS,
    ConfigError,
    apply_env,
    as_bool,
    as_duration,
    as_headers,
    as_int,
    as_mapping,
    as_str,
    check,
    describe,
    parse_duration,
    parse_size,
)

__all__ = [
    "Config",
    "ConfigError",
    "HTTPConfig",
    "LogConfig",
    "StorageConfig",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_size",
]

DEFAULT_ROOTDIRECTORY = "/var/lib/registry"
_LOG_LEVELS = ("error", "warn", "info", "debug")
_LOG_FORMATTERS = ("text", "json", "logstash")
_NETS = ("tcp", "unix")
_BLOBDESCRIPTOR_CACHES = ("inmemory", "redis")


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"
    formatter: str = "text"
    fields: Mapping[str, str] = field(default_factory=_empty)
    accesslog_disabled: bool = False


@dataclass(frozen=True, slots=True)
class StorageConfig:
    driver: str = "filesystem"
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({"rootdirectory": DEFAULT_ROOTDIRECTORY})
    )
    delete_enabled: bool = False
    readonly: bool = False
    redirect_disable: bool = False
    blobdescriptor_cache: str | None = None
    blobdescriptor_size: int = 10000
    # fastreg only: cache tag lists (`storage.cache.tags`, inmemory | redis) for `tagsttl`
    tags_cache: str | None = None
    tags_ttl: float = 2.0
    maintenance: Mapping[str, Any] = field(default_factory=_empty)


@dataclass(frozen=True, slots=True)
class HTTPConfig:
    addr: str = ":5000"
    net: str = "tcp"
    prefix: str = ""
    host: str = ""
    secret: str = ""
    relativeurls: bool = False
    headers: Mapping[str, tuple[str, ...]] = field(default_factory=_empty)
    draintimeout_seconds: float = 0
    sendtimeout_seconds: float = 60.0  # fastreg only
    readtimeout_seconds: float = 60.0  # fastreg only
    tls: Mapping[str, Any] = field(default_factory=_empty)
    debug: Mapping[str, Any] = field(default_factory=_empty)

    def host_port(self) -> tuple[str, int]:
        """Bind address: ``":5000"`` -> ``("0.0.0.0", 5000)``, ``"[::1]:5"`` -> ``("::1", 5)``.

        Raises ConfigError for a ``unix`` address or anything but ``host:port`` / ``[v6]:port``.
        """
        if self.net != "tcp":
            raise ConfigError(f"http.addr: {self.addr!r} is a {self.net} address, not tcp")
        match = re.fullmatch(r"\[([^\]]*)\]:(\d+)|([^:\[\]]*):(\d+)", self.addr)
        if match is None:
            raise ConfigError(f"http.addr: expected host:port, got {self.addr!r}")
        host = match.group(1) if match.group(1) is not None else match.group(3)
        port = int(match.group(2) or match.group(4))
        if port > 65535:
            raise ConfigError(f"http.addr: port out of range in {self.addr!r}")
        return (host or "0.0.0.0", port)


@dataclass(frozen=True, slots=True)
class Config:
    version: str = "0.1"
    log: LogConfig = field(default_factory=LogConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    http: HTTPConfig = field(default_factory=HTTPConfig)
    schema1_enabled: bool = False
    auth: Mapping[str, Any] = field(default_factory=_empty)
    notifications: Mapping[str, Any] = field(default_factory=_empty)
    redis: Mapping[str, Any] = field(default_factory=_empty)
    health: Mapping[str, Any] = field(default_factory=_empty)
    proxy: Mapping[str, Any] = field(default_factory=_empty)
    validation: Mapping[str, Any] = field(default_factory=_empty)
    policy: Mapping[str, Any] = field(default_factory=_empty)
    warnings: tuple[str, ...] = ()


# --- public entry points -------------------------------------------------------------------


def load_config(
    path: str | os.PathLike[str] | None, environ: Mapping[str, str] | None = None
) -> Config:
    """Read ``path`` (``None``: defaults only) and apply ``environ`` (default ``os.environ``)."""
    if path is None:
        return _build({"version": "0.1"}, os.environ if environ is None else environ, True)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {os.fspath(path)!r}: {exc}") from exc
    return parse_config(text, environ)


def parse_config(text: str, environ: Mapping[str, str] | None = None) -> Config:
    """Parse the YAML ``text`` of a config file and apply ``environ`` (default ``os.environ``)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}") from exc
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(f"configuration: expected a mapping, got {describe(doc)}")
    if doc.get("version") is None:
        raise ConfigError("version: missing (Distribution requires 'version: 0.1')")
    return _build(doc, os.environ if environ is None else environ, False)


# --- the pipeline: document -> env overrides -> defaults -> validation -> dataclasses ------------


def _build(doc: dict[str, Any], environ: Mapping[str, str], defaults_only: bool) -> Config:
    warnings: list[str] = []
    _normalise(doc)
    apply_env(doc, environ, warnings)
    _normalise(doc)
    if defaults_only and not _drivers(doc["storage"]):
        doc["storage"]["filesystem"] = {}
    check(ROOT, doc, "", warnings)
    if len(doc["auth"]) > 1:
        raise ConfigError(
            f"auth: exactly one auth type allowed, got {', '.join(map(str, doc['auth']))}"
        )
    version = as_str(doc.get("version"), "version")
    if version != "0.1":
        raise ConfigError(f"version: unsupported version {version!r} (expected '0.1')")
    return Config(
        version=version,
        log=_log(doc, warnings),
        storage=_storage(doc),
        http=_http(_section(doc, "http")),
        schema1_enabled=_bool(
            _get(doc, "compatibility", "schema1", "enabled"), False, "compatibility.schema1.enabled"
        ),
        auth=_freeze_map(doc.get("auth")),
        notifications=_freeze_map(doc.get("notifications")),
        redis=_freeze_map(doc.get("redis")),
        health=_freeze_map(doc.get("health")),
        proxy=_freeze_map(doc.get("proxy")),
        validation=_freeze_map(doc.get("validation")),
        policy=_freeze_map(doc.get("policy")),
        warnings=tuple(warnings),
    )


def _normalise(doc: dict[str, Any]) -> None:
    """Distribution's one-word forms: ``storage: inmemory`` and ``auth: silly``."""
    for name in ("storage", "auth"):
        value = doc.get(name)
        if isinstance(value, str):
            doc[name] = {value: {}}
        elif value is None:
            doc[name] = {}
    if not isinstance(doc["storage"], dict):
        raise ConfigError(f"storage: expected a mapping, got {describe(doc['storage'])}")


def _drivers(storage: Mapping[Any, Any]) -> list[str]:
    return sorted(str(k) for k in storage if k not in STORAGE_SECTIONS)


# --- building the dataclasses (the document is already validated) -------------------------------


def _get(doc: Mapping[str, Any], *keys: str) -> Any:
    value: Any = doc
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _section(doc: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    value = _get(doc, *keys)
    return value if isinstance(value, dict) else {}


def _bool(value: Any, default: bool, path: str) -> bool:
    return default if value is None else as_bool(value, path)


def _str(value: Any, default: str, path: str) -> str:
    return default if value is None else as_str(value, path)


def _choice(value: Any, default: str, path: str, allowed: tuple[str, ...]) -> str:
    chosen = _str(value, default, path).lower() or default
    if chosen not in allowed:
        raise ConfigError(f"{path}: expected one of {', '.join(allowed)}, got {chosen!r}")
    return chosen


def _log(doc: Mapping[str, Any], warnings: list[str]) -> LogConfig:
    log = _section(doc, "log")
    level = log.get("level")
    if doc.get("loglevel") is not None:
        warnings.append("configuration key 'loglevel' is deprecated; use 'log.level'")
        level = doc["loglevel"] if level is None else level
    fields = _section(log, "fields")
    return LogConfig(
        level=_choice(level, "info", "log.level", _LOG_LEVELS),
        formatter=_choice(log.get("formatter"), "text", "log.formatter", _LOG_FORMATTERS),
        fields=MappingProxyType({str(k): _field_str(v) for k, v in fields.items()}),
        accesslog_disabled=_bool(
            _get(log, "accesslog", "disabled"), False, "log.accesslog.disabled"
        ),
    )


def _field_str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return repr(value)
    return as_str(value, "log.fields")


def _storage(doc: Mapping[str, Any]) -> StorageConfig:
    storage = doc["storage"]
    drivers = _drivers(storage)
    if not drivers:
        raise ConfigError("storage: no driver configured")
    if len(drivers) > 1:
        raise ConfigError(f"storage: exactly one driver allowed, got {', '.join(drivers)}")
    driver = drivers[0]
    parameters = dict(as_mapping(storage[driver] or {}, f"storage.{driver}"))
    if driver == "filesystem" and parameters.get("rootdirectory") is None:
        parameters["rootdirectory"] = DEFAULT_ROOTDIRECTORY
    cache = _section(storage, "cache")
    return StorageConfig(
        driver=driver,
        parameters=_freeze_map(parameters),
        delete_enabled=_bool(_get(storage, "delete", "enabled"), False, "storage.delete.enabled"),
        readonly=_bool(
            _get(storage, "maintenance", "readonly", "enabled"),
            False,
            "storage.maintenance.readonly.enabled",
        ),
        redirect_disable=_bool(
            _get(storage, "redirect", "disable"), False, "storage.redirect.disable"
        ),
        blobdescriptor_cache=_blobdescriptor(cache, doc),
        blobdescriptor_size=_blobdescriptor_size(cache.get("blobdescriptorsize")),
        tags_cache=_tags_cache(cache, doc),
        tags_ttl=parse_duration(cache["tagsttl"]) if cache.get("tagsttl") is not None else 2.0,
        maintenance=_freeze_map(storage.get("maintenance")),
    )


def _blobdescriptor(cache: Mapping[str, Any], doc: Mapping[str, Any]) -> str | None:
    key = "blobdescriptor" if cache.get("blobdescriptor") is not None else "layerinfo"
    path = f"storage.cache.{key}"
    value = _str(cache.get(key), "", path)
    if not value:
        return None
    if value not in _BLOBDESCRIPTOR_CACHES:
        raise ConfigError(f"{path}: expected one of inmemory, redis, got {value!r}")
    if value == "redis" and not _get(doc, "redis", "addr"):
        raise ConfigError(f"{path}: 'redis' needs redis.addr to be configured")
    return value


def _tags_cache(cache: Mapping[str, Any], doc: Mapping[str, Any]) -> str | None:
    value = _str(cache.get("tags"), "", "storage.cache.tags")
    if not value:
        return None
    if value not in _BLOBDESCRIPTOR_CACHES:
        raise ConfigError(f"storage.cache.tags: expected one of inmemory, redis, got {value!r}")
    if value == "redis" and not _get(doc, "redis", "addr"):
        raise ConfigError("storage.cache.tags: 'redis' needs redis.addr to be configured")
    return value


def _blobdescriptor_size(value: Any) -> int:
    size = 10000 if value is None else as_int(value, "storage.cache.blobdescriptorsize")
    if size <= 0:
        raise ConfigError(f"storage.cache.blobdescriptorsize: expected a positive size, got {size}")
    return size


def _idle_timeout(value: Any, key: str) -> float:
    """`http.sendtimeout` / `http.readtimeout`: a positive duration, 60s when not given."""
    seconds = 60.0 if value is None else as_duration(value, key)
    if seconds <= 0:
        raise ConfigError(f"{key}: expected a positive duration, got {value!r}")
    return seconds


def _http(http: Mapping[str, Any]) -> HTTPConfig:
    config = HTTPConfig(
        addr=_str(http.get("addr"), ":5000", "http.addr") or ":5000",
        net=_choice(http.get("net"), "tcp", "http.net", _NETS),
        prefix=_str(http.get("prefix"), "", "http.prefix"),
        host=_str(http.get("host"), "", "http.host"),
        secret=_str(http.get("secret"), "", "http.secret"),
        relativeurls=_bool(http.get("relativeurls"), False, "http.relativeurls"),
        headers=as_headers(http.get("headers") or {}, "http.headers"),
        draintimeout_seconds=as_duration(http.get("draintimeout") or 0, "http.draintimeout"),
        sendtimeout_seconds=_idle_timeout(http.get("sendtimeout"), "http.sendtimeout"),
        readtimeout_seconds=_idle_timeout(http.get("readtimeout"), "http.readtimeout"),
        tls=_freeze_map(http.get("tls")),
        debug=_freeze_map(http.get("debug")),
    )
    if config.net == "tcp":
        config.host_port()  # a bad address fails at load time, not at bind time
    return config


def _freeze_map(value: Any) -> Mapping[str, Any]:
    frozen = _freeze(value if isinstance(value, dict) else {})
    assert isinstance(frozen, Mapping)
    return frozen


def _freeze(value: Any) -> Any:
    """Read-only copy: dicts become MappingProxyType, lists become tuples."""
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value
