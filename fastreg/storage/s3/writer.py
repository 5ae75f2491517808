"""Appending to an S3 object: streamed multipart uploads, one part in flight and one buffering.

S3 cannot append, and the parts of an unfinished multipart upload cannot be read back, while an
upload session must be readable (another worker re-hashes it) and resumable after a restart. So
each writer session ends, at ``commit``, with a complete object at the key (Distribution's layout,
readable and stat-able by any process), and appending again starts a new multipart upload whose
first parts are the existing object: server-side UploadPartCopy when it is >= 5 MiB, else its few
bytes are read back into the buffer. A session that ends without ``commit`` (client gone, S3 down,
crash) aborts its upload and leaves the previous object untouched: never a half-written file.

Parts are ``chunksize`` bytes, doubling every 1000 parts (capped at 5 GiB), so a stream of unknown
length never needs more than 10,000 parts. A part is sent while ``write`` returns, so reading the
client goes on while S3 takes the part; the next ``write`` waits for it. The caller's few batches
in flight are then the read-ahead, and memory per upload is one part, sent without copies
(body.py): S3 is far slower than the client, so buffering a second part would gain little and
cost ``chunksize`` more in every upload at once. A process holds at most ``maxbufferedparts`` such
parts (a fastreg key; default 4): further uploads wait for a slot, so memory per process stays
bounded however many clients push at once, and S3, the slower side, stays busy.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from fastreg.storage.base import PathNotFound, StorageError
from fastreg.storage.s3.body import PartBody, PartBuffer
from fastreg.storage.s3.params import MAX_PART, MAX_PARTS, MIN_PART, split

if TYPE_CHECKING:
    from fastreg.storage.s3.driver import S3Driver

#: Parts of the existing object copied when appending leave room for 9,000 streamed parts.
SEED_PARTS = 1000
#: How long an upload waits for a part slot before it goes on without one (see _hold_slot).
SLOT_WAIT = 5.0


class S3Writer:
    def __init__(self, driver: S3Driver, path: str, base: int, exists: bool) -> None:
        self._driver = driver
        self._path = path
        self._key = driver.key(path)
        self._base = base  # bytes of the stored object this session appends to
        self._exists = exists
        self._seeded = False  # the stored bytes are in the buffer or copied as parts
        self._written = 0
        self._pending = PartBuffer()  # bytes of the next part
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._next_part = 1
        self._inflight: asyncio.Task[dict[str, Any]] | None = None
        self._slot = False  # holds one of the driver's part slots
        self._closed = False

    @classmethod
    async def open(cls, driver: S3Driver, path: str, append: bool) -> S3Writer:
        if not append:  # truncate now, as O_TRUNC does: the empty file is visible at once
            await driver.put_content(path, b"")
            return cls(driver, path, 0, True)
        try:
            info = await driver.stat(path)
        except PathNotFound:
            return cls(driver, path, 0, False)
        if info.is_dir:
            raise StorageError(f"{path}: is a directory")
        return cls(driver, path, info.size, True)

    @property
    def size(self) -> int:
        return self._base + self._written

    def part_size(self, number: int) -> int:
        return min(MAX_PART, self._driver.params.chunksize << ((number - 1) // 1000))

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise StorageError("write on a closed writer")
        if not data:
            return
        if not self._seeded:
            await self._seed()
        if self._inflight is not None:
            # one part in memory at a time: the caller's lanes (a few batches) are the read-ahead
            await self._drain()
        await self._hold_slot()
        self._pending.add(data)
        self._written += len(data)
        while (part := self._pending.take(self.part_size(self._next_part))) is not None:
            await self._ship(part)

    async def commit(self) -> None:
        if self._closed:
            raise StorageError("commit on a closed writer")
        if not self._seeded:  # nothing written: an append on a missing file still creates it
            if not self._exists:
                await self._driver.put_content(self._path, b"")
                self._exists = True
            return
        if self._upload_id is None:
            await self._driver.put_chunks(self._path, self._pending.take_all())
        else:
            if self._pending.size:
                await self._ship(self._pending.take_all())
            await self._drain()
            await self._driver.s3.call(
                "complete_multipart_upload",
                self._path,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": sorted(self._parts, key=lambda p: p["PartNumber"])},
            )
        # the object is whole again: later writes append to it as a new session would
        self._base, self._written, self._exists = self.size, 0, True
        self._pending = PartBuffer()
        self._release_slot()
        self._upload_id, self._parts, self._next_part, self._seeded = None, [], 1, False

    async def cancel(self) -> None:
        await self.close()
        await self._driver.s3.call("delete_object", self._path, Key=self._key)

    async def close(self) -> None:
        """Drop what was not committed; safe twice."""
        if self._closed:
            return
        self._closed = True
        self._pending = PartBuffer()
        task, self._inflight = self._inflight, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        self._release_slot()
        if self._upload_id is not None:
            await self._driver.abort(self._path, self._key, self._upload_id)
            self._upload_id = None

    # -- internals ---------------------------------------------------------------------------

    async def _seed(self) -> None:
        """Put the stored bytes in front of what this session writes."""
        self._seeded = True
        if self._base == 0:
            return
        if self._base < MIN_PART:  # too small to be a part: carry the bytes over
            data = await self._driver.get_content(self._path, MIN_PART)
            if len(data) != self._base:
                raise StorageError(f"{self._path}: changed by another writer")
            self._pending.add(data, front=True)
            return
        await self._start()
        assert self._upload_id is not None
        chunk = max(self._driver.params.multipartcopychunksize, -(-self._base // SEED_PARTS))
        ranges = split(self._base, chunk, last_min=MIN_PART)
        self._parts = await self._driver.copy_parts(
            self._path, self._key, self._key, self._upload_id, ranges, 1
        )
        self._next_part = len(ranges) + 1

    async def _start(self) -> None:
        upload = await self._driver.s3.call(
            "create_multipart_upload", self._path, Key=self._key, **self._driver.put_args()
        )
        self._upload_id = upload["UploadId"]

    async def _ship(self, part: list[memoryview]) -> None:
        """Hand one part to the uploader, after the part before it has landed."""
        if self._upload_id is None:
            await self._start()
        await self._drain()
        number = self._next_part
        if number > MAX_PARTS:
            raise StorageError(f"{self._path}: more than {MAX_PARTS} parts")
        self._next_part += 1
        self._inflight = asyncio.ensure_future(self._upload(number, part))

    async def _drain(self) -> None:
        task, self._inflight = self._inflight, None
        if task is not None:
            try:
                self._parts.append(await task)
            finally:
                self._release_slot()  # the part has left memory

    async def _hold_slot(self) -> None:
        """Take a part slot before buffering a part: when every slot is taken (as many parts in
        memory as `maxbufferedparts`), this upload waits, and so does its client. A slot is
        normally free again within one part upload; a wait past SLOT_WAIT means slow clients
        are filling the parts that hold the slots, and the upload goes on without one rather
        than starve behind them (memory then exceeds the budget by that upload's part)."""
        if self._slot:
            return
        try:
            await asyncio.wait_for(self._driver.part_slots.acquire(), SLOT_WAIT)
        except TimeoutError:
            return
        self._slot = True

    def _release_slot(self) -> None:
        if self._slot:
            self._slot = False
            self._driver.part_slots.release()

    async def _upload(self, number: int, part: list[memoryview]) -> dict[str, Any]:
        resp = await self._driver.s3.call(
            "upload_part",
            self._path,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=PartBody(part),
        )
        return {"PartNumber": number, "ETag": resp["ETag"]}
