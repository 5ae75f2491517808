"""One upstream fetch of a cold blob, streamed to every client as its bytes arrive.

The spool. The fetch writes the upstream's bytes into a `Spool`, a file on this host's disk
(bounded by disk, not memory), hashed as it is written. Every client of the blob in this
process, the one whose pull started the fetch and those arriving while it runs, reads the same
file up to the written offset, woken at each advance; on plain HTTP it goes out with `sendfile`
from the spool (`api/blobs.py`), so N clients cost N kernel copies, not N passes through Python.
The last byte of the blob is readable only once the whole body hashed to its digest: a body that
is cut or does not match ends every client's response short (the headers, with the
Content-Length and the digest, are already out, so a cut connection is the only error left to
give) and nothing is committed.

Which file (`Flight.run`). On the filesystem driver the spool is the upload's own data file
(`_in_place`): the upload path (`UploadService`: hash lane, digest check, no-replace publish)
writes the upstream's bytes once and tells the spool of each batch on disk (`Progress`), so each
byte is written once and hashed once (a 512 MiB cold pull cost 3.3 CPU s with a separate spool,
2.1 s so). An object store's writer cannot be read back while it writes, so there
(`_beside`) the spool is a nameless temporary file that the upload reads at the storage's pace,
committing only when the spool was verified: no client waits for the storage, the upstream is
read as fast as it sends, and memory stays bounded by a few batches per lane.

Across processes (`FetchLocks`): the process that fetches holds a lock named by the digest, and
the others wait for the blob to be committed and then serve it from storage (streaming across
processes would mean sharing the spool across hosts; they wait instead). With Redis configured
(`redis.addr`) the lock is a Redis key (`SET NX PX`, renewed while held, deleted by its holder
only: the upload lease of leases.py), so it holds across workers and hosts; if its holder dies,
the key expires and a waiting process takes over. Without Redis it is a `flock` on a file of
this host (storage/locks.py), keyed by the storage: every worker of the host, not other hosts.
When Redis does not answer, the host lock is used: a fetch too many is better than no pull.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastreg.registry import layout
from fastreg.registry.blobs import BlobInfo
from fastreg.registry.digests import Digest, new_hasher
from fastreg.registry.errors import ErrorCode, RegistryError
from fastreg.registry.hashlane import HashLane
from fastreg.registry.leases import Hold, RedisCommands, take_redis_lease
from fastreg.registry.redirects import Redirector
from fastreg.registry.uploads import BATCH, DEPTH, UploadService, batched
from fastreg.storage.base import Lease, StorageDriver
from fastreg.storage.locks import HostLocks

log = logging.getLogger("fastreg.proxy")

LOCK_PREFIX = "fastreg::proxyfetch::"
FLUSH = 0.05  # seconds a batch of the upstream's bytes may wait for more before it is spooled
POLL = 0.1  # seconds between a waiting process's looks at the lock and at storage


def transfer_failed() -> RegistryError:
    return RegistryError(ErrorCode.UNAVAILABLE, "the upstream blob transfer failed")


class Spool:
    """A blob's bytes as they arrive, in a local file; readers follow the writer.

    ``size`` is the upstream's Content-Length (None: unknown, then nothing is served from the
    spool). ``file`` is closed when the writer and every reader have released it. A spool is
    the upload's `Progress` when the upload's data file is the spool (the filesystem driver).
    """

    flush: float | None = FLUSH

    def __init__(self, digest: Digest, size: int | None, file: Any) -> None:
        self.digest = digest
        self.size = size
        self._file = file
        self.fd = file.fileno()
        self.offset = 0  # bytes written
        self.checked = False  # whole, and hashed to the digest
        self.error: RegistryError | None = None
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ended.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._advanced = asyncio.Event()
        self._users = 1  # the writer

    # -- the writer ------------------------------------------------------------------------

    async def fill(self, body: AsyncIterator[bytes]) -> None:
        """Write ``body`` and hash it; checked when it is whole and matches, else raise."""
        loop = asyncio.get_running_loop()
        lane = HashLane(new_hasher(self.digest.algorithm), DEPTH)
        async for batch in batched(body, flush=FLUSH):
            self.check_length(self.offset + len(batch), final=False)  # never more than announced
            await lane.feed(batch)  # hashed on its thread while the write runs on another
            await loop.run_in_executor(None, _pwrite, self.fd, batch, self.offset)
            self.written(self.offset + len(batch))
            del batch
        self.check_length(self.offset)
        actual = Digest(self.digest.algorithm, (await lane.settle()).hexdigest())
        if actual != self.digest:
            raise ValueError(f"digest mismatch: the bytes are {actual}")
        self.verified()

    def check_length(self, length: int, final: bool = True) -> None:
        if self.size is not None and (length > self.size or (final and length != self.size)):
            raise ValueError(f"{length} bytes where the upstream announced {self.size}")

    def written(self, size: int) -> None:
        """`Progress`: the bytes up to ``size`` are in the file."""
        self.offset = size
        self._advance()

    def verified(self) -> None:
        """`Progress`: the bytes are whole and hashed to the digest; the last byte may go."""
        self.size = self.offset
        self.checked = True
        self.ended.set_result(None)
        self._advance()

    def fail(self, error: RegistryError) -> None:
        """Every reader's next wait raises ``error`` (their responses are cut)."""
        if not self.checked and self.error is None:
            self.error = error
            self.ended.set_exception(error)
            self._advance()

    def _advance(self) -> None:
        event, self._advanced = self._advanced, asyncio.Event()
        event.set()

    # -- readers ---------------------------------------------------------------------------

    def acquire(self) -> bool:
        """One more reader; False when the spool is already closed."""
        if self._users == 0:
            return False
        self._users += 1
        return True

    def release(self) -> None:
        self._users -= 1
        if self._users == 0:
            self._file.close()

    def readable(self) -> int:
        """How far clients may read: all of it once checked, else short of the last byte."""
        if self.checked or self.size is None:
            return self.offset
        return min(self.offset, self.size - 1)

    async def wait(self, offset: int, *, tail: bool = True) -> int:
        """The end of what may be read, once beyond ``offset`` (or the end of the spool);
        raises the failure. ``tail``: False for the storage write, which reads all written."""
        while True:
            if self.error is not None:
                raise self.error
            event = self._advanced
            end = self.readable() if tail else self.offset
            if end > offset or (self.checked and offset >= self.offset):
                return end
            await event.wait()

    async def chunks(
        self, offset: int = 0, end: int | None = None, *, tail: bool = True
    ) -> AsyncIterator[bytes]:
        """The bytes from ``offset`` to ``end`` (None: the end of the blob) as they are written."""
        loop = asyncio.get_running_loop()
        while end is None or offset < end:
            readable = await self.wait(offset, tail=tail)
            if end is not None:
                readable = min(readable, end)
            if readable <= offset:  # checked, and nothing beyond ``offset``
                return
            count = min(readable - offset, BATCH)
            chunk = await loop.run_in_executor(None, os.pread, self.fd, count, offset)
            if not chunk:
                raise ValueError("spool shorter than written")
            offset += len(chunk)
            yield chunk


