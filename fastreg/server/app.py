"""Wire the application: storage driver -> registry -> HTTP routes, the pipeline and hooks.

`create_app(config)` is what tests and the CLI both use. Nothing here runs at import time; every
shared object hangs off the Application under a typed key, opened and closed in `cleanup_ctx`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from fastreg.api.context import (
    HTTP,
    REGISTRY,
    REQUEST_IDS,
    SENDER,
    HTTPSettings,
    RequestIds,
    TrustedProxies,
)
from fastreg.api.middleware import add_headers
from fastreg.api.routes import setup_routes
from fastreg.api.sendfile import Sender
from fastreg.auth.middleware import setup_auth
from fastreg.config import Config
from fastreg.config.convert import header_pairs
from fastreg.notify.service import setup_notifications
from fastreg.registry.blobs import DescriptorCache
from fastreg.registry.cache.caches import (
    InMemoryDescriptorCache,
    InMemoryTagCache,
    RedisDescriptorCache,
    RedisTagCache,
)
from fastreg.registry.service import Registry, RegistrySettings
from fastreg.registry.tags import TagListCache
from fastreg.server.allocator import return_freed_memory
from fastreg.server.debug import setup_debug_metrics
from fastreg.server.health import setup_health
from fastreg.server.maintenance import setup_maintenance
from fastreg.server.metrics import METRICS, Metrics
from fastreg.server.pipeline import setup_pipeline
from fastreg.server.tracing import setup_tracing, trace_storage
from fastreg.storage.base import StorageDriver
from fastreg.storage.factory import create_driver
from fastreg.storage.instrumented import instrument

log = logging.getLogger("fastreg.app")
# bearer tokens with many scopes outgrow aiohttp's 8 KiB header field limit; Go's net/http (what
# Distribution runs on) takes 1 MiB of headers. An oversized token is then refused by the access
# check with the OCI body, not by the HTTP parser with a bare 400.
# max_field_size: room for large bearer tokens. max_headers: aiohttp's default of 128 refuses
# clients Go takes (Go has no count, only 1 MiB in all); aiohttp has no limit on the total, so a
# request's headers are bounded by max_headers x max_field_size, held only while they are parsed.
# read_bufsize: how far the socket is read ahead of
# the handler (flow control pauses at twice this, and the kernel's socket buffer lies behind it):
# the upload lanes already hold a few 1 MiB batches, so a larger read-ahead only adds memory per
# upload (1 MiB here cost 2.5 MiB more per S3 upload, for no speed measurable on filesystem).
# auto_decompress off: a request body is stored exactly as sent, whatever its Content-Encoding
# says (as Distribution does): the digest is over the bytes on the wire, and a 20 KB gzip body
# can never become 20 MiB (a decompression bomb) nor a 500 when it does not inflate.
HTTP_PARSER_LIMITS = {
    "max_field_size": 256 * 1024,
    "max_headers": 512,
    "read_bufsize": 256 * 1024,
    "auto_decompress": False,
}


def registry_settings(config: Config) -> RegistrySettings:
    return RegistrySettings(
        delete_enabled=config.storage.delete_enabled,
        readonly=config.storage.readonly,
        schema1_enabled=config.schema1_enabled,
        redirect_disable=config.storage.redirect_disable,
        automount=not config.auth,
        manifest_urls=config.validation,
        redirector=config.redirector,
    )


def caches(config: Config) -> tuple[DescriptorCache | None, TagListCache | None]:
    """The configured blob descriptor and tag-list caches; both share one Redis client."""
    storage = config.storage
    redis = None
    if "redis" in (storage.blobdescriptor_cache, storage.tags_cache):
        redis = RedisDescriptorCache.from_config(config.redis)
    descriptors: DescriptorCache | None = None
    if storage.blobdescriptor_cache == "inmemory":
        descriptors = InMemoryDescriptorCache(storage.blobdescriptor_size)
    elif storage.blobdescriptor_cache == "redis":
        descriptors = redis
    tags: TagListCache | None = None
    if storage.tags_cache == "inmemory":
        tags = InMemoryTagCache(storage.tags_ttl)
    elif storage.tags_cache == "redis" and redis is not None:
        tags = RedisTagCache(redis, storage.tags_ttl, owns=descriptors is not redis)
    return descriptors, tags


def _lease_redis(
    config: Config, storage: StorageDriver, descriptors: DescriptorCache | None
) -> RedisDescriptorCache | None:
    """Redis for upload leases (registry/leases.py) when the driver's own stop at this host and
    `redis.addr` is configured: many hosts over one object store then exclude each other."""
    if storage.leases_span_hosts or not config.redis.configured:
        return None
    if isinstance(descriptors, RedisDescriptorCache):
        return descriptors  # one client for both
    return RedisDescriptorCache.from_config(config.redis)


def _fetch_redis(
    config: Config, descriptors: DescriptorCache | None, lease_redis: RedisDescriptorCache | None
) -> RedisDescriptorCache | None:
    """Redis for a mirror's lock of the blobs it fetches (proxy/flight.py), when `redis.addr`
    is configured: one upstream fetch per blob across workers and hosts."""
    if config.proxy.default is None or not config.redis.configured:
        return None
    if isinstance(descriptors, RedisDescriptorCache):
        return descriptors
    return lease_redis or RedisDescriptorCache.from_config(config.redis)


def http_settings(config: Config) -> HTTPSettings:
    return HTTPSettings(
        host=config.http.host, relativeurls=config.http.relativeurls,
        headers=header_pairs(config.http.headers),
        sendtimeout=config.http.sendtimeout_seconds, readtimeout=config.http.readtimeout_seconds,
        trustedproxies=TrustedProxies(config.http.trustedproxies),
    )


def create_app(config: Config, driver: StorageDriver | None = None) -> web.Application:
    """Build the registry application. ``driver`` overrides the configured one (tests)."""
    app = web.Application(client_max_size=4 * 1024 * 1024, handler_args=HTTP_PARSER_LIMITS)
    setup_tracing(app)  # first: its shutdown, the last cleanup, exports the last spans
    app[METRICS] = Metrics()  # per application, never global
    storage = instrument(
        trace_storage(app, driver or create_driver(config.storage.driver, config.storage.params)),
        app[METRICS],
    )
    descriptors, tags = caches(config)
    lease_redis = _lease_redis(config, storage, descriptors)
    app[REGISTRY] = Registry(
        storage, registry_settings(config), descriptors, tags, lease_redis,
        proxy=config.proxy,
        fetch_redis=_fetch_redis(config, descriptors, lease_redis),
    )
    app[HTTP] = http_settings(config)
    app[REQUEST_IDS] = RequestIds()
    app[SENDER] = Sender(app[HTTP].sendtimeout)
    app.on_response_prepare.append(add_headers)
    app.cleanup_ctx.append(_registry_lifecycle)
    app.cleanup_ctx.append(_return_freed_memory)
    setup_routes(app)
    setup_health(app, config)
    setup_debug_metrics(app)
    setup_auth(app, config)
    setup_notifications(app, config)  # after _registry_lifecycle: it stops before storage closes
    setup_maintenance(app, config)  # upload purging, online GC; also stop before storage closes
    setup_pipeline(app)  # the middlewares, in order (pipeline.py); last: it sees what is configured
    return app


async def _registry_lifecycle(app: web.Application) -> AsyncIterator[None]:
    registry = app[REGISTRY]
    try:
        await registry.driver.healthy()
    except BaseException:
        await registry.close()  # a refused start still releases the driver's connections
        raise
    log.info("storage ready", extra={"driver": registry.driver.name})
    yield
    await registry.close()
    app[SENDER].close()


async def _return_freed_memory(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.ensure_future(return_freed_memory(app[METRICS].upload_activity))
    yield
    task.cancel()
