"""Notifications plugged into the application: the middleware that turns finished requests into
events, and the lifecycle of the endpoint chains, the spool slot and the adoption of orphans.

`setup_notifications(app, config)` is all the app factory calls. With no enabled endpoint it
configures nothing, and the pipeline (`fastreg.server.pipeline`) leaves `notify` out. The
middleware sits innermost, so it sees only what a handler returned: failures raise and produce
no event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from fastreg.api.context import REGISTRY, REQUEST_ID
from fastreg.config import Config, ConfigError
from fastreg.notify.config import NotifyConfig
from fastreg.notify.events import Bridge, Draft, derive
from fastreg.notify.sinks import Broadcaster, Filter, endpoint_chain, endpoint_dirname
from fastreg.notify.spool import Slot, Spool, other_slots

log = logging.getLogger("fastreg.notify")

DURABLE_WAIT = 2.0  # a push waits at most this long for its event to be on disk
ADOPT_INTERVAL = 30.0
MAX_BACKGROUND = 1000  # pull events being completed in the background


class Notifier:
    def __init__(self, config: NotifyConfig, bridge: Bridge) -> None:
        self.config = config
        self.bridge = bridge
        self.slot: Slot | None = None
        self.chains: list[Filter] = []
        self.broadcaster = Broadcaster(())
        self._background: set[asyncio.Task[None]] = set()
        self.dropped_background = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        base = self.config.spool.directory
        self.slot = await loop.run_in_executor(None, Slot.acquire, base)
        self.chains = [
            endpoint_chain(e, self.slot.path, self.config.spool.maxbytes)
            for e in self.config.endpoints
        ]
        for chain in self.chains:
            await chain.queue.start()
        self.broadcaster = Broadcaster(self.chains)
        log.info("notifications ready", extra={
            "endpoints": [e.name for e in self.config.endpoints], "spool": self.slot.path})

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for chain in self.chains:
            await chain.queue.close()
            await chain.queue.sink.sink.close()
        if self.slot is not None:
            self.slot.release()
            self.slot = None

    async def publish(self, request: web.Request, drafts: list[Draft], durable: bool) -> None:
        """Queue the events of a request; a failure here is logged, never the client's error."""
        futures: list[asyncio.Future[None]] = []
        for draft in drafts:
            try:
                complete = await self.bridge.complete(draft)
            except Exception as exc:  # noqa: BLE001 - storage hiccup: send what the response said
                log.warning("could not complete notification event",
                            extra={"http.request.id": request.get(REQUEST_ID), "error": str(exc)})
                complete = draft
            futures += self.broadcaster.put(self.bridge.event(request, complete), durable)
        if futures:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DURABLE_WAIT):  # not wait_for: it may swallow a cancel
                    await asyncio.gather(*futures)

    def publish_later(self, request: web.Request, drafts: list[Draft]) -> None:
        if not any(self.bridge.needs_lookup(d) for d in drafts):
            for draft in drafts:  # nothing to look up: straight into the queues
                self.broadcaster.put(self.bridge.event(request, draft))
            return
        if len(self._background) >= MAX_BACKGROUND:
            self.dropped_background += len(drafts)
            return
        task = asyncio.create_task(self.publish(request, drafts, durable=False))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def adopt_orphans(self) -> None:
        """Move events of slots no live process holds (fewer workers than before) into ours."""
        if self.slot is None:
            return
        loop = asyncio.get_running_loop()
        base = self.config.spool.directory
        for path in await loop.run_in_executor(None, other_slots, base, self.slot.path):
            orphan = await loop.run_in_executor(None, Slot.try_lock, path)
            if orphan is None:
                continue
            try:
                for chain in self.chains:
                    directory = os.path.join(path, endpoint_dirname(chain.config.name))
                    if os.path.isdir(directory):
                        await self._adopt(directory, chain)
            finally:
                orphan.release()

    async def _adopt(self, directory: str, chain: Filter) -> None:
        loop = asyncio.get_running_loop()
        spool = Spool(directory, 1 << 62)
        await loop.run_in_executor(None, spool.open)
        adopted = 0
        try:
            while True:
                records, position = await loop.run_in_executor(None, spool.read, 1024, 8 << 20)
                if not records:
                    break
                await chain.queue.adopt(records)  # on our disk first, then forgotten there
                await loop.run_in_executor(None, spool.commit, position, len(records))
                adopted += len(records)
        finally:
            await loop.run_in_executor(None, spool.close)
        if adopted:
            log.info("adopted undelivered notification events",
                     extra={"endpoint": chain.config.name, "events": adopted, "from": directory})

    def stats(self) -> dict[str, Any]:
        endpoints = {}
        for chain in self.chains:
            queue = chain.queue
            s = queue.stats
            endpoints[chain.config.name] = {
                "url": chain.config.url,
                "pending": queue.pending,
                "spooled_bytes": queue.spool.pending_bytes,
                "delivered": s.delivered,
                "dropped": s.dropped,
                "filtered": s.filtered,
                "failures": s.failures,
                "errors": s.errors,
                "statuses": dict(s.statuses),
                "last_error": s.last_error,
            }
        return {
            "spool": self.slot.path if self.slot is not None else None,
            "dropped_background": self.dropped_background,
            "endpoints": endpoints,
        }


NOTIFIER: web.AppKey[Notifier] = web.AppKey("notifier", Notifier)


@web.middleware
async def notify(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    drafts = derive(request, response)
    if drafts:
        notifier = request.app[NOTIFIER]
        if drafts[0].action == "pull":
            notifier.publish_later(request, drafts)
        else:
            # a client told "201 Created" can count on the event having reached the disk
            await notifier.publish(request, drafts, durable=True)
    return response


def setup_notifications(app: web.Application, config: Config) -> None:
    """When an endpoint is enabled, configure the notifier (the pipeline then includes `notify`);
    `notifications` was parsed at load."""
    settings = config.notifications
    if not settings.endpoints:
        return
    try:
        port: int | None = config.http.host_port()[1]
    except ConfigError:
        port = None
    app[NOTIFIER] = Notifier(settings, Bridge(app[REGISTRY], port, settings.include_references))
    app.cleanup_ctx.append(_lifecycle)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    notifier = app[NOTIFIER]
    await notifier.start()
    adopter = asyncio.create_task(_adopt_forever(notifier))
    try:
        yield
    finally:
        adopter.cancel()
        await asyncio.gather(adopter, return_exceptions=True)
        await notifier.close()


async def _adopt_forever(notifier: Notifier) -> None:
    while True:
        try:
            await notifier.adopt_orphans()
        except OSError as exc:
            log.warning("adopting orphaned notification spools failed", extra={"error": str(exc)})
        await asyncio.sleep(ADOPT_INTERVAL)
