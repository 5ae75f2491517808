"""`storage.maintenance.gc`: fastreg's online garbage collection inside a running server.

It lives under `maintenance` (a free-form map to Distribution) rather than as `storage.gc`: a
second name directly under `storage` reads to Distribution as a second storage driver, and the
same config.yml must keep starting both servers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastreg.config.convert import ConfigError, Section


@dataclass(frozen=True, slots=True)
class OnlineGCSettings:
    enabled: bool = False
    interval: float = 24 * 3600.0
    delay: float = 3600.0  # blobs younger than this are never collected
    dryrun: bool = False


def parse(section: Any, readonly: bool = False) -> OnlineGCSettings:
    """`storage.maintenance.gc`, checked (off in read-only mode); ConfigError names the key."""
    p = Section(section, "storage.maintenance.gc")
    default = OnlineGCSettings()
    settings = OnlineGCSettings(
        enabled=p.flag("enabled") and not readonly,
        interval=p.duration("interval", default.interval) or default.interval,
        delay=p.duration("delay", default.delay),
        dryrun=p.flag("dryrun"),
    )
    if settings.interval <= 0 or settings.delay < 0:
        raise ConfigError(f"{p.path}: interval must be positive and delay not negative")
    return settings
