"""Upload sessions: state on storage, bytes streamed through an incremental hash.

A session is `_uploads/<uuid>/{data,startedat}` on storage, so a PATCH may land on another worker
or after a restart. The live hasher is kept in memory keyed by upload id and valid only while its
offset equals the stored size; when it is missing or stale the stored bytes are hashed again
(what Distribution does), so correctness never depends on which process saw the earlier chunks.

Bytes flow request -> batches of BATCH bytes -> (hash on a thread || write on the driver), with the
next batch read from the socket while the previous one is hashed and written: memory is bounded by
a few batches per upload, and a slow disk slows the client (backpressure). A PATCH is answered when
its bytes are written; their hashing may finish while the next PATCH arrives (see hashlane.py).

What a commit checked never changes (issue 12). Each request that writes or commits holds the
upload's lease for its whole duration (leases.py: one request at a time per upload, across
workers and hosts; a second one is refused at once, never queued), so the bytes a PUT hashes and
publishes cannot be added to by a PATCH elsewhere. That is also why the live hasher may be
trusted when its offset equals the stored size: writes are serial, and a write by another
worker changes the size. A commit ``publish``es the data, which never replaces a blob that
exists (its bytes were checked when it was committed; the upload's copy is dropped). A cancel
takes no lease and answers at once; a PATCH in flight on the upload then fails with
BLOB_UPLOAD_UNKNOWN: at once in this process (leases.Hold), and on another worker when its
write ends, finding `startedat` gone, after deleting what it wrote. The cancel deletes
`startedat` before the rest, so a writer that still finds it afterwards wrote before the rest
was listed for deletion, and nothing it wrote is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from fastreg.registry import layout
from fastreg.registry.blobs import BlobInfo, BlobStore
from fastreg.registry.digests import SUPPORTED_ALGORITHMS, Digest, new_hasher
from fastreg.registry.errors import ErrorCode, RegistryError
from fastreg.registry.hashlane import HashLane
from fastreg.registry.leases import Hold, RedisCommands, UploadLeases, unknown
from fastreg.storage.base import FileWriter, PathNotFound, StorageDriver, StorageError

BATCH = 1024 * 1024
DEPTH = 2  # batches waiting per lane (hash, write): the read-ahead of one upload
MAX_LIVE_HASHERS = 4096
_UPLOAD_ID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True, slots=True)
class UploadStatus:
    """What a client is told of its upload session: ``offset`` bytes are stored, so its
    ``Range`` is ``0-(offset-1)`` and the next chunk must start at ``offset``."""

    name: str
    upload_id: str
    offset: int


class Progress(Protocol):
    """Told of an upload's bytes as they reach storage, and of its digest check passing: a
    mirror's clients read the data file as it grows (proxy/flight.py)."""

    #: seconds a batch may wait for more bytes before it is written (None: until BATCH)
    flush: float | None

    def written(self, size: int) -> None: ...

    def verified(self) -> None: ...


@dataclass(slots=True)
class _LiveHash:
    """The digest of an upload's first ``offset`` bytes, some of them perhaps still hashing."""

    lane: HashLane
    offset: int


def check_upload_id(upload_id: str) -> str:
    if not _UPLOAD_ID_RE.fullmatch(upload_id):
        raise RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN, detail={"uuid": upload_id[:100]})
    return upload_id


async def batched(
    body: AsyncIterator[bytes], size: int = BATCH, flush: float | None = None
) -> AsyncIterator[bytes]:
    """Regroup arbitrary socket chunks into ~size byte batches (fewer thread hops, big hashes).
    ``flush``: a batch also ends once its first chunk waited that many seconds (a mirror's slow
    upstream: its bytes still reach the clients soon, proxy/flight.py)."""
    parts: list[bytes] = []
    held, since = 0, 0.0
    async for chunk in body:
        if not chunk:
            continue
        if flush is not None and not parts:
            since = time.monotonic()
        parts.append(chunk)
        held += len(chunk)
        if held >= size or (flush is not None and time.monotonic() - since >= flush):
            yield parts[0] if len(parts) == 1 else b"".join(parts)
            parts, held = [], 0
    if parts:
        yield parts[0] if len(parts) == 1 else b"".join(parts)


