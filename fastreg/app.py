"""Wire the application: storage driver -> registry -> HTTP routes, middlewares and hooks.

`create_app(config)` is what tests and the CLI both use. Nothing here runs at import time; every
shared object hangs off the Application under a typed key, opened and closed in `cleanup_ctx`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from fastreg.api.context import HTTP, REGISTRY, REQUEST_IDS, SENDFILE_POOL, HTTPSettings, RequestIds
from fastreg.api.middleware import access_log, add_headers, errors
from fastreg.api.routes import setup_routes
from fastreg.cache import InMemoryDescriptorCache, RedisDescriptorCache
from fastreg.config import Config
from fastreg.debug import health_gate, setup_health
from fastreg.metrics import METRICS, Metrics, observe
from fastreg.notify.service import setup_notifications
from fastreg.registry.blobs import DescriptorCache
from fastreg.registry.service import Registry, RegistrySettings
from fastreg.storage.base import StorageDriver
from fastreg.storage.factory import create_driver
from fastreg.storage.instrumented import instrument

log = logging.getLogger("fastreg.app")


def registry_settings(config: Config) -> RegistrySettings:
    return RegistrySettings(
        delete_enabled=config.storage.delete_enabled,
        readonly=config.storage.readonly,
        schema1_enabled=config.schema1_enabled,
        redirect_disable=config.storage.redirect_disable,
        automount=not config.auth,
    )


def descriptor_cache(config: Config) -> DescriptorCache | None:
    kind = config.storage.blobdescriptor_cache
    if kind == "inmemory":
        return InMemoryDescriptorCache(config.storage.blobdescriptor_size)
    if kind == "redis":
        return RedisDescriptorCache.from_config(config.redis)
    return None


def http_settings(config: Config) -> HTTPSettings:
    headers = tuple(
        (name, value) for name, values in config.http.headers.items() for value in values
    )
    return HTTPSettings(host=config.http.host, relativeurls=config.http.relativeurls, headers=headers)


def create_app(config: Config, driver: StorageDriver | None = None) -> web.Application:
    """Build the registry application. ``driver`` overrides the configured one (tests)."""
    # observe (metrics) then access_log outermost so that they see the final status of error
    # responses too; health_gate inside errors so its 503 gets the OCI body; notifications
    # (setup_notifications) innermost, so failed requests produce no event
    app = web.Application(
        middlewares=[observe, access_log, errors, health_gate], client_max_size=4 * 1024 * 1024
    )
    app[METRICS] = Metrics()  # per application, never global
    storage = instrument(
        driver or create_driver(config.storage.driver, config.storage.parameters), app[METRICS]
    )
    app[REGISTRY] = Registry(storage, registry_settings(config), descriptor_cache(config))
    app[HTTP] = http_settings(config)
    app[REQUEST_IDS] = RequestIds()
    app[SENDFILE_POOL] = ThreadPoolExecutor(max_workers=64, thread_name_prefix="sendfile")
    app.on_response_prepare.append(add_headers)
    app.cleanup_ctx.append(_registry_lifecycle)
    setup_routes(app)
    setup_health(app, config)
    setup_notifications(app, config)  # after _registry_lifecycle: it stops before storage closes
    return app


async def _registry_lifecycle(app: web.Application) -> AsyncIterator[None]:
    registry = app[REGISTRY]
    await registry.driver.healthy()
    log.info("storage ready", extra={"driver": registry.driver.name})
    yield
    await registry.close()
    app[SENDFILE_POOL].shutdown(wait=False, cancel_futures=True)
