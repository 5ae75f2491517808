"""The table of configuration keys Distribution 2.8 knows, and the two walks over it.

``ROOT`` is a tree of ``Key`` nodes built from Distribution 2.8's ``configuration.go``;
``supported=False`` marks keys Distribution accepts but fastreg ignores (loading warns instead of
failing). ``apply_env`` resolves ``REGISTRY_*`` variable names against the tree (case-insensitively,
as Distribution's parser does) and ``check`` validates a document against it (type errors naming
the dotted key, warnings for unknown and not-yet-supported keys). The leaf converters, Go duration
parsing and ``ConfigError`` live here too so both walks share them; ``fastreg.config`` re-exports
the public ones and builds the dataclasses.
"""

from __future__ import annotations

import datetime
import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import yaml


class Kind(enum.Enum):
    """What a key holds. Leaves are type-checked; containers are walked."""

    STR = "string"
    BOOL = "boolean"
    INT = "integer"
    DURATION = "duration"
    STRLIST = "list of strings"
    HEADERS = "header map"
    ANY = "anything"  # free-form value (driver and auth parameters, ...)
    STRUCT = "struct"  # fixed field names; unknown names warn (or go to ``extra``)
    MAP = "map"  # free-form keys, every value described by ``item``
    LIST = "list"  # every element described by ``item``


@dataclass(frozen=True, slots=True)
class Key:
    """One node of the key tree."""

    kind: Kind
    fields: Mapping[str, Key] = field(default_factory=lambda: MappingProxyType({}))
    item: Key | None = None  # MAP values, LIST elements
    extra: Key | None = None  # STRUCT only: names not in ``fields`` are free-form, of this kind
    supported: bool = True  # False: Distribution knows it, fastreg warns "not supported yet"
    env_name: str = ""  # Distribution's Go field name when it differs from the YAML key


def _struct(**fields: Key) -> Key:
    return Key(Kind.STRUCT, fields=MappingProxyType(fields))


def _map(item: Key) -> Key:
    return Key(Kind.MAP, item=item)


def _list(item: Key) -> Key:
    return Key(Kind.LIST, item=item)


def _todo(key: Key) -> Key:
    """Known to Distribution 2.8, not implemented by fastreg yet."""
    return replace(key, supported=False)


def _env(key: Key, go_name: str) -> Key:
    """The environment variable segment is the Go field name, not the YAML key."""
    return replace(key, env_name=go_name.upper())


STR = Key(Kind.STR)
BOOL = Key(Kind.BOOL)
INT = Key(Kind.INT)
DURATION = Key(Kind.DURATION)
STRLIST = Key(Kind.STRLIST)
HEADERS = Key(Kind.HEADERS)
ANY = Key(Kind.ANY)
PARAMETERS = _map(ANY)  # a driver's or auth provider's parameters

#: Section names under ``storage`` that are not storage drivers.
STORAGE_SECTIONS = frozenset({"delete", "maintenance", "cache", "redirect", "tag"})

_LOG = _struct(
    accesslog=_struct(disabled=BOOL),
    level=STR,
    formatter=STR,
    fields=_map(ANY),
    hooks=_todo(_list(ANY)),
    reportcaller=_todo(BOOL),
)

_STORAGE = replace(
    _struct(
        delete=_struct(enabled=BOOL),
        redirect=_struct(disable=BOOL),
        cache=_struct(blobdescriptor=STR, blobdescriptorsize=INT, layerinfo=STR, tags=STR, tagsttl=DURATION),
        maintenance=_struct(
            uploadpurging=_struct(enabled=BOOL, age=DURATION, interval=DURATION, dryrun=BOOL),
            readonly=_struct(enabled=BOOL),
            # fastreg only: online garbage collection (fastreg.registry.gc.settings)
            gc=_struct(enabled=BOOL, interval=DURATION, delay=DURATION, dryrun=BOOL),
        ),
        tag=_todo(_struct(concurrencylimit=INT)),  # Distribution 3
    ),
    extra=PARAMETERS,  # every other name under storage is a storage driver
)

_TLS = _struct(
    certificate=STR,
    key=STR,
    clientcas=STRLIST,
    minimumtls=STR,
    ciphersuites=STRLIST,
    letsencrypt=_todo(_struct(cachefile=STR, email=STR, hosts=STRLIST, directoryurl=STR)),
)

_HTTP = _struct(
    addr=STR,
    net=STR,
    host=STR,
    prefix=STR,
    secret=STR,
    relativeurls=BOOL,
    draintimeout=DURATION,
    sendtimeout=DURATION,  # fastreg only: a download accepting no byte this long is closed
    readtimeout=DURATION,  # fastreg only: a request body that sends no byte this long is cut
    tls=_TLS,
    headers=HEADERS,
    debug=_struct(addr=STR, prometheus=_struct(enabled=BOOL, path=STR)),
    http2=_todo(_struct(disabled=BOOL)),
)

