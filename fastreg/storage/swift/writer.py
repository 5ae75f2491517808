"""Appending to a Swift file: segments of a Dynamic Large Object, one uploading, one buffering.

A written file is a DLO manifest whose segments are numbered objects (see `driver`). Appending
lists the segments already there and continues the numbering, so an upload resumes on any worker
or after a restart; a plain object (from `put_content`) is first copied to segment 0 of a new
DLO. Every segment is visible as soon as it is stored, so the file on storage is always a whole
number of segments: `close` without `commit` drops only the bytes still buffered. Memory per writer
is bounded by two segments (`chunksize`): the one filling and the one being sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from fastreg.storage.base import PathNotFound, StorageError, take_chunk

if TYPE_CHECKING:
    from fastreg.storage.swift.driver import SwiftDriver


def segment_name(prefix: str, number: int) -> str:
    return f"{prefix}/{number:016d}"


#: How long `commit` waits for a lagging container listing to show the new segments.
LISTING_WAIT = 15.0


class SwiftWriter:
    def __init__(
        self, driver: SwiftDriver, path: str, segments: str, number: int, base: int, exists: bool
    ) -> None:
        self._driver = driver
        self._path = path
        self._segments = segments
        self._next = number  # number of the next segment
        self._base = base  # bytes in stored segments when this writer opened
        self._written = 0
        self._exists = exists  # the manifest is stored
        self._buf = bytearray()
        self._inflight: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    async def open(cls, driver: SwiftDriver, path: str, append: bool) -> SwiftWriter:
        if not append:  # truncate now, as O_TRUNC does: the empty file is visible at once
            try:
                old = driver.segments_of(await driver.head(path))
            except PathNotFound:
                old = None
            segments = driver.new_segments(path)
            await driver.put_manifest(path, segments)
            if old is not None:
                await driver.delete_segments(path, old)
            return cls(driver, path, segments, 1, 0, True)
        try:
            headers = await driver.head(path)
        except PathNotFound:
            return cls(driver, path, driver.new_segments(path), 1, 0, False)
        found = driver.segments_of(headers)
        if found is not None:
            parts = await driver.segments(path, found)
            number = parts[-1][0] + 1 if parts else 1
            return cls(driver, path, found, number, sum(size for _, size in parts), True)
        # a plain object becomes segment 0 of a new DLO; its content does not change
        segments = driver.new_segments(path)
        size = int(headers.get("Content-Length", 0))
        if size:
            copy = {"X-Copy-From": driver.copy_source(driver.key(path))}
            await driver.put(path, segment_name(segments, 0), b"", copy)
        await driver.put_manifest(path, segments)
        return cls(driver, path, segments, 1, size, True)

    @property
    def size(self) -> int:
        return self._base + self._written

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise StorageError("write on a closed writer")
        self._buf += data
        self._written += len(data)
        while (segment := take_chunk(self._buf, self._driver.params.chunksize)) is not None:
            await self._ship(segment)

    async def commit(self) -> None:
        if self._closed:
            raise StorageError("commit on a closed writer")
        if self._buf:
            segment, self._buf = bytes(self._buf), bytearray()
            await self._ship(segment)
        await self._drain()
        if not self._exists:
            await self._driver.put_manifest(self._path, self._segments)
            self._exists = True
        await self._wait_listed()

    async def cancel(self) -> None:
        await self.close()
        try:
            await self._driver.delete(self._path)
        except PathNotFound:
            pass

    async def close(self) -> None:
        """Drop what is still buffered; safe twice."""
        if self._closed:
            return
        self._closed = True
        self._buf = bytearray()
        task, self._inflight = self._inflight, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    # -- internals ----------------------------------------------------------------------------

    async def _ship(self, segment: bytes) -> None:
        """Hand one segment to the uploader, after the one before it has landed."""
        await self._drain()
        if not self._exists:  # the manifest first, so the segments are never unreferenced
            await self._driver.put_manifest(self._path, self._segments)
            self._exists = True
        name = segment_name(self._segments, self._next)
        self._next += 1
        self._inflight = asyncio.ensure_future(self._driver.put(self._path, name, segment))

    async def _drain(self) -> None:
        task, self._inflight = self._inflight, None
        if task is not None:
            await task

    async def _wait_listed(self) -> None:
        """Until the manifest's size (from the container listing) counts every segment."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LISTING_WAIT
        delay = 0.05
        while True:
            headers = await self._driver.head(self._path)
            stored = int(headers.get("Content-Length", 0))
            if stored == self.size:
                return
            if loop.time() + delay > deadline:
                raise StorageError(
                    f"swift: {self._path} lists {stored} bytes, {self.size} written "
                    f"(segments of {self._segments} missing from the container listing)"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
