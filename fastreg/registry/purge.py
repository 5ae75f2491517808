"""Upload purging (`storage.maintenance.uploadpurging`): remove upload sessions abandoned for longer
than ``age``, as Distribution's `purgeuploads.go` does.

The age of a session is its `startedat` file (RFC 3339); a session without a readable one is
never purged (Distribution treats it as started in the future). Also here: the settings parsed
from `storage.maintenance.uploadpurging` at load, with Distribution's defaults (on, 168h, every
24h, not a dry run).
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from typing import Any

from fastreg.config.convert import ConfigError, Section
from fastreg.registry import layout
from fastreg.storage.base import PathNotFound, StorageDriver

log = logging.getLogger("fastreg.purge")


@dataclass(frozen=True, slots=True)
class PurgeSettings:
    enabled: bool = True
    age: float = 168 * 3600.0
    interval: float = 24 * 3600.0
    dryrun: bool = False


def parse(section: Any, readonly: bool = False) -> PurgeSettings:
    """`storage.maintenance.uploadpurging`, with Distribution's rules: defaults when the section
    is absent, off in read-only mode."""
    p = Section(section, "storage.maintenance.uploadpurging")
    default = PurgeSettings()
    settings = PurgeSettings(
        enabled=p.flag("enabled", True) and not readonly,
        age=p.duration("age", default.age) or default.age,
        interval=p.duration("interval", default.interval) or default.interval,
        dryrun=p.flag("dryrun"),
    )
    if settings.age < 0 or settings.interval <= 0:
        raise ConfigError(f"{p.path}: age and interval must be positive")
    return settings


def _started_at(content: bytes) -> float | None:
    try:
        text = content.decode("ascii").strip().replace("Z", "+00:00")
        return datetime.datetime.fromisoformat(text).timestamp()
    except (UnicodeDecodeError, ValueError):
        return None


async def _upload_folders(driver: StorageDriver) -> list[tuple[str, list[str]]]:
    """Every `<name>/_uploads` with its sessions; a repository may have nothing but uploads yet,
    so this walks the tree rather than the catalog (which needs `_manifests`)."""
    found: list[tuple[str, list[str]]] = []
    pending = [""]
    while pending:
        prefix = pending.pop()
        try:
            children = await driver.list(layout.REPOSITORIES + ("/" + prefix if prefix else ""))
        except PathNotFound:
            continue
        if "_uploads" in children and prefix:
            try:
                found.append((prefix, await driver.list(layout.uploads(prefix))))
            except PathNotFound:
                pass
        pending += [
            f"{prefix}/{c}" if prefix else c for c in children if not c.startswith((".", "_"))
        ]
    return found


async def purge_uploads(driver: StorageDriver, older_than: float, dry_run: bool) -> list[str]:
    """Delete (or, dry, only list) the upload folders started before ``older_than`` (epoch s)."""
    purged: list[str] = []
    for name, sessions in await _upload_folders(driver):
        for upload_id in sorted(sessions):
            try:
                content = await driver.get_content(layout.upload_startedat(name, upload_id), 256)
            except PathNotFound:
                continue
            started = _started_at(content)
            if started is None or started >= older_than:
                continue
            path = layout.upload_dir(name, upload_id)
            if not dry_run:
                try:
                    await driver.delete(path)
                except PathNotFound:
                    continue
            purged.append(path)
    log.info(
        "upload purge done",
        extra={"purged": len(purged), "dryrun": dry_run, "older_than": older_than},
    )
    return purged
