"""The chain every event goes through, as in Distribution's `notifications/endpoint.go`:

    Broadcaster -> per endpoint: Filter -> DurableQueue (bounded, on disk) -> Retrying -> HTTP

Writes into the chain never wait on the network; a push or pull only hands the event over.
Each queue is bounded and counts what it drops. Delivery is sequential per endpoint, so events
reach a listener in the order this process produced them (per repository included).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Protocol

import aiohttp
import orjson

from fastreg.notify.config import EndpointConfig
from fastreg.notify.spool import Position, Spool

log = logging.getLogger("fastreg.notify")

EVENTS_MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"
MEMORY_QUEUE = 10_000  # events accepted but not yet on disk, per endpoint
BATCH_RECORDS = 32  # events per envelope when catching up
BATCH_BYTES = 1024 * 1024
DROP_LOG_EVERY = 60.0

Event = dict[str, Any]


class DeliveryError(Exception):
    pass


class Sink(Protocol):
    async def write(self, events: Sequence[Event]) -> None: ...


@dataclass(slots=True)
class EndpointStats:
    delivered: int = 0
    failures: int = 0  # delivery attempts answered with a failing status
    errors: int = 0  # delivery attempts that got no answer
    # in events, as Distribution's metrics count them (server/metrics.py)
    queued: int = 0
    failed_events: int = 0
    errored_events: int = 0
    filtered: int = 0
    dropped: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    last_error: str = ""


class HTTPSink:
    """One POST of one envelope; reliability is the job of the sinks around it."""

    def __init__(self, config: EndpointConfig, stats: EndpointStats) -> None:
        self.config = config
        self.stats = stats
        self._session: aiohttp.ClientSession | None = None

    async def write(self, events: Sequence[Event]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.timeout), trust_env=False
            )
        headers = [*self.config.headers, ("Content-Type", EVENTS_MEDIA_TYPE)]
        body = orjson.dumps({"events": list(events)}, option=orjson.OPT_INDENT_2)
        try:
            async with self._session.post(
                self.config.url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                await resp.read()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self.stats.errors += 1
            self.stats.errored_events += len(events)
            self.stats.last_error = f"{type(exc).__name__}: {exc}"[:300]
            raise DeliveryError(self.stats.last_error) from exc
        key = f"{status} {_reason(status)}".strip()
        self.stats.statuses[key] = self.stats.statuses.get(key, 0) + 1
        # like Distribution, any 2xx or 3xx means the endpoint took the events
        if not 200 <= status < 400:
            self.stats.failures += 1
            self.stats.failed_events += len(events)
            self.stats.last_error = f"response status {status}"
            raise DeliveryError(self.stats.last_error)
        self.stats.delivered += len(events)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class RetryingSink:
    """Retries until the write succeeds; after ``threshold`` consecutive failures it waits
    ``backoff`` between attempts (go-events' Breaker, as Distribution configures it)."""

    def __init__(self, sink: HTTPSink, threshold: int, backoff: float) -> None:
        self.sink = sink
        self.threshold = threshold
        self.backoff = backoff
        self.consecutive_failures = 0

    async def write(self, events: Sequence[Event]) -> None:
        while True:
            try:
                await self.sink.write(events)
            except DeliveryError as exc:
                self.consecutive_failures += 1
                if self.consecutive_failures == self.threshold:
                    log.warning(
                        "notification endpoint failing, backing off",
                        extra={"endpoint": self.sink.config.name, "error": str(exc),
                               "backoff_s": self.backoff},
                    )
                if self.consecutive_failures >= self.threshold:
                    await asyncio.sleep(self.backoff)
                else:
                    await asyncio.sleep(0)
                continue
            if self.consecutive_failures >= self.threshold:
                log.info("notification endpoint recovered", extra={"endpoint": self.sink.config.name})
            self.consecutive_failures = 0
            return


@dataclass(slots=True)
class _Pending:
    event: Event
    done: asyncio.Future[None] | None


class DurableQueue:
    """A bounded queue kept on disk (`Spool`), drained in order into the retrying sink.

    ``put`` never blocks: the event goes to a bounded in-memory list that a writer task appends
    to the spool in batches (one fsync per batch) on the spool's own thread; ``put`` can hand back
    a future resolved once the event is on disk. A delivery task reads the spool from its cursor,
    writes batches downstream and moves the cursor.
    """

    def __init__(self, name: str, spool: Spool, sink: RetryingSink, stats: EndpointStats) -> None:
        self.name = name
        self.spool = spool
        self.sink = sink
        self.stats = stats
        self._memory: collections.deque[_Pending] = collections.deque()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"spool-{name}"[:15])
        self._written = asyncio.Event()
        self._queued = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._last_drop_log = 0.0
        self._drops_unlogged = 0

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def start(self) -> None:
        await self._run(self.spool.open)
        if self.spool.pending_records:
            log.info(
                "notification spool has undelivered events",
                extra={"endpoint": self.name, "events": self.spool.pending_records,
                       "directory": self.spool.directory},
            )
        self._written.set()
        self._tasks = [
            asyncio.create_task(self._write_loop(), name=f"notify-spool-{self.name}"),
            asyncio.create_task(self._deliver_loop(), name=f"notify-deliver-{self.name}"),
        ]

    def put(self, event: Event, durable: bool = False) -> asyncio.Future[None] | None:
        self.stats.queued += 1
        if self._closed or len(self._memory) >= MEMORY_QUEUE:
            self._dropped(1, "memory queue full" if not self._closed else "closing")
            return None
        done = asyncio.get_running_loop().create_future() if durable else None
        self._memory.append(_Pending(event, done))
        self._queued.set()
        return done

    @property
    def pending(self) -> int:
        return self.spool.pending_records + len(self._memory)

    async def adopt(self, payloads: list[bytes]) -> None:
        """Append events taken over from another worker's spool."""
        accepted = await self._run(self.spool.append, payloads)
        self._dropped(accepted.count(False), "spool full")
        self._written.set()

    async def _write_loop(self) -> None:
        while True:
            await self._queued.wait()
            self._queued.clear()
            while self._memory:
                batch = [self._memory.popleft() for _ in range(min(512, len(self._memory)))]
                await self._write(batch)

    async def _write(self, batch: list[_Pending]) -> None:
        payloads = [orjson.dumps(p.event) for p in batch]
        try:
            accepted: list[bool] = await self._run(self.spool.append, payloads)
        except OSError as exc:
            log.error("notification spool write failed",
                      extra={"endpoint": self.name, "error": str(exc)})
            accepted = [False] * len(batch)
        self._dropped(accepted.count(False), "spool full")
        for pending in batch:
            if pending.done is not None and not pending.done.done():
                pending.done.set_result(None)
        self._written.set()

    async def _deliver_loop(self) -> None:
        while True:
            records, position = await self._run(self.spool.read, BATCH_RECORDS, BATCH_BYTES)
            if not records:
                self._written.clear()
                # a write may have landed between the read and the clear: read once more
                records, position = await self._run(self.spool.read, BATCH_RECORDS, BATCH_BYTES)
                if not records:
                    await self._written.wait()
                    continue
            await self._deliver(records, position)

    async def _deliver(self, records: list[bytes], position: Position) -> None:
        events: list[Event] = []
        for raw in records:
            try:
                events.append(orjson.loads(raw))
            except orjson.JSONDecodeError:
                self._dropped(1, "undecodable record")
        if events:
            await self.sink.write(events)
        await self._run(self.spool.commit, position, len(records))

    def _dropped(self, count: int, reason: str) -> None:
        if count <= 0:
            return
        self.stats.dropped += count
        self._drops_unlogged += count
        now = time.monotonic()
        if now - self._last_drop_log >= DROP_LOG_EVERY:
            log.error(
                "notification events dropped",
                extra={"endpoint": self.name, "dropped": self._drops_unlogged,
                       "dropped_total": self.stats.dropped, "reason": reason},
            )
            self._last_drop_log = now
            self._drops_unlogged = 0

    async def close(self) -> None:
        """Put what is still in memory on disk, stop delivering; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while self._memory:
            await self._write([self._memory.popleft() for _ in range(min(512, len(self._memory)))])
        await self._run(self.spool.close)
        self._pool.shutdown(wait=True)


class Filter:
    """Drops events whose target media type or action the endpoint ignores."""

    def __init__(self, config: EndpointConfig, queue: DurableQueue) -> None:
        self.config = config
        self.queue = queue

    def put(self, event: Event, durable: bool) -> asyncio.Future[None] | None:
        target = event.get("target") or {}
        if (
            target.get("mediaType") in self.config.ignored_mediatypes
            or event.get("action") in self.config.ignored_actions
        ):
            self.queue.stats.filtered += 1
            return None
        return self.queue.put(event, durable)


class Broadcaster:
    """Hands every event to each endpoint's chain."""

    def __init__(self, endpoints: Sequence[Filter]) -> None:
        self.endpoints = tuple(endpoints)

    def put(self, event: Event, durable: bool = False) -> list[asyncio.Future[None]]:
        futures = [e.put(event, durable) for e in self.endpoints]
        return [f for f in futures if f is not None]


def endpoint_dirname(name: str) -> str:
    """A directory name for an endpoint name that may contain anything."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:64]
    return f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def endpoint_chain(config: EndpointConfig, slot_path: str, maxbytes: int) -> Filter:
    stats = EndpointStats()
    spool = Spool(os.path.join(slot_path, endpoint_dirname(config.name)), maxbytes)
    retrying = RetryingSink(HTTPSink(config, stats), config.threshold, config.backoff)
    return Filter(config, DurableQueue(config.name, spool, retrying, stats))
