"""Typed application keys and the per-request view handlers receive."""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aiohttp import web

from fastreg.registry.service import Registry


@dataclass(frozen=True, slots=True)
class HTTPSettings:
    host: str = ""  # http.host: the externally visible base URL, e.g. https://registry.example.com
    relativeurls: bool = False
    headers: tuple[tuple[str, str], ...] = ()


REGISTRY: web.AppKey[Registry] = web.AppKey("registry", Registry)
HTTP: web.AppKey[HTTPSettings] = web.AppKey("http", HTTPSettings)
# request ids: a random per-process prefix and a counter (uuid4 per request costs ~5% of a GET)
class RequestIds:
    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex()
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}-{next(self._counter):x}"


REQUEST_IDS: web.AppKey[RequestIds] = web.AppKey("request_ids", RequestIds)
# threads that run sendfile(2) loops on uvloop, one per blob download in flight
SENDFILE_POOL: web.AppKey[ThreadPoolExecutor] = web.AppKey("sendfile_pool", ThreadPoolExecutor)


# set by access control on a mount: may the caller pull from `from`? (absent: no access control)
MOUNT_FROM_ALLOWED: web.RequestKey[bool] = web.RequestKey("mount_from_allowed", bool)


def registry_of(request: web.Request) -> Registry:
    return request.app[REGISTRY]


def url_for(request: web.Request, path: str) -> str:
    """A Location for ``path``: relative when configured, else absolute on the visible host.

    The scheme and host come from `http.host`, else from X-Forwarded-Proto/-Host (nginx in front
    terminating TLS), else from the request itself.
    """
    settings = request.app[HTTP]
    if settings.relativeurls:
        return path
    if settings.host:
        return settings.host.rstrip("/") + path
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip() or request.scheme
    host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip() or request.host
    return f"{proto}://{host}{path}"
