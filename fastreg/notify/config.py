"""The `notifications` section, read into typed values: endpoints (Distribution's keys) and the
fastreg-only durable spool (`notifications.spool`).

Defaults follow Distribution's `notifications/endpoint.go`: timeout 1s, threshold 10, backoff 1s.
This module must not import from `fastreg.api` or `fastreg.registry`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastreg.config.convert import ConfigError, Section, header_pairs

DEFAULT_TIMEOUT = 1.0
DEFAULT_THRESHOLD = 10
DEFAULT_BACKOFF = 1.0
DEFAULT_SPOOL_MAXBYTES = 256 * 1024 * 1024
SPOOL_SUBDIR = "fastreg-notify-spool"
ACTIONS = frozenset({"push", "pull", "delete", "mount"})


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    name: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = DEFAULT_TIMEOUT
    threshold: int = DEFAULT_THRESHOLD
    backoff: float = DEFAULT_BACKOFF
    ignored_mediatypes: frozenset[str] = frozenset()
    ignored_actions: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class SpoolConfig:
    directory: str
    maxbytes: int = DEFAULT_SPOOL_MAXBYTES  # per endpoint and per worker


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    endpoints: tuple[EndpointConfig, ...]
    spool: SpoolConfig
    include_references: bool = False  # `notifications.events.includereferences`


def default_spool_directory(driver: str, parameters: Mapping[str, Any], cwd: str) -> str:
    """Beside the registry data for the filesystem driver (outside `docker/registry/v2`, which
    Distribution and its garbage collector walk), else `<cwd>/var/notify-spool`."""
    root = parameters.get("rootdirectory") if driver == "filesystem" else None
    if root:
        return os.path.join(str(root), SPOOL_SUBDIR)
    return os.path.join(cwd, "var", "notify-spool")


def parse_notifications(
    raw: Any, driver: str, parameters: Mapping[str, Any], cwd: str | None = None
) -> NotifyConfig:
    """Enabled endpoints and the spool; raises ConfigError naming the key on a bad value."""
    section = Section(raw, "notifications")
    endpoints: list[EndpointConfig] = []
    names: set[str] = set()
    for entry in section.sections("endpoints"):
        if entry.flag("disabled"):
            continue
        endpoint = _endpoint(entry)
        if endpoint.name in names:
            raise ConfigError(f"{entry.key('name')}: duplicate endpoint name {endpoint.name!r}")
        names.add(endpoint.name)
        endpoints.append(endpoint)
    spool = section.section("spool")
    size = spool.size("maxbytes", DEFAULT_SPOOL_MAXBYTES)
    if size < 4096:
        raise ConfigError("notifications.spool.maxbytes: at least 4096 bytes")
    return NotifyConfig(
        endpoints=tuple(endpoints),
        spool=SpoolConfig(
            directory=spool.text("directory")
            or default_spool_directory(driver, parameters, cwd or os.getcwd()),
            maxbytes=size,
        ),
        include_references=section.section("events").flag("includereferences"),
    )


def _endpoint(p: Section) -> EndpointConfig:
    name, url = p.text("name"), p.text("url")
    if not name:
        raise ConfigError(f"{p.key('name')}: required")
    if not re.match(r"^https?://", url):
        raise ConfigError(f"{p.key('url')}: expected an http:// or https:// URL, got {url!r}")
    ignore = p.section("ignore")
    mediatypes = p.strlist("ignoredmediatypes") + ignore.strlist("mediatypes")
    actions = ignore.strlist("actions")
    unknown = sorted(set(actions) - ACTIONS)
    if unknown:
        raise ConfigError(f"{ignore.key('actions')}: unknown action(s) {', '.join(unknown)}")
    return EndpointConfig(
        name=name,
        url=url,
        headers=header_pairs(p.headers("headers")),
        # Distribution replaces a zero or negative duration or threshold by the default
        timeout=max(p.duration("timeout", DEFAULT_TIMEOUT), 0.0) or DEFAULT_TIMEOUT,
        threshold=max(p.integer("threshold", DEFAULT_THRESHOLD), 0) or DEFAULT_THRESHOLD,
        backoff=max(p.duration("backoff", DEFAULT_BACKOFF), 0.0) or DEFAULT_BACKOFF,
        ignored_mediatypes=frozenset(mediatypes),
        ignored_actions=frozenset(actions),
    )
