"""Appending to an S3 file: streamed multipart uploads, one part in flight and one buffering.

S3 cannot append, and the parts of an unfinished multipart upload cannot be read back, while an
upload session must be readable (another worker re-hashes it) and resumable after a restart. So
each writer session ends, at ``commit``, with whole objects: the first session writes the file's
head object (Distribution's layout, readable and stat-able by any process), and each later one
adds a segment object after it (segments.py), so no byte is copied again until the file is
moved. A last piece smaller than a part (5 MiB) is read back and rewritten with the new bytes
after it. A session that ends without ``commit`` (client gone, S3 down, crash) aborts its
upload and leaves the file as it was: never a half-written file.

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
import time
from typing import Any

import fastreg.storage.s3.operations as ops
from fastreg.storage.base import PathNotFound, StorageError
from fastreg.storage.chunked import ChunkedWriter
from fastreg.storage.s3.body import PartBody, PartBuffer
from fastreg.storage.s3.objects import S3Objects
from fastreg.storage.s3.params import MAX_PART, MAX_PARTS, MIN_PART
from fastreg.storage.s3.segments import MAX_SEGMENTS, FileLayout, Piece, segment_key

#: How long an upload waits for a part slot before it goes on without one (see _hold_slot).
SLOT_WAIT = 5.0


class S3Writer(ChunkedWriter):
    """The chunked-writer template with parts that grow (``part_size``), buffered without
    copies (``PartBuffer`` instead of the template's buffer) and held in a part slot."""

    def __init__(self, objects: S3Objects, path: str, layout: FileLayout | None) -> None:
        super().__init__(path, 0, objects.params.chunksize)
        self._objects = objects
        self._layout = layout  # the committed file (None: there is none yet)
        self._target: Piece | None = None  # the object this session writes, once it writes
        self._pending = PartBuffer()  # bytes of the next part
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._next_part = 1
        self._slot = False  # holds one of the driver's part slots

    @classmethod
    async def open(cls, objects: S3Objects, path: str, append: bool) -> S3Writer:
        if not append:  # truncate now, as O_TRUNC does: the empty file is visible at once
            await objects.put_chunks(path, [b""])
            return cls(objects, path, FileLayout(Piece(objects.key(path), 0, 0, time.time())))
        try:
            layout = await objects.layout(path)
        except PathNotFound:
            return cls(objects, path, None)
        if layout is None:
            raise StorageError(f"{path}: is a directory")
        return cls(objects, path, layout)

    @property
    def size(self) -> int:
        return (self._layout.size if self._layout else 0) + self._written

    def part_size(self, number: int) -> int:
        return min(MAX_PART, self._objects.params.chunksize << ((number - 1) // 1000))

    async def _prepare(self) -> None:
        if self._target is None:
            await self._plan()
        if self._inflight is not None:
            # one part in memory at a time: the caller's lanes (a few batches) are the read-ahead
            await self._drain()
        await self._hold_slot()

    async def _push(self, data: bytes) -> None:
        self._pending.add(data)
        while (part := self._pending.take(self.part_size(self._next_part))) is not None:
            await self._ship_part(part)

    async def _commit(self) -> None:
        target = self._target
        if target is None:  # nothing written: an append on a missing file still creates it
            if self._layout is None:
                await self._objects.put_chunks(self._path, [b""])
                self._layout = FileLayout(Piece(self._objects.key(self._path), 0, 0, time.time()))
            return
        if self._upload_id is None:
            await self._objects.put_chunks(
                self._path, self._pending.take_all(), key=target.key, marked=self._marked()
            )
        else:
            if self._pending.size:
                await self._ship_part(self._pending.take_all())
            await self._drain()
            await self._objects.s3.call(
                self._path,
                ops.complete_multipart_upload(
                    Key=target.key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": sorted(self._parts, key=lambda p: p["PartNumber"])},
                ),
            )
        # the piece is whole: later writes go on after it, as a new session's would
        piece = Piece(target.key, target.offset, self.size - target.offset, time.time())
        if self._layout is None:
            self._layout = FileLayout(piece)
        else:
            self._layout.put(piece)
        self._written, self._target = 0, None
        self._pending = PartBuffer()
        self._release_slot()
        self._upload_id, self._parts, self._next_part = None, [], 1

    async def _remove(self) -> None:
        await self._objects.remove(self._path)

    async def _abandon(self) -> None:
        self._pending = PartBuffer()
        self._release_slot()
        if self._upload_id is not None and self._target is not None:
            await self._objects.abort(self._path, self._target.key, self._upload_id)
            self._upload_id = None

    # -- internals ---------------------------------------------------------------------------

    async def _plan(self) -> None:
        """Choose the object this session writes: the head of a new file, a rewrite of a last
        piece too small to be a part (its bytes carried in front), or a new segment."""
        layout = self._layout
        if layout is None:
            self._target = Piece(self._objects.key(self._path), 0, 0, 0.0)
            return
        if len(layout.segments) >= MAX_SEGMENTS:
            await self._objects.merge(self._path, layout)
        last = layout.last
        if last.size < MIN_PART:
            if last.size:
                self._pending.add(await self._objects.get_piece(self._path, last), front=True)
            self._target = last
            return
        if not layout.marked:
            await self._objects.mark(self._path, layout)
        self._target = Piece(segment_key(layout.head.key, layout.size), layout.size, 0, 0.0)

    def _marked(self) -> bool:
        """A rewritten head keeps the marker that lets its segments be found."""
        layout, target = self._layout, self._target
        return bool(layout and target and layout.marked and target.key == layout.head.key)

    async def _start(self) -> None:
        assert self._target is not None
        upload = await self._objects.s3.call(
            self._path,
            ops.create_multipart_upload(
                Key=self._target.key, **self._objects.put_args(self._marked())
            ),
        )
        self._upload_id = upload["UploadId"]

    async def _ship_part(self, part: list[memoryview]) -> None:
        """Hand one part to the uploader, after the part before it has landed."""
        if self._upload_id is None:
            await self._start()
        number = self._next_part
        if number > MAX_PARTS:
            raise StorageError(f"{self._path}: more than {MAX_PARTS} parts")
        self._next_part += 1
        await self._send(lambda: self._upload(number, part))

    async def _drain(self) -> None:
        sending = self._inflight is not None
        try:
            await super()._drain()
        finally:
            if sending:
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
            await asyncio.wait_for(self._objects.part_slots.acquire(), SLOT_WAIT)
        except TimeoutError:
            return
        self._slot = True

    def _release_slot(self) -> None:
        if self._slot:
            self._slot = False
            self._objects.part_slots.release()

    async def _upload(self, number: int, part: list[memoryview]) -> None:
        assert self._target is not None and self._upload_id is not None
        resp = await self._objects.s3.call(
            self._path,
            ops.upload_part(
                Key=self._target.key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=PartBody(part),
            ),
        )
        self._parts.append({"PartNumber": number, "ETag": resp["ETag"]})
