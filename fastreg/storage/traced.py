"""A span per storage driver call, as Distribution 3's driver base has them (`base/base.go`).

`traced(driver, tracer)` is applied by the application factory only when tracing is configured
(`fastreg.server.tracing`), so this module, and OpenTelemetry with it, is imported only then;
without tracing the driver is not wrapped and a call costs nothing more.

Span names and attributes are Distribution's: the method's Go name (`GetContent`, `PutContent`,
`Reader`, `Writer`, `Stat`, `List`, `Move`, `Delete`, `RedirectURL` for `url_for`), with
`io.cncf.distribution.storage.driver.name` and `.storage.path` (`.source.path` and `.dest.path`
for a move, `.content.length` for a put, `.offset` for a read, `.append` for a writer), so a trace
query written for Distribution finds them. fastreg's own calls are named in the same style:
`Publish` (a move that never replaces, `base.py`), `Lease`, and the writer's `Commit` and
`Cancel` (where an object store completes or aborts its upload); a writer's `write`s are not
spans (one per MiB of a layer). The health check's `healthy` and `close` are not either: they
run outside any request and would only add root spans every few seconds.

A span is started under the current one (the request's server span) but not made current: the
calls nest nothing, and `reader` is a generator whose span stays open across its yields (until
the stream is read or dropped), which a current-span context cannot do safely. A failed call
sets the span's status to ERROR with the exception recorded; `PathNotFound` is an answer, not a
failure (as in the metrics wrapper), and leaves the status unset.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.trace import Span, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

from fastreg.storage.base import FileInfo, FileWriter, Lease, PathNotFound, StorageDriver

PREFIX = "io.cncf.distribution."  # Distribution's `tracing.AttributePrefix`
DRIVER = PREFIX + "storage.driver.name"
PATH = PREFIX + "storage.path"


class TracedWriter:
    def __init__(self, inner: FileWriter, driver: TracedDriver, path: str) -> None:
        self.inner = inner
        self.driver = driver
        self.path = path

    @property
    def size(self) -> int:
        return self.inner.size

    async def write(self, data: bytes) -> None:
        await self.inner.write(data)

    async def commit(self) -> None:
        with self.driver.span("Commit", {PATH: self.path}):
            await self.inner.commit()

    async def cancel(self) -> None:
        with self.driver.span("Cancel", {PATH: self.path}):
            await self.inner.cancel()

    async def close(self) -> None:
        await self.inner.close()


class TracedDriver:
    def __init__(self, inner: StorageDriver, tracer: Tracer) -> None:
        self.inner = inner
        self.tracer = tracer
        self.name = inner.name
        self.leases_span_hosts = inner.leases_span_hosts

    def __getattr__(self, attr: str) -> Any:
        if attr == "inner":  # not set yet (copy, pickle): never recurse
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    @contextmanager
    def span(self, name: str, attributes: dict[str, AttributeValue]) -> Iterator[Span]:
        attributes[DRIVER] = self.name
        span = self.tracer.start_span(name, attributes=attributes)
        try:
            yield span
        except PathNotFound:
            raise
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            span.end()

    async def get_content(self, path: str, limit: int | None = None) -> bytes:
        with self.span("GetContent", {PATH: path}):
            return await self.inner.get_content(path, limit)

    async def put_content(self, path: str, data: bytes) -> None:
        with self.span("PutContent", {PATH: path, PREFIX + "storage.content.length": len(data)}):
            await self.inner.put_content(path, data)

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        with self.span("Reader", {PATH: path, PREFIX + "storage.offset": offset}):
            async for chunk in self.inner.reader(path, offset, length):
                yield chunk

    async def writer(self, path: str, append: bool) -> FileWriter:
        with self.span("Writer", {PATH: path, PREFIX + "storage.append": append}):
            return TracedWriter(await self.inner.writer(path, append), self, path)

    async def stat(self, path: str) -> FileInfo:
        with self.span("Stat", {PATH: path}):
            return await self.inner.stat(path)

    async def list(self, path: str) -> list[str]:
        with self.span("List", {PATH: path}):
            return await self.inner.list(path)

    async def move(self, source: str, dest: str) -> None:
        with self.span("Move", _moving(source, dest)):
            await self.inner.move(source, dest)

    async def publish(self, source: str, dest: str) -> bool:
        with self.span("Publish", _moving(source, dest)):
            return await self.inner.publish(source, dest)

    async def lease(self, path: str) -> Lease | None:
        with self.span("Lease", {PATH: path}):
            return await self.inner.lease(path)

    async def delete(self, path: str) -> None:
        with self.span("Delete", {PATH: path}):
            await self.inner.delete(path)

    async def url_for(self, path: str, method: str = "GET", expires_in: float = 1200) -> str | None:
        with self.span("RedirectURL", {PATH: path}):
            return await self.inner.url_for(path, method, expires_in)

    def local_file(self, path: str) -> str | None:
        return self.inner.local_file(path)

    async def healthy(self) -> None:
        await self.inner.healthy()

    async def close(self) -> None:
        await self.inner.close()


def _moving(source: str, dest: str) -> dict[str, AttributeValue]:
    return {PREFIX + "storage.source.path": source, PREFIX + "storage.dest.path": dest}


def traced(driver: StorageDriver, tracer: Tracer) -> StorageDriver:
    """Wrap ``driver`` once (a driver taken from another app is unwrapped first)."""
    if isinstance(driver, TracedDriver):
        driver = driver.inner
    return TracedDriver(driver, tracer)
