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

from fastreg.storage.base import PathNotFound, StorageError
from fastreg.storage.chunked import FixedChunkWriter
from fastreg.storage.swift.objects import SwiftObjects, segment_name

#: How long `commit` waits for a lagging container listing to show the new segments.
LISTING_WAIT = 15.0


class SwiftWriter(FixedChunkWriter):
    def __init__(
        self, objects: SwiftObjects, path: str, segments: str, number: int, base: int, exists: bool
    ) -> None:
        super().__init__(path, base, objects.params.chunksize)
        self._objects = objects
        self._key = objects.key(path)
        self._segments = segments
        self._next = number  # number of the next segment
        self._exists = exists  # the manifest is stored

    @classmethod
    async def open(cls, objects: SwiftObjects, path: str, append: bool) -> SwiftWriter:
        key = objects.key(path)
        info = await objects.head(path, key)
        if not append:  # truncate now, as O_TRUNC does: the empty file is visible at once
            old = objects.segments_of(info)
            segments = objects.new_segments(path)
            await objects.put_manifest(path, key, segments)
            if old is not None:
                await objects.delete_segments(path, old)
            return cls(objects, path, segments, 1, 0, True)
        if info is None:
            return cls(objects, path, objects.new_segments(path), 1, 0, False)
        found = objects.segments_of(info)
        if found is not None:
            parts = await objects.segments(path, found)
            number = parts[-1][0] + 1 if parts else 1
            return cls(objects, path, found, number, sum(size for _, size in parts), True)
        # a plain object becomes segment 0 of a new DLO; its content does not change
        segments = objects.new_segments(path)
        if info.size:
            await objects.copy(path, key, segment_name(segments, 0))
        await objects.put_manifest(path, key, segments)
        return cls(objects, path, segments, 1, info.size, True)

    async def _commit(self) -> None:
        if self._buf:
            await self._ship(self._take_rest())
        await self._drain()
        if not self._exists:
            await self._objects.put_manifest(self._path, self._key, self._segments)
            self._exists = True
        await self._wait_listed()

    async def _remove(self) -> None:
        info = await self._objects.head(self._path, self._key)
        if info is None:
            raise PathNotFound(self._path)
        await self._objects.delete(self._path, self._key)
        segments = self._objects.segments_of(info)
        if segments is not None:
            await self._objects.delete_segments(self._path, segments)

    # -- internals ----------------------------------------------------------------------------

    async def _ship(self, segment: bytes) -> None:
        """Hand one segment to the uploader, after the one before it has landed."""
        await self._drain()
        if not self._exists:  # the manifest first, so the segments are never unreferenced
            await self._objects.put_manifest(self._path, self._key, self._segments)
            self._exists = True
        name = segment_name(self._segments, self._next)
        self._next += 1
        await self._send(lambda: self._objects.put(self._path, name, segment))

    async def _wait_listed(self) -> None:
        """Until the manifest's size (from the container listing) counts every segment."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LISTING_WAIT
        delay = 0.05
        while True:
            info = await self._objects.head(self._path, self._key)
            if info is None:
                raise PathNotFound(self._path)
            stored = info.size
            if stored == self.size:
                return
            if loop.time() + delay > deadline:
                raise StorageError(
                    f"swift: {self._path} lists {stored} bytes, {self.size} written "
                    f"(segments of {self._segments} missing from the container listing)"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
