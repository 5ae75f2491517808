"""Background maintenance of a running server: upload purging, online garbage collection, and
a mirror's cache expiry.

`setup_maintenance(app, config)` adds one `cleanup_ctx` hook that starts a task per enabled job
and cancels them on shutdown. All are off in read-only mode (Distribution turns purging off
there too). Cache expiry (`registry/proxy/expiry.py`) runs on a pull-through cache whose
upstreams keep content for a `ttl`: a sweep every `Expiry.interval`, and after any sweep that
removed manifests an online collection (with `storage.maintenance.gc`'s `delay` and `dryrun`,
whether or not periodic collections are enabled: a ttl is there to free the space) until one
has run; a collection another worker holds is tried again after the next sweep. Upload purging starts after a random delay of up to an hour, as in Distribution, so
that workers and replicas restarted together do not all walk the storage at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from fastreg.api.context import REGISTRY
from fastreg.config import Config
from fastreg.registry.gc import GCError, GCOptions, collect
from fastreg.registry.gc.settings import OnlineGCSettings
from fastreg.registry.proxy.expiry import Expiry
from fastreg.registry.purge import PurgeSettings, purge_uploads
from fastreg.storage.base import StorageDriver, StorageError

log = logging.getLogger("fastreg.maintenance")

PURGE_JITTER = 3600.0


def setup_maintenance(app: web.Application, config: Config, jitter: float = PURGE_JITTER) -> None:
    purge, gc = config.storage.purge, config.storage.gc  # both off in read-only mode

    async def run(app: web.Application) -> AsyncIterator[None]:
        driver = app[REGISTRY].driver
        tasks: list[asyncio.Task[None]] = []
        if purge.enabled:
            tasks.append(
                asyncio.create_task(
                    _every(
                        random.uniform(0, jitter),
                        purge.interval,
                        lambda: _purge(driver, purge),
                        "purge",
                    )
                )
            )
        if gc.enabled:
            tasks.append(
                asyncio.create_task(
                    _every(gc.interval, gc.interval, lambda: _collect(driver, gc), "gc")
                )
            )
        expiry = app[REGISTRY].expiry
        if expiry.enabled and not config.storage.readonly:
            job = _Expire(expiry, driver, gc)
            first = random.uniform(0, expiry.interval)
            tasks.append(asyncio.create_task(_every(first, expiry.interval, job.run, "expiry")))
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.cleanup_ctx.append(run)


async def _every(
    first: float, interval: float, job: Callable[[], Awaitable[None]], name: str
) -> None:
    await asyncio.sleep(first)
    while True:
        try:
            await job()
        except (GCError, StorageError) as exc:  # the next round may fare better
            log.warning(f"{name} failed", extra={"error": str(exc)})
        await asyncio.sleep(interval)


async def _purge(driver: StorageDriver, settings: PurgeSettings) -> None:
    await purge_uploads(driver, time.time() - settings.age, settings.dryrun)


async def _collect(driver: StorageDriver, settings: OnlineGCSettings) -> None:
    options = GCOptions(dry_run=settings.dryrun, delay=settings.delay, verbose=False)
    report = await collect(driver, options)
    log.info(
        "garbage collection done",
        extra={
            "summary": report.summary(options),
            "blobs_deleted": report.blobs_deleted,
            "bytes_freed": report.bytes_freed,
            "restored": report.restored,
        },
    )


@dataclass(slots=True)
class _Expire:
    """One sweep, then a collection while expired manifests may have left blobs behind."""

    expiry: Expiry
    driver: StorageDriver
    gc: OnlineGCSettings
    pending: bool = False  # a sweep removed something and no collection has run since

    async def run(self) -> None:
        report = await self.expiry.sweep()
        if report is not None and report.expired:
            log.info("cache expiry done", extra={"expired": report.expired,
                                                 "repositories": report.repositories})
            self.pending = True
        if self.pending:
            await _collect(self.driver, self.gc)  # GCBusy: pending, the next round tries again
            self.pending = False