def _pwrite(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done


@dataclass(frozen=True, slots=True)
class SpooledBlob:
    """A blob being fetched, as a download reads it (a `BlobReader`): from its spool."""

    info: BlobInfo
    spool: Spool
    local_path: None = None

    def stream(self, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        return self.spool.chunks(offset, None if length is None else offset + length)

    async def redirect_url(self, method: str, via: Redirector | None = None) -> str | None:
        return None  # not stored yet: nothing a redirect could point at

    def release(self) -> None:
        self.spool.release()


class Flight:
    """One cold blob in this process: the fetch's task, and what its clients wait for."""

    def __init__(self, name: str, digest: Digest) -> None:
        self.name = name
        self.digest = digest
        # the spool to read, or None: served from storage (committed meanwhile, or no size)
        self.started: asyncio.Future[Spool | None] = asyncio.get_running_loop().create_future()
        self.started.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.task: asyncio.Task[None] | None = None

    async def reader(self) -> SpooledBlob | None:
        """What a client reads: the spool, or None when it is to read storage instead."""
        spool = await asyncio.shield(self.started)
        if spool is None or spool.size is None:
            return None
        if not spool.acquire():  # ended, and every reader gone: committed, or failed
            if spool.error is not None:
                raise spool.error
            return None
        return SpooledBlob(BlobInfo(self.digest, spool.size), spool)

    def fail(self, error: RegistryError) -> None:
        if not self.started.done():
            self.started.set_exception(error)

    async def run(self, uploads: UploadService, body: AsyncIterator[bytes], size: int | None) -> int:
        """Spool ``body`` for the clients, store it, commit it if it hashed to the digest; the
        blob's size."""
        upload = await uploads.start(self.name, self.digest.algorithm)
        try:
            path = uploads.driver.local_file(layout.upload_data(self.name, upload.upload_id))
            if path is not None:
                stored = await self._in_place(uploads, upload.upload_id, path, body, size)
            else:
                stored = await self._beside(uploads, upload.upload_id, body, size)
        except BaseException:
            with contextlib.suppress(Exception):
                await uploads.cancel(self.name, upload.upload_id)
            raise
        if not self.started.done():  # no size announced: its clients read storage
            self.started.set_result(None)
        return stored

    async def _in_place(
        self, uploads: UploadService, upload_id: str, path: str, body: AsyncIterator[bytes],
        size: int | None,
    ) -> int:  # fmt: skip
        """The upload's data file is the spool: one write and one hash of each byte."""
        spool = self._announce(Spool(self.digest, size, await asyncio.to_thread(open, path, "rb")))
        try:
            status = await uploads.append(self.name, upload_id, body, progress=spool)
            spool.check_length(status.offset)
            return (await uploads.finish(self.name, upload_id, self.digest, progress=spool)).size
        except BaseException:
            spool.fail(transfer_failed())
            raise
        finally:
            spool.release()

    async def _beside(
        self, uploads: UploadService, upload_id: str, body: AsyncIterator[bytes], size: int | None
    ) -> int:
        """A nameless local file is the spool, and the upload (to an object store) reads it."""
        spool = self._announce(
            Spool(self.digest, size, tempfile.TemporaryFile(prefix="fastreg-proxy-"))  # noqa: SIM115
        )
        ingest = asyncio.ensure_future(self._ingest(uploads, upload_id, spool))
        ingest.add_done_callback(lambda t: t.cancelled() or t.exception())
        try:
            await spool.fill(body)
            await ingest
            return spool.offset
        except BaseException:
            spool.fail(transfer_failed())
            ingest.cancel()
            await asyncio.wait([ingest])
            raise
        finally:
            spool.release()

    def _announce(self, spool: Spool) -> Spool:
        if spool.size is not None:
            self.started.set_result(spool)
        return spool

    async def _ingest(self, uploads: UploadService, upload_id: str, spool: Spool) -> None:
        await uploads.append(self.name, upload_id, spool.chunks(tail=False))
        await spool.ended  # raises the fetch's failure
        await uploads.finish(self.name, upload_id, self.digest)


class FetchLocks:
    """Which process fetches a cold blob: a Redis lock when configured, else a host lock."""

    def __init__(self, driver: StorageDriver, redis: RedisCommands | None) -> None:
        self.driver = driver
        self.redis = redis
        root = getattr(driver, "root", None)
        # the filesystem driver's `lease` locks an existing file: a lock file of this host
        # named after its root instead; the object stores' leases lock names already
        self._host = HostLocks(f"filesystem:{root}") if isinstance(root, str) else None

    async def take(self, digest: Digest) -> Lease | None:
        """The lock of ``digest``, or None while another process holds it."""
        if self.redis is not None:
            try:
                return await take_redis_lease(self.redis, LOCK_PREFIX + str(digest), Hold(str(digest)))
            except RegistryError:
                log.warning("redis unreachable: blob %s is locked on this host only", digest)
        if self._host is not None:
            return await asyncio.to_thread(self._host.lease, str(digest))
        return await self.driver.lease(layout.blob_data(digest) + ".proxyfetch")

    async def wait_turn(self, digest: Digest, stored: Any) -> Lease | None:
        """Take the lock of ``digest`` (waiting while another process holds it), or None once
        ``stored()`` says the blob is committed: the caller then serves it from storage."""
        while True:
            lease = await self.take(digest)
            if await stored():
                if lease is not None:
                    await lease.release()
                return None
            if lease is not None:
                return lease
            await asyncio.sleep(POLL)


__all__ = ["FetchLocks", "Flight", "Spool", "SpooledBlob", "transfer_failed"]
