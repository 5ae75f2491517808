"""Loading Distribution's ``config.yml`` (plus ``REGISTRY_*`` environment overrides) into typed,
frozen dataclasses, once, at start.

This module owns the pipeline: YAML parsing, the environment override rules, the check against
the key table (``fastreg.config.keys``: type errors naming the dotted key, warnings about unknown
and not-yet-supported keys), and the assembly of ``Config`` from each feature's own
``parse(section) -> Settings`` (auth, notifications, redis, health and the debug server, upload
purging, online GC, the storage driver's parameters, `validation`, `middleware`). Every value error is therefore found here,
before anything starts; consumers take the typed settings and never read a raw mapping.

Environment overrides follow Distribution: variables are applied in lexical order of their
names (so ``REGISTRY_STORAGE`` comes before ``REGISTRY_STORAGE_S3_BUCKET``); the name after
``REGISTRY_`` is split on ``_`` and each segment is matched case-insensitively against the known
fields; under free-form maps (driver parameters, ``auth``, ``http.headers``, ``log.fields``) a
segment matches an existing key case-insensitively or else creates the lower-cased key, so
free-form keys containing ``_`` cannot be reached from the environment. The value is parsed as a
YAML document (``true``, ``5``, ``10s``, or a whole ``{...}`` map); numeric segments index
lists. ``REGISTRY_STORAGE=<driver>`` replaces the driver section only (``delete``, ``cache``,
``maintenance``, ``redirect`` are kept); a YAML map value replaces the whole ``storage``.

The storage driver's section is checked against the driver's own key table and parsed by the
driver's params module (``fastreg.storage.factory.parameters_module``); its checked mapping is kept,
read-only, as ``StorageConfig.parameters`` (nested mappings ``MappingProxyType``, lists tuples).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_network
from types import MappingProxyType
from typing import Any

import yaml

from fastreg.auth import settings as auth
from fastreg.auth.settings import AuthSettings
from fastreg.config.convert import (
    SAFE_LOADER,
    ConfigError,
    Section,
    as_mapping,
    as_str,
    describe,
    host_port,
)
from fastreg.config.keys import ROOT, STORAGE_SECTIONS, apply_env, check
from fastreg.notify.config import NotifyConfig, parse_notifications
from fastreg.registry import purge, redirects, validation
from fastreg.registry.cache.redis import RedisSettings
from fastreg.registry.cache.redis import parse as parse_redis
from fastreg.registry.gc import settings as gc
from fastreg.registry.gc.settings import OnlineGCSettings
from fastreg.registry.proxy import settings as proxy
from fastreg.registry.proxy.settings import ProxySettings
from fastreg.registry.purge import PurgeSettings
from fastreg.registry.redirects import Redirector
from fastreg.registry.validation import ManifestURLs
from fastreg.server.health_settings import DebugSettings, HealthSettings, parse_debug, parse_health
from fastreg.storage.filesystem import FilesystemParams

DEFAULT_ROOTDIRECTORY = "/var/lib/registry"
_LOG_LEVELS = ("error", "warn", "info", "debug")
_LOG_FORMATTERS = ("text", "json", "logstash")
_NETS = ("tcp", "unix")
_CACHES = ("inmemory", "redis")


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
    #: the driver's section as checked against its key table (read-only)
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({"rootdirectory": DEFAULT_ROOTDIRECTORY})
    )
    #: the driver's typed settings (its params module's ``parse``)
    params: Any = field(default_factory=FilesystemParams)
    delete_enabled: bool = False
    readonly: bool = False
    redirect_disable: bool = False
    blobdescriptor_cache: str | None = None
    blobdescriptor_size: int = 10000
    # fastreg only: cache tag lists (`storage.cache.tags`, inmemory | redis) for `tagsttl`
    tags_cache: str | None = None
    tags_ttl: float = 2.0
    # `maintenance.uploadpurging` and `maintenance.gc`, both off in read-only mode
    purge: PurgeSettings = field(default_factory=PurgeSettings)
    gc: OnlineGCSettings = field(default_factory=OnlineGCSettings)


@dataclass(frozen=True, slots=True)
class TLSSettings:
    certificate: str = ""  # empty: plain HTTP
    key: str = ""
    clientcas: tuple[str, ...] = ()
    minimumtls: str = ""
    ciphersuites: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HTTPConfig:
    """`http:`, checked at load; durations are seconds here, Go durations (`60s`) in the file."""

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
    # fastreg only: networks whose proxies may name the client (X-Forwarded-For, X-Real-IP)
    trustedproxies: tuple[IPv4Network | IPv6Network, ...] = ()
    tls: TLSSettings = field(default_factory=TLSSettings)
    debug: DebugSettings = field(default_factory=DebugSettings)

    def host_port(self) -> tuple[str, int]:
        """Bind address: ``":5000"`` -> ``("0.0.0.0", 5000)``, ``"[::1]:5"`` -> ``("::1", 5)``.

        Raises ConfigError for a ``unix`` address or anything but ``host:port`` / ``[v6]:port``.
        """
        if self.net != "tcp":
            raise ConfigError(f"http.addr: {self.addr!r} is a {self.net} address, not tcp")
        return host_port(self.addr, "http.addr")


def _notify_default() -> NotifyConfig:
    return parse_notifications(None, "filesystem", {"rootdirectory": DEFAULT_ROOTDIRECTORY})


@dataclass(frozen=True, slots=True)
class Config:
    version: str = "0.1"
    log: LogConfig = field(default_factory=LogConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    http: HTTPConfig = field(default_factory=HTTPConfig)
    schema1_enabled: bool = False
    auth: AuthSettings | None = None
    notifications: NotifyConfig = field(default_factory=_notify_default)
    redis: RedisSettings = field(default_factory=RedisSettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    proxy: ProxySettings = field(default_factory=ProxySettings)
    validation: ManifestURLs = field(default_factory=ManifestURLs)
    redirector: Redirector | None = None  # `middleware.storage`
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
        doc = yaml.load(text, Loader=SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}") from exc
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(f"configuration: expected a mapping, got {describe(doc)}")
    if doc.get("version") is None:
        raise ConfigError("version: missing (Distribution requires 'version: 0.1')")
    return _build(doc, os.environ if environ is None else environ, False)


# --- the pipeline: document -> env overrides -> key table -> each feature's parse -------------


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
    root = Section(doc, "")
    redis = parse_redis(doc.get("redis"))
    storage = _storage(root.section("storage"), redis, warnings)
    mirror = proxy.parse(doc.get("proxy"))
    return Config(
        version=version,
        log=_log(root, warnings),
        storage=storage,
        http=_http(root.section("http")),
        schema1_enabled=root.section("compatibility").section("schema1").flag("enabled"),
        auth=auth.parse(doc.get("auth")),
        notifications=parse_notifications(
            doc.get("notifications"), storage.driver, storage.parameters
        ),
        redis=redis,
        health=parse_health(doc.get("health")),
        proxy=mirror,
        validation=validation.parse(doc.get("validation")),
        redirector=redirects.parse(doc.get("middleware")),
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


# --- the sections this module owns: log, storage (its common part), http ------------------------


def _log(root: Section, warnings: list[str]) -> LogConfig:
    log = root.section("log")
    level = log.text("level")
    if root.has("loglevel"):
        warnings.append("configuration key 'loglevel' is deprecated; use 'log.level'")
        level = level or root.text("loglevel")
    level = level.lower() or "info"
    if level not in _LOG_LEVELS:
        raise ConfigError(f"log.level: expected one of {', '.join(_LOG_LEVELS)}, got {level!r}")
    fields = log.section("fields")
    return LogConfig(
        level=level,
        formatter=log.choice("formatter", "text", _LOG_FORMATTERS),
        fields=MappingProxyType({str(k): _field_str(v) for k, v in fields.raw.items()}),
        accesslog_disabled=log.section("accesslog").flag("disabled"),
    )


def _field_str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return repr(value)
    return as_str(value, "log.fields")


def _storage(storage: Section, redis: RedisSettings, warnings: list[str]) -> StorageConfig:
    drivers = _drivers(storage.raw)
    if not drivers:
        raise ConfigError("storage: no driver configured")
    if len(drivers) > 1:
        raise ConfigError(f"storage: exactly one driver allowed, got {', '.join(drivers)}")
    driver = drivers[0]
    parameters = dict(as_mapping(storage.value(driver) or {}, f"storage.{driver}"))
    if driver == "filesystem" and parameters.get("rootdirectory") is None:
        parameters["rootdirectory"] = DEFAULT_ROOTDIRECTORY
    params = _driver_params(driver, parameters, warnings)
    cache = storage.section("cache")
    maintenance = storage.section("maintenance")
    blobdescriptor = "blobdescriptor" if cache.has("blobdescriptor") else "layerinfo"
    readonly = maintenance.section("readonly").flag("enabled")
    return StorageConfig(
        driver=driver,
        parameters=_freeze_map(parameters),
        params=params,
        delete_enabled=storage.section("delete").flag("enabled"),
        readonly=readonly,
        redirect_disable=storage.section("redirect").flag("disable"),
        blobdescriptor_cache=_cache_kind(cache, blobdescriptor, redis),
        blobdescriptor_size=cache.integer("blobdescriptorsize", 10000, 1),
        tags_cache=_cache_kind(cache, "tags", redis),
        tags_ttl=cache.duration("tagsttl", 2.0),
        purge=purge.parse(maintenance.value("uploadpurging"), readonly),
        gc=gc.parse(maintenance.value("gc"), readonly),
    )


def _driver_params(driver: str, parameters: dict[str, Any], warnings: list[str]) -> Any:
    """Check ``storage.<driver>`` against the driver's key table, then parse it (at load, so a
    misspelt, wrongly typed or missing key is found before anything starts)."""
    from fastreg.storage.factory import SUPPORTED, parameters_module  # drivers import config

    module = parameters_module(driver)
    if module is None:
        raise ConfigError(
            f"storage.{driver}: storage driver not supported by this fastreg version "
            f"(supported: {SUPPORTED})"
        )
    check(module.KEYS, parameters, f"storage.{driver}", warnings)
    return module.parse(parameters)


def _cache_kind(cache: Section, key: str, redis: RedisSettings) -> str | None:
    value = cache.text(key)
    if not value:
        return None
    if value not in _CACHES:
        raise ConfigError(f"{cache.key(key)}: expected one of inmemory, redis, got {value!r}")
    if value == "redis" and not redis.configured:
        raise ConfigError(f"{cache.key(key)}: 'redis' needs redis.addr to be configured")
    return value


def _http(http: Section) -> HTTPConfig:
    tls = http.section("tls")
    config = HTTPConfig(
        addr=http.text("addr", ":5000"),
        net=http.choice("net", "tcp", _NETS),
        prefix=http.text("prefix"),
        host=http.text("host"),
        secret=http.text("secret"),
        relativeurls=http.flag("relativeurls"),
        headers=http.headers("headers"),
        draintimeout_seconds=http.duration("draintimeout", 0.0),
        sendtimeout_seconds=http.positive_duration("sendtimeout", 60.0),
        readtimeout_seconds=http.positive_duration("readtimeout", 60.0),
        trustedproxies=_networks(http, "trustedproxies"),
        tls=TLSSettings(
            certificate=tls.text("certificate"),
            key=tls.text("key"),
            clientcas=tls.strlist("clientcas"),
            minimumtls=tls.text("minimumtls"),
            ciphersuites=tls.strlist("ciphersuites"),
        ),
        debug=parse_debug(http.value("debug")),
    )
    if config.net == "tcp":
        config.host_port()  # a bad address fails at load time, not at bind time
    return config


def _networks(section: Section, key: str) -> tuple[IPv4Network | IPv6Network, ...]:
    """A list of CIDRs (`10.0.0.0/8`, `::1/128`; a bare address is one host)."""
    networks = []
    for i, text in enumerate(section.strlist(key)):
        try:
            networks.append(ip_network(text.strip(), strict=False))
        except ValueError:
            raise ConfigError(
                f"{section.key(key)}[{i}]: expected an IP network such as 10.0.0.0/8, got {text!r}"
            ) from None
    return tuple(networks)


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
