"""The `health` section and `http.debug`, parsed at load (server/health.py runs the checks,
server/debug.py serves them).

Checks follow Distribution's `health.*` config: `storagedriver`, `file`, `http`, `tcp`, each with
an `interval` (default 10s; zero means the default) and a `threshold` (consecutive failures before
the check fails; 0 or 1: the first). `http.debug.prometheus.path` defaults to `/metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastreg.config.convert import ConfigError, Section, header_pairs, host_port

DEFAULT_INTERVAL = 10.0
DEFAULT_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class Timing:
    interval: float = DEFAULT_INTERVAL
    threshold: int = 1


@dataclass(frozen=True, slots=True)
class FileCheck:
    file: str
    timing: Timing = field(default_factory=Timing)


@dataclass(frozen=True, slots=True)
class HTTPCheck:
    uri: str
    headers: tuple[tuple[str, str], ...] = ()
    statuscode: int = 200
    timeout: float = DEFAULT_TIMEOUT
    timing: Timing = field(default_factory=Timing)


@dataclass(frozen=True, slots=True)
class TCPCheck:
    addr: str
    host: str
    port: int
    timeout: float = DEFAULT_TIMEOUT
    timing: Timing = field(default_factory=Timing)


@dataclass(frozen=True, slots=True)
class HealthSettings:
    storagedriver: Timing | None = None  # None: the storage driver is not checked
    files: tuple[FileCheck, ...] = ()
    http: tuple[HTTPCheck, ...] = ()
    tcp: tuple[TCPCheck, ...] = ()


@dataclass(frozen=True, slots=True)
class DebugSettings:
    addr: str = ""  # empty: no debug server
    host: str = ""
    port: int = 0
    prometheus: bool = False
    prometheus_path: str = "/metrics"


def _timing(p: Section) -> Timing:
    interval = p.duration("interval", DEFAULT_INTERVAL) or DEFAULT_INTERVAL
    return Timing(max(interval, 0.01), max(p.integer("threshold", 0), 1))


def parse_health(section: Any) -> HealthSettings:
    """`health`, checked; ConfigError names the key."""
    p = Section(section, "health")
    storage = p.section("storagedriver")
    tcp = []
    for entry in p.sections("tcp"):
        addr = entry.text("addr")
        host, port = host_port(addr, entry.key("addr"))
        timeout = entry.duration("timeout", DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT
        tcp.append(TCPCheck(addr, host, port, timeout, _timing(entry)))
    return HealthSettings(
        storagedriver=_timing(storage) if storage.flag("enabled") else None,
        files=tuple(FileCheck(e.text("file"), _timing(e)) for e in p.sections("file")),
        http=tuple(
            HTTPCheck(
                uri=e.text("uri"),
                headers=header_pairs(e.headers("headers")),
                statuscode=e.integer("statuscode", 200) or 200,
                timeout=e.duration("timeout", DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT,
                timing=_timing(e),
            )
            for e in p.sections("http")
        ),
        tcp=tuple(tcp),
    )


def parse_debug(section: Any) -> DebugSettings:
    """`http.debug`, checked; ConfigError names the key."""
    p = Section(section, "http.debug")
    prometheus = p.section("prometheus")
    path = prometheus.text("path", "/metrics")
    if not path.startswith("/"):
        raise ConfigError(f"http.debug.prometheus.path: must start with '/', got {path!r}")
    addr = p.text("addr")
    host, port = host_port(addr, "http.debug.addr") if addr else ("", 0)
    return DebugSettings(addr, host, port, prometheus.flag("enabled"), path)
