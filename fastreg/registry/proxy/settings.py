"""The `proxy` section, parsed once at load into typed settings.

Distribution's keys (`remoteurl`, `username`, `password`, `ttl`) name the default upstream, the
only one Distribution knows; fastreg's `upstreams` list adds one upstream per `namespace` (the
upstream's host name as clients know it: `docker.io`, `ghcr.io`). `ttl` is a Go duration: how
long cached content may go unused before it is removed (`expiry.py`); 168h (7 days, Distribution
3.x's default) when absent, and 0 keeps content forever (as in Distribution). An entry of
`upstreams` without its own `ttl` takes the top-level one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fastreg.config.convert import ConfigError, Section

DEFAULT_TTL = 168 * 3600.0
# a host name with an optional port, as clients write it before the first `/` of a reference
_NAMESPACE_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[0-9]+)?$")


@dataclass(frozen=True, slots=True)
class Upstream:
    remoteurl: str  # scheme://host[:port], no trailing slash
    username: str = ""
    password: str = ""
    ttl: float = DEFAULT_TTL  # seconds unused before cached content goes; 0: never
    namespace: str = ""  # "": the default upstream (top-level `remoteurl`)

    @property
    def credentials(self) -> tuple[str, str] | None:
        return (self.username, self.password) if self.username else None


@dataclass(frozen=True, slots=True)
class ProxySettings:
    default: Upstream | None = None
    upstreams: tuple[Upstream, ...] = ()

    @property
    def enabled(self) -> bool:
        return self.default is not None or bool(self.upstreams)


def parse(raw: Any) -> ProxySettings:
    """The `proxy` section; raises ConfigError naming the key on a bad value."""
    section = Section(raw, "proxy")
    default = _upstream(section, "", DEFAULT_TTL) if section.has("remoteurl") else None
    if default is None and (section.has("username") or section.has("password")):
        raise ConfigError("proxy.remoteurl: required with proxy.username or proxy.password")
    upstreams: list[Upstream] = []
    seen: set[str] = set()
    for entry in section.sections("upstreams"):
        namespace = entry.required("namespace").lower()
        if not _NAMESPACE_RE.match(namespace):
            raise ConfigError(f"{entry.key('namespace')}: expected a host name, got {namespace!r}")
        if namespace in seen:
            raise ConfigError(f"{entry.key('namespace')}: duplicate namespace {namespace!r}")
        seen.add(namespace)
        upstreams.append(_upstream(entry, namespace, section.duration("ttl", DEFAULT_TTL)))
    return ProxySettings(default=default, upstreams=tuple(upstreams))


def _upstream(section: Section, namespace: str, default_ttl: float) -> Upstream:
    url = section.required("remoteurl").rstrip("/")
    if not re.match(r"^https?://[^/?#]+$", url):
        raise ConfigError(
            f"{section.key('remoteurl')}: expected http(s)://host[:port], got {url!r}"
        )
    ttl = section.duration("ttl", default_ttl)
    if ttl < 0:
        raise ConfigError(f"{section.key('ttl')}: negative duration")
    username = section.text("username")
    password = section.text("password")
    if password and not username:
        raise ConfigError(f"{section.key('username')}: required with a password")
    return Upstream(
        remoteurl=url, username=username, password=password, ttl=ttl, namespace=namespace
    )
