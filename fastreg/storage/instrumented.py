"""The one wrapper around every driver: times each call and counts failures, by delegation.

`instrument(driver, metrics)` is applied once in `create_app`; drivers stay unaware of metrics.
A missing path is an answer, not a failure, so `PathNotFound` is not counted as an error.
Attributes a driver has beyond the protocol (``root``, ...) are reached through the wrapper.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

from fastreg.storage.base import (
    FileInfo,
    FileWriter,
    Lease,
    PathNotFound,
    StorageDriver,
    StorageError,
)


class Metrics(Protocol):
    """What the wrapper records into: the application's `fastreg.server.metrics.Metrics`
    (declared here, so that storage imports nothing of the server)."""

    def storage_call(self, driver: str, action: str, seconds: float, failed: bool) -> None: ...


class _Timer:
    __slots__ = ("action", "driver", "started")

    def __init__(self, driver: InstrumentedDriver, action: str) -> None:
        self.driver = driver
        self.action = action
        self.started = 0.0

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        failed = isinstance(exc, StorageError) and not isinstance(exc, PathNotFound)
        self.driver.metrics.storage_call(
            self.driver.name, self.action, time.perf_counter() - self.started, failed
        )


class InstrumentedWriter:
    def __init__(self, inner: FileWriter, driver: InstrumentedDriver) -> None:
        self.inner = inner
        self.driver = driver

    @property
    def size(self) -> int:
        return self.inner.size

    async def write(self, data: bytes) -> None:
        with _Timer(self.driver, "write"):
            await self.inner.write(data)

    async def commit(self) -> None:
        with _Timer(self.driver, "commit"):
            await self.inner.commit()

    async def cancel(self) -> None:
        with _Timer(self.driver, "cancel"):
            await self.inner.cancel()

    async def close(self) -> None:
        await self.inner.close()


class InstrumentedDriver:
    def __init__(self, inner: StorageDriver, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics
        self.name = inner.name
        self.leases_span_hosts = inner.leases_span_hosts

    def __getattr__(self, attr: str) -> Any:
        if attr == "inner":  # not set yet (copy, pickle): never recurse
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    async def get_content(self, path: str, limit: int | None = None) -> bytes:
        with _Timer(self, "get_content"):
            return await self.inner.get_content(path, limit)

    async def put_content(self, path: str, data: bytes) -> None:
        with _Timer(self, "put_content"):
            await self.inner.put_content(path, data)

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        with _Timer(self, "reader"):
            async for chunk in self.inner.reader(path, offset, length):
                yield chunk

    async def writer(self, path: str, append: bool) -> FileWriter:
        with _Timer(self, "writer"):
            return InstrumentedWriter(await self.inner.writer(path, append), self)

    async def stat(self, path: str) -> FileInfo:
        with _Timer(self, "stat"):
            return await self.inner.stat(path)

    async def list(self, path: str) -> list[str]:
        with _Timer(self, "list"):
            return await self.inner.list(path)

    async def move(self, source: str, dest: str) -> None:
        with _Timer(self, "move"):
            await self.inner.move(source, dest)

    async def publish(self, source: str, dest: str) -> bool:
        with _Timer(self, "publish"):
            return await self.inner.publish(source, dest)

    async def lease(self, path: str) -> Lease | None:
        with _Timer(self, "lease"):
            return await self.inner.lease(path)

    async def delete(self, path: str) -> None:
        with _Timer(self, "delete"):
            await self.inner.delete(path)

    async def url_for(self, path: str, method: str = "GET", expires_in: float = 1200) -> str | None:
        with _Timer(self, "url_for"):
            return await self.inner.url_for(path, method, expires_in)

    def local_file(self, path: str) -> str | None:
        return self.inner.local_file(path)

    async def healthy(self) -> None:
        with _Timer(self, "healthy"):
            await self.inner.healthy()

    async def close(self) -> None:
        await self.inner.close()


def instrument(driver: StorageDriver, metrics: Metrics) -> StorageDriver:
    """Wrap ``driver`` once (a driver taken from another app is unwrapped first)."""
    if isinstance(driver, InstrumentedDriver):
        driver = driver.inner
    return InstrumentedDriver(driver, metrics)