_ENDPOINT = _struct(
    name=STR,
    disabled=BOOL,
    url=STR,
    headers=HEADERS,
    timeout=DURATION,
    threshold=INT,
    backoff=DURATION,
    ignoredmediatypes=STRLIST,
    ignore=_struct(mediatypes=STRLIST, actions=STRLIST),
)

_NOTIFICATIONS = _struct(
    events=_env(_struct(includereferences=BOOL), "EventConfig"),
    endpoints=_list(_ENDPOINT),
    spool=_struct(directory=STR, maxbytes=INT),  # fastreg only: the durable event queue
)

_REDIS = _struct(
    addr=STR,
    password=STR,
    db=INT,
    dialtimeout=DURATION,
    readtimeout=DURATION,
    writetimeout=DURATION,
    pool=_struct(maxidle=INT, maxactive=INT, idletimeout=DURATION),
    tls=_struct(enabled=BOOL),
)

_CHECK = MappingProxyType({"interval": DURATION, "threshold": INT})
_HTTP_CHECK = _struct(uri=STR, headers=HEADERS, statuscode=INT, timeout=DURATION, **_CHECK)
_HEALTH = _struct(
    storagedriver=_struct(enabled=BOOL, **_CHECK),
    file=_env(_list(_struct(file=STR, **_CHECK)), "FileCheckers"),
    http=_env(_list(_HTTP_CHECK), "HTTPCheckers"),
    tcp=_env(_list(_struct(addr=STR, timeout=DURATION, **_CHECK)), "TCPCheckers"),
)

_REPORTING = _struct(
    bugsnag=_struct(apikey=STR, releasestage=STR, endpoint=STR),
    newrelic=_struct(licensekey=STR, name=STR, verbose=BOOL),
)

_VALIDATION = _struct(
    enabled=BOOL,
    disabled=BOOL,
    manifests=_struct(urls=_struct(allow=STRLIST, deny=STRLIST)),
)

#: The whole of Distribution 2.8's ``Configuration`` struct.
ROOT = _struct(
    version=STR,
    log=_LOG,
    loglevel=STR,  # deprecated alias of log.level; fastreg honours it
    storage=_STORAGE,
    auth=_map(PARAMETERS),
    middleware=_todo(_map(ANY)),
    reporting=_todo(_REPORTING),
    http=_HTTP,
    notifications=_NOTIFICATIONS,
    redis=_REDIS,
    health=_HEALTH,
    catalog=_todo(_struct(maxentries=INT)),
    proxy=_todo(_struct(remoteurl=STR, username=STR, password=STR, ttl=DURATION)),
    compatibility=_struct(
        schema1=_struct(enabled=BOOL, signingkeyfile=_todo(_env(STR, "TrustKey")))
    ),
    validation=_todo(_VALIDATION),
    policy=_todo(_struct(repository=_struct(classes=STRLIST))),
)


# --- values: errors, durations, sizes, leaf types -------------------------------------------


class ConfigError(Exception):
    """The configuration cannot be used; the message starts with the offending dotted key."""