class UploadService:
    def __init__(
        self, driver: StorageDriver, blobs: BlobStore, redis: RedisCommands | None = None
    ) -> None:
        """``redis``: where leases live when the driver's own stop at this host (`redis:`)."""
        self.driver = driver
        self.blobs = blobs
        self._live: OrderedDict[str, _LiveHash] = OrderedDict()
        self.leases = UploadLeases(driver, redis)

    async def start(self, name: str, algorithm: str = "sha256") -> UploadStatus:
        if algorithm not in SUPPORTED_ALGORITHMS:
            raise RegistryError(
                ErrorCode.DIGEST_INVALID, "unsupported digest algorithm", {"algorithm": algorithm[:100]}
            )
        upload_id = str(uuid.uuid4())
        started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        await self.driver.put_content(layout.upload_startedat(name, upload_id), started.encode())
        writer = await self.driver.writer(layout.upload_data(name, upload_id), append=False)
        await writer.close()
        self._remember(upload_id, _LiveHash(HashLane(new_hasher(algorithm), DEPTH), 0))
        return UploadStatus(name, upload_id, 0)

    async def status(self, name: str, upload_id: str) -> UploadStatus:
        check_upload_id(upload_id)
        try:
            # both at once: each is a storage round trip (a thread hop, or an HTTP request)
            _, info = await asyncio.gather(
                self.driver.stat(layout.upload_startedat(name, upload_id)),
                self.driver.stat(layout.upload_data(name, upload_id)),
            )
        except PathNotFound:
            raise RegistryError(
                ErrorCode.BLOB_UPLOAD_UNKNOWN, detail={"uuid": upload_id}
            ) from None
        return UploadStatus(name, upload_id, info.size)

    async def append(
        self,
        name: str,
        upload_id: str,
        body: AsyncIterator[bytes],
        start: int | None = None,
        length: int | None = None,
        progress: Progress | None = None,
    ) -> UploadStatus:
        """Add a chunk. ``start`` (from Content-Range) must equal the current offset."""
        async with self._hold(name, upload_id) as hold:
            status = await self.status(name, upload_id)
            self._check_range(status.offset, start)
            try:
                offset = await self._write(name, upload_id, body, status.offset, hold, progress)
            except StorageError:
                await self._check_alive(name, upload_id)  # a cancel elsewhere may be the cause
                raise
            await self._check_alive(name, upload_id)
            if length is not None and offset - status.offset != length:
                raise RegistryError(
                    ErrorCode.SIZE_INVALID,
                    detail={"expected": length, "received": offset - status.offset},
                )
            return UploadStatus(name, upload_id, offset)

    async def finish(
        self,
        name: str,
        upload_id: str,
        digest: Digest,
        body: AsyncIterator[bytes] | None = None,
        start: int | None = None,
        progress: Progress | None = None,
    ) -> BlobInfo:
        """Append a last chunk, verify the digest, and make the blob visible atomically."""
        async with self._hold(name, upload_id) as hold:
            status = await self.status(name, upload_id)
            offset = status.offset
            if body is not None:
                self._check_range(offset, start)
                offset = await self._write(name, upload_id, body, offset, hold)
            actual = await self._digest(name, upload_id, digest.algorithm, offset)
            if actual != digest:
                await self._discard(name, upload_id)
                raise RegistryError(
                    ErrorCode.DIGEST_INVALID, detail={"expected": str(digest), "actual": str(actual)}
                )
            if progress is not None:
                progress.verified()
            hold.check()
            await self._commit(name, upload_id, BlobInfo(digest, offset))
            return BlobInfo(digest, offset)

    async def cancel(self, name: str, upload_id: str) -> None:
        """Delete the upload at once, without its lease (a request in flight fails instead)."""
        check_upload_id(upload_id)
        self.leases.cancel(upload_id)
        self._forget(upload_id)
        try:
            # `startedat` first: see the module's docstring
            await self.driver.delete(layout.upload_startedat(name, upload_id))
        except PathNotFound:
            raise unknown(upload_id) from None
        await self._discard(name, upload_id)

    # -- internals -------------------------------------------------------------------------

    def _hold(self, name: str, upload_id: str) -> contextlib.AbstractAsyncContextManager[Hold]:
        check_upload_id(upload_id)
        return self.leases.hold(upload_id, layout.upload_startedat(name, upload_id))

    async def _check_alive(self, name: str, upload_id: str) -> None:
        """After a write: when the upload was cancelled meanwhile (on another worker), delete
        what the write left and answer BLOB_UPLOAD_UNKNOWN."""
        try:
            await self.driver.stat(layout.upload_startedat(name, upload_id))
        except PathNotFound:
            await self._discard(name, upload_id)
            raise unknown(upload_id) from None

    def _remember(self, upload_id: str, live: _LiveHash) -> None:
        self._live[upload_id] = live
        self._live.move_to_end(upload_id)
        while len(self._live) > MAX_LIVE_HASHERS:
            self._live.popitem(last=False)

    def _forget(self, upload_id: str) -> None:
        self._live.pop(upload_id, None)

    @staticmethod
    def _check_range(offset: int, start: int | None) -> None:
        if start is not None and start != offset:
            raise RegistryError(
                ErrorCode.RANGE_INVALID, detail={"offset": offset, "start": start}
            )

    async def _live_hash(self, name: str, upload_id: str, algorithm: str, offset: int) -> _LiveHash:
        live = self._live.get(upload_id)
        if live is None or live.offset != offset or live.lane.algorithm != algorithm:
            hasher = await self._rehash(name, upload_id, algorithm, offset)
            live = _LiveHash(HashLane(hasher, DEPTH), offset)
        self._remember(upload_id, live)
        return live

    async def _rehash(self, name: str, upload_id: str, algorithm: str, offset: int) -> Any:
        hasher = new_hasher(algorithm)
        loop = asyncio.get_running_loop()
        if offset:
            reader = self.driver.reader(layout.upload_data(name, upload_id), 0, offset)
            async for chunk in batched(reader):
                await loop.run_in_executor(None, hasher.update, chunk)
        return hasher

    async def _write(
        self,
        name: str,
        upload_id: str,
        body: AsyncIterator[bytes],
        offset: int,
        hold: Hold,
        progress: Progress | None = None,
    ) -> int:
        live = await self._live_hash(name, upload_id, self._algorithm_of(upload_id), offset)
        self._live.pop(upload_id, None)  # invalid until the write completes
        try:
            writer = await self.driver.writer(layout.upload_data(name, upload_id), append=True)
        except PathNotFound:
            raise unknown(upload_id) from None
        try:
            with hold.interruptible():
                await _ingest(writer, live.lane, body, progress)
            await writer.commit()
            live.offset = writer.size
        except PathNotFound:
            # the file was moved or deleted under the writer (drivers check before each write)
            raise unknown(upload_id) from None
        finally:
            await writer.close()
        self._remember(upload_id, live)
        return live.offset

    def _algorithm_of(self, upload_id: str) -> str:
        live = self._live.get(upload_id)
        return live.lane.algorithm if live is not None else "sha256"

    async def _digest(self, name: str, upload_id: str, algorithm: str, offset: int) -> Digest:
        live = await self._live_hash(name, upload_id, algorithm, offset)
        hasher = await live.lane.settle()
        return Digest(algorithm, hasher.copy().hexdigest())

    async def _commit(self, name: str, upload_id: str, blob: BlobInfo) -> None:
        digest = blob.digest
        if await self.blobs.cache.get(digest) is None:
            # Not known to be stored: publish, which moves the data in unless a blob is there
            # (then its bytes, checked when it was committed, stay, and the upload's go). A
            # blob being read (sendfile, a presigned URL) is never replaced.
            try:
                await self.driver.publish(
                    layout.upload_data(name, upload_id), layout.blob_data(digest)
                )
            except PathNotFound:
                raise unknown(upload_id) from None  # cancelled meanwhile
            await self.blobs.cache.put(blob)
        await self.blobs.link(name, digest)
        await self._discard(name, upload_id)

    async def _discard(self, name: str, upload_id: str) -> None:
        self._forget(upload_id)
        try:
            await self.driver.delete(layout.upload_dir(name, upload_id))
        except PathNotFound:
            pass


