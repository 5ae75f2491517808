"""The delegation the driver wrappers share: every call of a `StorageDriver` (and of its
writers) passes through one method, `watch`, around the inner driver's call.

The metrics wrapper (`instrumented.py`) times and counts in `watch`, the tracing one
(`traced.py`) opens a span there; neither repeats the protocol's fourteen methods, and a method
added to the protocol is delegated here once. ``op`` is the method's name (`get_content`, ...,
`write`, `commit` and `cancel` for a writer's), ``path`` its path (a move's source), ``detail``
the one argument worth recording: a put's length, a read's offset, a writer's ``append``, a
move's destination. `local_file` and `close` are not watched: neither does I/O worth a figure.
Attributes a driver has beyond the protocol (``root``, ...) are reached through the wrapper.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from typing import Any

from fastreg.storage.base import FileInfo, FileWriter, Lease, StorageDriver

Detail = int | bool | str | None


class WrappedWriter:
    def __init__(self, inner: FileWriter, driver: WrappedDriver, path: str) -> None:
        self.inner = inner
        self.driver = driver
        self.path = path

    @property
    def size(self) -> int:
        return self.inner.size

    async def write(self, data: bytes) -> None:
        with self.driver.watch("write", self.path):
            await self.inner.write(data)

    async def commit(self) -> None:
        with self.driver.watch("commit", self.path):
            await self.inner.commit()

    async def cancel(self) -> None:
        with self.driver.watch("cancel", self.path):
            await self.inner.cancel()

    async def close(self) -> None:
        await self.inner.close()


class WrappedDriver(ABC):
    def __init__(self, inner: StorageDriver) -> None:
        self.inner = inner
        self.name = inner.name
        self.leases_span_hosts = inner.leases_span_hosts

    @abstractmethod
    def watch(self, op: str, path: str, detail: Detail = None) -> AbstractContextManager[object]:
        """What surrounds the inner call; it sees the call's exception, if any."""

    def __getattr__(self, attr: str) -> Any:
        if attr == "inner":  # not set yet (copy, pickle): never recurse
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    async def get_content(self, path: str, limit: int | None = None) -> bytes:
        with self.watch("get_content", path):
            return await self.inner.get_content(path, limit)

    async def put_content(self, path: str, data: bytes) -> None:
        with self.watch("put_content", path, len(data)):
            await self.inner.put_content(path, data)

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        with self.watch("reader", path, offset):
            async for chunk in self.inner.reader(path, offset, length):
                yield chunk

    async def writer(self, path: str, append: bool) -> FileWriter:
        with self.watch("writer", path, append):
            return WrappedWriter(await self.inner.writer(path, append), self, path)

    async def stat(self, path: str) -> FileInfo:
        with self.watch("stat", path):
            return await self.inner.stat(path)

    async def list(self, path: str) -> list[str]:
        with self.watch("list", path):
            return await self.inner.list(path)

    async def move(self, source: str, dest: str) -> None:
        with self.watch("move", source, dest):
            await self.inner.move(source, dest)

    async def publish(self, source: str, dest: str) -> bool:
        with self.watch("publish", source, dest):
            return await self.inner.publish(source, dest)

    async def lease(self, path: str) -> Lease | None:
        with self.watch("lease", path):
            return await self.inner.lease(path)

    async def delete(self, path: str) -> None:
        with self.watch("delete", path):
            await self.inner.delete(path)

    async def url_for(self, path: str, method: str = "GET", expires_in: float = 1200) -> str | None:
        with self.watch("url_for", path):
            return await self.inner.url_for(path, method, expires_in)

    def local_file(self, path: str) -> str | None:
        return self.inner.local_file(path)

    async def healthy(self) -> None:
        with self.watch("healthy", ""):
            await self.inner.healthy()

    async def close(self) -> None:
        await self.inner.close()