_DURATION_UNITS = MappingProxyType({"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600})
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|ms|s|m|h)")


def parse_duration(value: str | float) -> float:
    """A Go duration (``"10s"``, ``"1m30s"``, ``"1.5h"``) in seconds; numbers are nanoseconds."""
    if isinstance(value, bool):
        raise ConfigError(f"invalid duration {value!r}")
    if isinstance(value, (int, float)):
        return value / 1e9
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


def parse_size(value: str | int) -> int:
    """A byte count: a non-negative int, or a string of decimal digits."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise ConfigError(f"invalid size {value!r}")


# --- environment overrides ---------------------------------------------------------------------


class _Unrecognized(Exception):
    pass


def apply_env(doc: dict[str, Any], environ: Mapping[str, str], warnings: list[str]) -> None:
    """Apply the ``REGISTRY_*`` variables of ``environ`` to ``doc``, in lexical order of names."""
    for name in sorted(environ):
        if not name.startswith("REGISTRY_"):
            continue
        segments = [s.upper() for s in name.split("_")[1:]]
        if segments == ["VERSION"]:
            warnings.append(
                f"ignoring environment variable {name}: the version comes from the file"
            )
            continue
        try:
            value = yaml.safe_load(environ[name])
        except yaml.YAMLError:
            value = environ[name]  # Distribution would fail; a plain string is kinder
        try:
            doc.update(_env_into(ROOT, doc, segments, value, name))
        except _Unrecognized:
            warnings.append(f"ignoring unrecognized environment variable {name}")


def _env_into(node: Key, current: Any, segs: list[str], value: Any, env: str) -> Any:
    """The new value of a slot that held ``current`` once ``segs`` is set to ``value``."""
    if not segs:
        if node.extra is not None and isinstance(value, str):  # REGISTRY_STORAGE=s3
            kept = current if isinstance(current, dict) else {}
            return {**{k: v for k, v in kept.items() if k in STORAGE_SECTIONS}, value: {}}
        return value
    seg, rest = segs[0], segs[1:]
    if node.kind is Kind.LIST or (node.kind is Kind.ANY and isinstance(current, list)):
        return _env_into_list(node.item or node, current, seg, rest, value, env)
    mapping = dict(current) if isinstance(current, dict) else {}
    if node.kind is Kind.STRUCT:
        key, child = _struct_field(node, seg, mapping)
    elif node.kind in (Kind.MAP, Kind.ANY, Kind.HEADERS):
        key, child = _map_key(mapping, seg), node.item or Key(Kind.ANY)
    else:
        raise _Unrecognized
    mapping[key] = _env_into(child, mapping.get(key), rest, value, env)
    return mapping


def _env_into_list(item: Key, current: Any, seg: str, rest: list[str], value: Any, env: str) -> Any:
    items = list(current) if isinstance(current, list) else []
    if not seg.isdigit() or int(seg) > len(items):
        raise ConfigError(f"{env}: no list index {seg!r} (the list has {len(items)} elements)")
    if int(seg) == len(items):
        items.append(None)
    items[int(seg)] = _env_into(item, items[int(seg)], rest, value, env)
    return items


def _struct_field(node: Key, seg: str, mapping: dict[Any, Any]) -> tuple[str, Key]:
    for name, child in node.fields.items():
        if seg and seg in (name.upper(), child.env_name):
            return name, child
    if node.extra is None:
        raise _Unrecognized
    return _map_key(mapping, seg), node.extra


def _map_key(mapping: Mapping[Any, Any], seg: str) -> Any:
    """An existing key spelled ``seg`` in any case, else ``seg`` lower-cased (Distribution)."""
    return next((k for k in mapping if str(k).upper() == seg), seg.lower())


# --- validation against the key table ------------------------------------------------------------


def check(node: Key, value: Any, path: str, warnings: list[str]) -> None:
    """Raise ConfigError for wrong types; warn about unknown and not-yet-supported keys."""
    if value is None:
        return
    if not node.supported:
        warnings.append(f"configuration key '{path}' is not supported yet")
        return
    if node.kind is Kind.STRUCT:
        for name, child in as_mapping(value, path).items():
            sub = f"{path}.{name}" if path else str(name)
            if name in node.fields:
                check(node.fields[name], child, sub, warnings)
            elif node.extra is not None:
                check(node.extra, child, sub, warnings)
            else:
                warnings.append(f"unknown configuration key '{sub}'")
    elif node.kind is Kind.MAP:
        for name, child in as_mapping(value, path).items():
            check(node.item or Key(Kind.ANY), child, f"{path}.{name}", warnings)
    elif node.kind is Kind.LIST:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {describe(value)}")
        for i, child in enumerate(value):
            check(node.item or Key(Kind.ANY), child, f"{path}[{i}]", warnings)
    elif node.kind is not Kind.ANY:
        _LEAF_CHECKS[node.kind](value, path)


# Leaf converters: return the typed value or raise ConfigError("<path>: expected ..., got ...").


def as_mapping(value: Any, path: str) -> Mapping[Any, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected a mapping, got {describe(value)}")
    return value


def describe(value: Any) -> str:
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    return repr(value)


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
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigError(f"{path}: expected a boolean, got {describe(value)}")


def as_int(value: Any, path: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
        return int(value)
    raise ConfigError(f"{path}: expected an integer, got {describe(value)}")


def as_duration(value: Any, path: str) -> float:
    try:
        return parse_duration(value)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def as_strlist(value: Any, path: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, list):
        return tuple(as_str(v, f"{path}[{i}]") for i, v in enumerate(value))
    return (as_str(value, path),)


def as_headers(value: Any, path: str) -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType(
        {as_str(k, path): as_strlist(v, f"{path}.{k}") for k, v in as_mapping(value, path).items()}
    )


_LEAF_CHECKS: Mapping[Kind, Callable[[Any, str], object]] = MappingProxyType(
    {
        Kind.STR: as_str,
        Kind.BOOL: as_bool,
        Kind.INT: as_int,
        Kind.DURATION: as_duration,
        Kind.STRLIST: as_strlist,
        Kind.HEADERS: as_headers,
    }
)
