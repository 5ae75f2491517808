"""The writer template of the object stores (azure, gcs, swift, s3): client bytes buffered into
chunks, one in flight.

No object store appends, so every backend's writer cuts what it is given into chunks (a block, a
part, a segment) of ``chunksize`` bytes and sends each while the next fills: memory stays near
two chunks per writer and the store is kept busy. What a chunk becomes, and what ``commit`` makes
of the chunks sent, is the backend's own (its ``writer`` module); this template owns the buffer,
the size (bytes stored when the writer opened, ``base``, plus those written since), the one task
in flight, and close and cancel, safe twice.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from fastreg.storage.base import PathNotFound, StorageError, take_chunk


class ChunkedWriter(abc.ABC):
    """The template; a backend fills in ``_push`` (or takes ``FixedChunkWriter``'s), ``_commit``
    and ``_remove``, and may hook ``_prepare`` and ``_abandon``."""

    def __init__(self, path: str, base: int, chunksize: int) -> None:
        self._path = path
        self._base = base  # bytes stored when this writer opened (or last committed)
        self._written = 0
        self._chunksize = chunksize
        self._buf = bytearray()
        self._inflight: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def size(self) -> int:
        return self._base + self._written

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise StorageError("write on a closed writer")
        if not data:
            return
        await self._prepare()
        self._written += len(data)
        await self._push(data)

    async def commit(self) -> None:
        if self._closed:
            raise StorageError("commit on a closed writer")
        await self._commit()

    async def cancel(self) -> None:
        await self.close()
        with contextlib.suppress(PathNotFound):
            await self._remove()

    async def close(self) -> None:
        """Drop what was not committed; safe twice."""
        if self._closed:
            return
        self._closed = True
        self._buf = bytearray()
        task, self._inflight = self._inflight, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await self._abandon()

    # -- for the backend's writer -----------------------------------------------------------

    @abc.abstractmethod
    async def _push(self, data: bytes) -> None:
        """Take ``data`` (already counted in ``size``) towards the store."""

    def _take_rest(self) -> bytes:
        """What is buffered, less than a chunk, for the last send of a commit."""
        rest, self._buf = bytes(self._buf), bytearray()
        return rest

    async def _send(self, send: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Start ``send()`` once the chunk before it has landed."""
        await self._drain()
        self._inflight = asyncio.ensure_future(send())

    async def _drain(self) -> None:
        """Wait for the chunk in flight; its failure is raised here."""
        task, self._inflight = self._inflight, None
        if task is not None:
            await task

    async def _prepare(self) -> None:
        """Before the bytes of each ``write`` are counted and pushed (the first of a session
        decides where they go)."""

    @abc.abstractmethod
    async def _commit(self) -> None:
        """Make what was written the file (``commit``)."""

    @abc.abstractmethod
    async def _remove(self) -> None:
        """Delete the file (``cancel``)."""

    async def _abandon(self) -> None:
        """After close: give up what the store holds of an uncommitted session."""


class FixedChunkWriter(ChunkedWriter):
    """Chunks of exactly ``chunksize`` bytes cut from the template's buffer (azure's blocks,
    gcs's resumable pieces, swift's segments); S3, whose parts grow, pushes its own way."""

    async def _push(self, data: bytes) -> None:
        """Buffer ``data`` and ship every whole chunk."""
        self._buf += data
        while (chunk := take_chunk(self._buf, self._chunksize)) is not None:
            await self._ship(chunk)

    @abc.abstractmethod
    async def _ship(self, chunk: bytes) -> None:
        """Send one whole chunk (usually through ``_send``)."""
