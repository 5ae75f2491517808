"""The table of configuration keys Distribution 2.8 knows, and the two walks over it.

``ROOT`` is a tree of ``Key`` nodes built from Distribution 2.8's ``configuration.go``;
``supported=False`` marks keys Distribution accepts but fastreg ignores (loading warns instead of
failing). ``apply_env`` resolves ``REGISTRY_*`` variable names against the tree (case-insensitively,
as Distribution's parser does) and ``check`` validates a document against it (type errors naming
the dotted key, warnings for unknown and not-yet-supported keys), with the converters of
``fastreg.config.convert``.

A storage driver's parameters are a free-form map here (so ``REGISTRY_STORAGE_<DRIVER>_<KEY>``
creates any key, as in Distribution); each driver declares its own keys with the builders below
(``struct``, ``unsupported``, the leaf kinds) in its params module, and loading checks the
configured driver's section against that table (``fastreg.storage.factory.parameters_module``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import yaml

from fastreg.config.convert import (
    SAFE_LOADER,
    ConfigError,
    as_bool,
    as_duration,
    as_headers,
    as_int,
    as_mapping,
    as_size,
    as_str,
    as_strlist,
    describe,
)
from fastreg.config.convert import SECONDS as SECONDS_UNIT


class Kind(enum.Enum):
    """What a key holds. Leaves are type-checked; containers are walked."""

    STR = "string"
    BOOL = "boolean"
    INT = "integer"
    DURATION = "duration"
    SECONDS = "duration (bare number: seconds)"  # fastreg's own driver timeouts: a bare number counts seconds
    SIZE = "size"
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


def struct(**fields: Key) -> Key:
    return Key(Kind.STRUCT, fields=MappingProxyType(fields))


def mapof(item: Key) -> Key:
    return Key(Kind.MAP, item=item)


def listof(item: Key) -> Key:
    return Key(Kind.LIST, item=item)


def unsupported(key: Key) -> Key:
    """Known to Distribution, not implemented by fastreg (yet): loading warns, naming it."""
    return replace(key, supported=False)



def _env(key: Key, go_name: str) -> Key:
    """The environment variable segment is the Go field name, not the YAML key."""
    return replace(key, env_name=go_name.upper())


STR = Key(Kind.STR)
BOOL = Key(Kind.BOOL)
INT = Key(Kind.INT)
DURATION = Key(Kind.DURATION)
DURATION_S = Key(Kind.SECONDS)  # fastreg's own driver timeouts: a bare number is seconds
SIZE = Key(Kind.SIZE)
STRLIST = Key(Kind.STRLIST)
HEADERS = Key(Kind.HEADERS)
ANY = Key(Kind.ANY)
PARAMETERS = mapof(ANY)  # a driver's or auth provider's parameters

#: Section names under ``storage`` that are not storage drivers.
STORAGE_SECTIONS = frozenset({"delete", "maintenance", "cache", "redirect", "tag"})

_LOG = struct(
    accesslog=struct(disabled=BOOL),
    level=STR,
    formatter=STR,
    fields=mapof(ANY),
    hooks=unsupported(listof(ANY)),
    reportcaller=unsupported(BOOL),
)

_STORAGE = replace(
    struct(
        delete=struct(enabled=BOOL),
        redirect=struct(disable=BOOL),
        cache=struct(blobdescriptor=STR, blobdescriptorsize=INT, layerinfo=STR, tags=STR, tagsttl=DURATION),
        maintenance=struct(
            uploadpurging=struct(enabled=BOOL, age=DURATION, interval=DURATION, dryrun=BOOL),
            readonly=struct(enabled=BOOL),
            # fastreg only: online garbage collection (fastreg.registry.gc.settings)
            gc=struct(enabled=BOOL, interval=DURATION, delay=DURATION, dryrun=BOOL),
        ),
        tag=unsupported(struct(concurrencylimit=INT)),  # Distribution 3
    ),
    extra=PARAMETERS,  # every other name under storage is a storage driver
)

_TOKEN_SERVER = struct(
    key=STR,
    htpasswd=STR,
    acl=STR,
    expiration=DURATION,
    refreshexpiration=DURATION,
    embedded=BOOL,
    addr=STR,
    path=STR,
)

# `token` and `htpasswd` are the access controllers fastreg has; any other name (`silly`) is
# free-form here and refused by fastreg.auth.settings, naming it.
_AUTH = replace(
    struct(
        token=struct(
            realm=STR,
            service=STR,
            issuer=STR,
            rootcertbundle=STR,
            jwks=STR,  # Distribution 3
            signingalgorithms=STRLIST,  # Distribution 3
            autoredirect=unsupported(BOOL),  # Distribution 3
            autoredirectpath=unsupported(STR),  # Distribution 3
            uploadgrace=DURATION,  # fastreg only
            tokenserver=_TOKEN_SERVER,  # fastreg only: the built-in issuer
        ),
        htpasswd=struct(realm=STR, path=STR),
    ),
    extra=PARAMETERS,
)

_TLS = struct(
    certificate=STR,
    key=STR,
    clientcas=STRLIST,
    minimumtls=STR,
    ciphersuites=STRLIST,
    letsencrypt=unsupported(struct(cachefile=STR, email=STR, hosts=STRLIST, directoryurl=STR)),
)

_HTTP = struct(
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
    debug=struct(addr=STR, prometheus=struct(enabled=BOOL, path=STR)),
    http2=unsupported(struct(disabled=BOOL)),
    # fastreg only: proxies whose X-Forwarded-For / X-Real-IP name the client (CIDRs)
    trustedproxies=STRLIST,
)

_ENDPOINT = struct(
    name=STR,
    disabled=BOOL,
    url=STR,
    headers=HEADERS,
    timeout=DURATION,
    threshold=INT,
    backoff=DURATION,
    ignoredmediatypes=STRLIST,
    ignore=struct(mediatypes=STRLIST, actions=STRLIST),
)

_NOTIFICATIONS = struct(
    events=_env(struct(includereferences=BOOL), "EventConfig"),
    endpoints=listof(_ENDPOINT),
    spool=struct(directory=STR, maxbytes=SIZE),  # fastreg only: the durable event queue
)

_REDIS = struct(
    addr=STR,
    password=STR,
    db=INT,
    dialtimeout=DURATION,
    readtimeout=DURATION,
    writetimeout=DURATION,
    pool=struct(maxidle=INT, maxactive=INT, idletimeout=DURATION),
    tls=struct(enabled=BOOL),
)

_CHECK = MappingProxyType({"interval": DURATION, "threshold": INT})
_HTTP_CHECK = struct(uri=STR, headers=HEADERS, statuscode=INT, timeout=DURATION, **_CHECK)
_HEALTH = struct(
    storagedriver=struct(enabled=BOOL, **_CHECK),
    file=_env(listof(struct(file=STR, **_CHECK)), "FileCheckers"),
    http=_env(listof(_HTTP_CHECK), "HTTPCheckers"),
    tcp=_env(listof(struct(addr=STR, timeout=DURATION, **_CHECK)), "TCPCheckers"),
)

_REPORTING = struct(
    bugsnag=struct(apikey=STR, releasestage=STR, endpoint=STR),
    newrelic=struct(licensekey=STR, name=STR, verbose=BOOL),
)

_VALIDATION = struct(
    enabled=BOOL,
    disabled=BOOL,
    manifests=struct(urls=struct(allow=STRLIST, deny=STRLIST)),
)

# `name`, `disabled`, `options` (fastreg.registry.redirects checks the options of each name)
_MIDDLEWARE = listof(struct(name=STR, disabled=BOOL, options=PARAMETERS))

#: The whole of Distribution 2.8's ``Configuration`` struct.
ROOT = struct(
    version=STR,
    log=_LOG,
    loglevel=STR,  # deprecated alias of log.level; fastreg honours it
    storage=_STORAGE,
    auth=_AUTH,
    middleware=struct(registry=_MIDDLEWARE, repository=_MIDDLEWARE, storage=_MIDDLEWARE),
    reporting=unsupported(_REPORTING),
    http=_HTTP,
    notifications=_NOTIFICATIONS,
    redis=_REDIS,
    health=_HEALTH,
    catalog=unsupported(struct(maxentries=INT)),
    proxy=struct(
        remoteurl=STR,
        username=STR,
        password=STR,
        ttl=DURATION,
        # fastreg only: one upstream per namespace (registry/proxy/settings.py)
        upstreams=listof(
            struct(namespace=STR, remoteurl=STR, username=STR, password=STR, ttl=DURATION)
        ),
    ),
    compatibility=struct(
        schema1=struct(enabled=BOOL, signingkeyfile=unsupported(_env(STR, "TrustKey")))
    ),
    validation=_VALIDATION,
    policy=unsupported(struct(repository=struct(classes=STRLIST))),
)


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
            value = yaml.load(environ[name], Loader=SAFE_LOADER)
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


_LEAF_CHECKS: Mapping[Kind, Callable[[Any, str], object]] = MappingProxyType(
    {
        Kind.STR: as_str,
        Kind.BOOL: as_bool,
        Kind.INT: as_int,
        Kind.DURATION: as_duration,
        Kind.SECONDS: lambda value, path: as_duration(value, path, SECONDS_UNIT),
        Kind.SIZE: as_size,
        Kind.STRLIST: as_strlist,
        Kind.HEADERS: as_headers,
    }
)
