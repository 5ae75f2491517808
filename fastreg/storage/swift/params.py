"""The `storage.swift` parameters of Distribution's swift driver, parsed and checked once at start.

Keys are Distribution's (ncw/swift connection settings plus the driver's own). `rootdirectory` is
accepted as another name for Distribution's `prefix`; `pagesize`, `retries` and
`connecttimeout`/`readtimeout` are fastreg's. `KEYS` is the driver's part of the key table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastreg.config.convert import ConfigError, Section
from fastreg.config.keys import ANY, BOOL, INT, STR, struct
from fastreg.storage.clientparams import READ_TIMEOUT, TIMEOUT_KEYS, timeouts

MIN_CHUNK = 1024 * 1024
MAX_CHUNK = 5 * 1024 * 1024 * 1024  # Swift's default max_file_size: one segment is one object
DEFAULT_CHUNK = 20 * 1024 * 1024
CONNECT_TIMEOUT = 10.0  # ncw/swift's ConnectTimeout
DEFAULT_RETRIES = 3  # ncw/swift retries 3 times when `retries` is 0
ENDPOINT_TYPES = ("public", "internal", "admin")

_TEXT_KEYS = ("username", "password", "authurl", "container", "tenant", "tenantid", "domain",
              "domainid", "tenantdomain", "tenantdomainid", "trustid", "region", "endpointtype",
              "prefix", "rootdirectory", "secretkey", "accesskey")
KEYS = struct(
    **dict.fromkeys(_TEXT_KEYS, STR),
    authversion=INT,
    insecureskipverify=BOOL,
    chunksize=INT,
    pagesize=INT,
    retries=INT,
    tempurlcontainerkey=BOOL,
    tempurlmethods=ANY,  # a list, or a comma or space separated string (environment)
    **TIMEOUT_KEYS,
)


@dataclass(frozen=True, slots=True)
class SwiftParams:
    """The checked `storage.swift` section: what Keystone/v1 auth and the object calls read."""

    authurl: str
    username: str
    password: str
    container: str
    authversion: int = 1
    tenant: str = ""
    tenantid: str = ""
    domain: str = ""
    domainid: str = ""
    tenantdomain: str = ""
    tenantdomainid: str = ""
    trustid: str = ""
    region: str = ""
    endpointtype: str = "public"
    insecureskipverify: bool = False
    chunksize: int = DEFAULT_CHUNK
    prefix: str = ""
    pagesize: int = 0  # 0: the server's own limit (10,000 by default)
    retries: int = DEFAULT_RETRIES
    secretkey: str = ""
    accesskey: str = ""
    tempurlcontainerkey: bool = False
    tempurlmethods: tuple[str, ...] = ()
    connecttimeout: float = CONNECT_TIMEOUT
    readtimeout: float = READ_TIMEOUT

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> SwiftParams:
        p = Section(raw, "storage.swift")
        required = {k: p.required(k) for k in ("username", "password", "authurl", "container")}
        authurl = required["authurl"].rstrip("/")
        version = p.integer("authversion", 0, 0, 3) or detect_version(authurl)
        endpointtype = p.text("endpointtype", "public").lower()
        if endpointtype not in ENDPOINT_TYPES:
            raise ConfigError(
                f"storage.swift.endpointtype: {endpointtype!r} is not one of {', '.join(ENDPOINT_TYPES)}"
            )
        prefix, root = p.text("prefix"), p.text("rootdirectory")
        if prefix and root and prefix.strip("/") != root.strip("/"):
            raise ConfigError("storage.swift.rootdirectory: differs from storage.swift.prefix")
        return cls(
            authurl=authurl,
            username=required["username"],
            password=required["password"],
            container=required["container"],
            authversion=version,
            tenant=p.text("tenant"),
            tenantid=p.text("tenantid"),
            domain=p.text("domain"),
            domainid=p.text("domainid"),
            tenantdomain=p.text("tenantdomain"),
            tenantdomainid=p.text("tenantdomainid"),
            trustid=p.text("trustid"),
            region=p.text("region"),
            endpointtype=endpointtype,
            insecureskipverify=p.flag("insecureskipverify"),
            chunksize=p.integer("chunksize", DEFAULT_CHUNK, MIN_CHUNK, MAX_CHUNK),
            prefix=(prefix or root).strip("/"),
            pagesize=p.integer("pagesize", 0, 0, 1_000_000),
            retries=p.integer("retries", 0, 0, 100) or DEFAULT_RETRIES,
            secretkey=p.text("secretkey"),
            accesskey=p.text("accesskey"),
            tempurlcontainerkey=p.flag("tempurlcontainerkey"),
            tempurlmethods=_methods(raw.get("tempurlmethods")),
            **timeouts(p, connect=CONNECT_TIMEOUT),
        )


def detect_version(authurl: str) -> int:
    """ncw/swift's rule: the auth version is the first of v3, v2, v1 the URL contains."""
    for version in (3, 2, 1):
        if f"v{version}" in authurl:
            return version
    raise ConfigError(
        f"storage.swift.authversion: cannot tell it from authurl {authurl!r}; set it (1, 2 or 3)"
    )


def _methods(value: Any) -> tuple[str, ...]:
    """`tempurlmethods`: a YAML list, or a comma or space separated string (environment)."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        items: list[Any] = value.replace(",", " ").split()
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ConfigError(f"storage.swift.tempurlmethods: expected a list, got {value!r}")
    if not all(isinstance(m, str) for m in items):
        raise ConfigError(f"storage.swift.tempurlmethods: expected strings, got {value!r}")
    return tuple(m.upper() for m in items)


def parse(raw: Mapping[str, Any]) -> SwiftParams:
    """The driver's settings from its checked `storage.swift` section (the factory's hook)."""
    return SwiftParams.parse(raw)