async def _ingest(
    writer: FileWriter, hashing: HashLane, body: AsyncIterator[bytes], progress: Progress | None = None
) -> None:
    """Hash and write the body on two independent lanes while it is read from the client.

    Each lane keeps the batches in order, and neither waits for the other: the next batch is
    hashed while the previous one is still being written. Each lane holds at most DEPTH batches,
    so a slow disk (or hash) slows the reading of the request: backpressure, bounded memory.
    Returns when every batch is written; the hash lane may still be finishing its last ones.
    Neither loop keeps a batch it has handed on (``del batch``): a body that stalls then holds
    only the batch being gathered, at most BATCH (measured with 200 PATCHes stalled after
    1.5 MiB: 415 KiB each, 1,600 KiB while both loops still held the last 1 MiB batch).
    """
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(DEPTH)

    async def write_lane() -> None:
        while (batch := await queue.get()) is not None:
            await writer.write(batch)
            del batch
            if progress is not None:
                progress.written(writer.size)

    workers = [asyncio.ensure_future(write_lane())]
    try:
        async for batch in batched(body, flush=None if progress is None else progress.flush):
            await hashing.feed(batch)
            await _feed(queue, batch, workers)
            del batch
        await _feed(queue, None, workers)
        await workers[0]
    finally:
        if not workers[0].done():
            # never abandon the lane mid-operation: a write still running on a thread must end
            # before the caller closes the file. Drop what waits, and let the lane stop.
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(None)
            await asyncio.wait(workers)


async def _feed(
    queue: asyncio.Queue[bytes | None], item: bytes | None, workers: Sequence[asyncio.Future[None]]
) -> None:
    """Put ``item`` on a lane, or raise the failure of a lane that stopped meanwhile."""
    if not queue.full():
        queue.put_nowait(item)
        return
    put = asyncio.ensure_future(queue.put(item))
    pending: set[asyncio.Future[None]] = {put, *workers}
    try:
        while not put.done():
            # a lane that ends (its None taken) is no failure: wait on until the put lands
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            failed = [w for w in done if w is not put and (w.cancelled() or w.exception())]
            if failed:
                await failed[0]  # raises the lane's error
    finally:
        put.cancel()  # a no-op once it landed; else (a failed lane, a cancel) none is left behind
