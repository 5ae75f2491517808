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

from fastreg.configkeys import (
    ConfigError,
    as_bool,
    as_duration,
    as_headers,
    as_int,
    as_str,
    as_strlist,
    parse_size,
)

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


def default_spool_directory(driver: str, parameters: Mapping[str, Any], cwd: str) -> str:
    """Beside the registry data for the filesystem driver (outside `docker/registry/v2`, which
    Distribution and its garbage collector walk), else `<cwd>/var/notify-spool`."""
    root = parameters.get("rootdirectory") if driver == "filesystem" else None
    if root:
        return os.path.join(str(root), SPOOL_SUBDIR)
    return os.path.join(cwd, "var", "notify-spool")


def parse_notifications(
    raw: Mapping[str, Any], driver: str, parameters: Mapping[str, Any], cwd: str | None = None
) -> NotifyConfig:
    """Enabled endpoints and the spool; raises ConfigError naming the key on a bad value."""
    endpoints: list[EndpointConfig] = []
    names: set[str] = set()
    for i, entry in enumerate(raw.get("endpoints") or ()):
        path = f"notifications.endpoints[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{path}: expected a mapping")
        if entry.get("disabled") is not None and as_bool(entry["disabled"], f"{path}.disabled"):
            continue
        endpoint = _endpoint(entry, path)
        if endpoint.name in names:
            raise ConfigError(f"{path}.name: duplicate endpoint name {endpoint.name!r}")
        names.add(endpoint.name)
        endpoints.append(endpoint)
    spool = raw.get("spool") or {}
    if not isinstance(spool, Mapping):
        raise ConfigError("notifications.spool: expected a mapping")
    directory = spool.get("directory")
    maxbytes = spool.get("maxbytes")
    try:
        size = DEFAULT_SPOOL_MAXBYTES if maxbytes is None else parse_size(maxbytes)
    except ConfigError as exc:
        raise ConfigError(f"notifications.spool.maxbytes: {exc}") from None
    if size < 4096:
        raise ConfigError("notifications.spool.maxbytes: at least 4096 bytes")
    return NotifyConfig(
        endpoints=tuple(endpoints),
        spool=SpoolConfig(
            directory=as_str(directory, "notifications.spool.directory")
            if directory
            else default_spool_directory(driver, parameters, cwd or os.getcwd()),
            maxbytes=size,
        ),
    )


def thaw(value: Any) -> Any:
    """Plain dicts and lists from the read-only config (the `as_*` converters expect those)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


def _endpoint(frozen: Mapping[str, Any], path: str) -> EndpointConfig:
    entry: dict[str, Any] = thaw(frozen)
    name = as_str(entry.get("name") or "", f"{path}.name")
    url = as_str(entry.get("url") or "", f"{path}.url")
    if not name:
        raise ConfigError(f"{path}.name: required")
    if not re.match(r"^https?://", url):
        raise ConfigError(f"{path}.url: expected an http:// or https:// URL, got {url!r}")
    headers = as_headers(entry.get("headers") or {}, f"{path}.headers")
    ignore = entry.get("ignore") or {}
    if not isinstance(ignore, Mapping):
        raise ConfigError(f"{path}.ignore: expected a mapping")
    mediatypes = as_strlist(entry.get("ignoredmediatypes"), f"{path}.ignoredmediatypes")
    mediatypes += as_strlist(ignore.get("mediatypes"), f"{path}.ignore.mediatypes")
    actions = as_strlist(ignore.get("actions"), f"{path}.ignore.actions")
    unknown = sorted(set(actions) - ACTIONS)
    if unknown:
        raise ConfigError(f"{path}.ignore.actions: unknown action(s) {', '.join(unknown)}")
    return EndpointConfig(
        name=name,
        url=url,
        headers=tuple((k, v) for k, values in headers.items() for v in values),
        timeout=_positive(entry.get("timeout"), DEFAULT_TIMEOUT, f"{path}.timeout"),
        threshold=_threshold(entry.get("threshold"), f"{path}.threshold"),
        backoff=_positive(entry.get("backoff"), DEFAULT_BACKOFF, f"{path}.backoff"),
        ignored_mediatypes=frozenset(mediatypes),
        ignored_actions=frozenset(actions),
    )


def _positive(value: Any, default: float, path: str) -> float:
    """Distribution replaces a zero or negative duration by the default."""
    seconds = default if value is None else as_duration(value, path)
    return seconds if seconds > 0 else default


def _threshold(value: Any, path: str) -> int:
    threshold = DEFAULT_THRESHOLD if value is None else as_int(value, path)
    return threshold if threshold > 0 else DEFAULT_THRESHOLD
