"""The `redis` section: the one Redis connection the blob descriptor cache, the tag-list cache
and the upload leases share (`caches`, fastreg.registry.leases).

Defaults are the redis client's as fastreg has always used them: `127.0.0.1:6379`, database 0,
1 s to connect and to answer, 64 connections. Durations are Distribution's `time.Duration`
fields (a bare number counts nanoseconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastreg.config.convert import ConfigError, Section

DEFAULT_ADDR = "127.0.0.1:6379"


@dataclass(frozen=True, slots=True)
class RedisSettings:
    addr: str = ""  # empty: no Redis configured
    username: str | None = None
    password: str | None = None
    db: int = 0
    dialtimeout: float = 1.0
    readtimeout: float = 1.0
    writetimeout: float = 1.0
    maxidle: int = 0
    maxactive: int = 64
    idletimeout: float = 0.0
    tls: bool = False

    @property
    def configured(self) -> bool:
        return bool(self.addr)

    def host_port(self) -> tuple[str, int]:
        host, _, port = (self.addr or DEFAULT_ADDR).rpartition(":")
        return host or "127.0.0.1", int(port or 6379)


def parse(section: Any) -> RedisSettings:
    """`redis`, checked; ConfigError names the key."""
    p = Section(section, "redis")
    pool = p.section("pool")
    settings = RedisSettings(
        addr=p.text("addr"),
        username=p.optional("username") or None,
        password=p.optional("password") or None,
        db=p.integer("db", 0, 0),
        dialtimeout=p.duration("dialtimeout", 0.0) or 1.0,
        readtimeout=p.duration("readtimeout", 0.0) or 1.0,
        writetimeout=p.duration("writetimeout", 0.0) or 1.0,
        maxidle=pool.integer("maxidle", 0, 0),
        maxactive=pool.integer("maxactive", 0, 0) or 64,
        idletimeout=pool.duration("idletimeout", 0.0),
        tls=p.section("tls").flag("enabled"),
    )
    if settings.addr:
        _, _, port = settings.addr.rpartition(":")
        if port and not port.isdigit():
            raise ConfigError(f"redis.addr: expected host:port, got {settings.addr!r}")
    return settings
