"""The `storage.swift` parameters of Distribution's swift driver, parsed and checked once at start.

Keys are Distribution's (ncw/swift connection settings plus the driver's own). `rootdirectory` is
accepted as another name for Distribution's `prefix`; `connecttimeout`/`readtimeout` are fastreg's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastreg.configkeys import ConfigError
from fastreg.storage.rest import ParamReader

MIN_CHUNK = 1024 * 1024
MAX_CHUNK = 5 * 1024 * 1024 * 1024  # Swift's default max_file_size: one segment is one object
DEFAULT_CHUNK = 20 * 1024 * 1024
DEFAULT_RETRIES = 3  # ncw/swift retries 3 times when `retries` is 0
ENDPOINT_TYPES = ("public", "internal", "admin")


@dataclass(frozen=True, slots=True)
class SwiftParams:
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
    connecttimeout: float = 10.0
    readtimeout: float = 60.0

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> SwiftParams:
        p = ParamReader(raw, "storage.swift")
        required = {}
        for key in ("username", "password", "authurl", "container"):
            value = p.text(key)
            if not value:
                raise ConfigError(f"storage.swift.{key}: required")
            required[key] = value
        authurl = required["authurl"].rstrip("/")
        version = p.integer("authversion", 0, 0, 3) or detect_version(authurl)
        endpointtype = (p.text("endpointtype") or "public").lower()
        if endpointtype not in ENDPOINT_TYPES:
            raise ConfigError(
                f"storage.swift.endpointtype: {endpointtype!r} is not one of {', '.join(ENDPOINT_TYPES)}"
            )
        prefix, root = p.text("prefix") or "", p.text("rootdirectory") or ""
        if prefix and root and prefix.strip("/") != root.strip("/"):
            raise ConfigError("storage.swift.rootdirectory: differs from storage.swift.prefix")
        return cls(
            authurl=authurl,
            username=required["username"],
            password=required["password"],
            container=required["container"],
            authversion=version,
            tenant=p.text("tenant") or "",
            tenantid=p.text("tenantid") or "",
            domain=p.text("domain") or "",
            domainid=p.text("domainid") or "",
            tenantdomain=p.text("tenantdomain") or "",
            tenantdomainid=p.text("tenantdomainid") or "",
            trustid=p.text("trustid") or "",
            region=p.text("region") or "",
            endpointtype=endpointtype,
            insecureskipverify=bool(p.flag("insecureskipverify", False)),
            chunksize=p.integer("chunksize", DEFAULT_CHUNK, MIN_CHUNK, MAX_CHUNK),
            prefix=(prefix or root).strip("/"),
            pagesize=p.integer("pagesize", 0, 0, 1_000_000),
            retries=p.integer("retries", 0, 0, 100) or DEFAULT_RETRIES,
            secretkey=p.text("secretkey") or "",
            accesskey=p.text("accesskey") or "",
            tempurlcontainerkey=bool(p.flag("tempurlcontainerkey", False)),
            tempurlmethods=_methods(raw.get("tempurlmethods")),
            connecttimeout=p.seconds("connecttimeout", 10.0),
            readtimeout=p.seconds("readtimeout", 60.0),
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
