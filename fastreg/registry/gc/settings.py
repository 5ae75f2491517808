"""`storage.maintenance.gc`: fastreg's online garbage collection inside a running server.

It lives under `maintenance` (a free-form map to Distribution) rather than as `storage.gc`: a
second name directly under `storage` reads to Distribution as a second storage driver, and the
same config.yml must keep starting both servers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastreg.configkeys import ConfigError, as_bool, as_duration


@dataclass(frozen=True, slots=True)
class OnlineGCSettings:
    enabled: bool = False
    interval: float = 24 * 3600.0
    delay: float = 3600.0  # blobs younger than this are never collected
    dryrun: bool = False

    @classmethod
    def from_maintenance(cls, maintenance: Mapping[str, Any], readonly: bool) -> OnlineGCSettings:
        raw = maintenance.get("gc")
        section: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        p = "storage.maintenance.gc"
        d = cls()
        settings = cls(
            enabled=as_bool(section.get("enabled", False), f"{p}.enabled") and not readonly,
            interval=as_duration(section.get("interval", "24h"), f"{p}.interval") or d.interval,
            delay=as_duration(section.get("delay", "1h"), f"{p}.delay"),
            dryrun=as_bool(section.get("dryrun", False), f"{p}.dryrun"),
        )
        if settings.interval <= 0 or settings.delay < 0:
            raise ConfigError(f"{p}: interval must be positive and delay not negative")
        return settings
