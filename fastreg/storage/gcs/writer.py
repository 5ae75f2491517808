"""Appending to a GCS object: a resumable upload per writer session, joined by compose.

GCS objects are immutable and the bytes of an unfinished resumable upload cannot be read, while
an upload session must be readable (another worker re-hashes it) and resumable by any process.
Distribution keeps the resumable session's URL in the object's metadata and the object unreadable
until the end; fastreg instead ends every writer session (each PATCH) with a whole object at the
key, so no session URL has to outlive a request:

- the session's bytes stream to a resumable upload in `chunksize` chunks, one in flight while the
  next fills, so memory stays near two chunks per writer;
- an object smaller than a chunk is read back and re-sent in front of the new bytes (cheap, and it
  keeps tiny chunked uploads from piling up compose components);
- a larger one is left in place: the new bytes go to `<key>.part-<uuid>` and ``commit`` composes
  `[key, part]` into the key, then deletes the part. GCS allows 1024 components per object, so
  after 1000 the stored bytes are streamed into the session instead, which resets the count.

A session that ends without ``commit`` cancels its resumable upload: the key is never half-written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid

from yarl import URL

from fastreg.storage.base import StorageError
from fastreg.storage.chunked import FixedChunkWriter
from fastreg.storage.gcs.objects import GCSObjects
from fastreg.storage.objectstore import chunks, read_all

MAX_COMPONENTS = 1000  # GCS's limit is 1024


class GCSWriter(FixedChunkWriter):
    def __init__(
        self, objects: GCSObjects, path: str, base: int, exists: bool, components: int
    ) -> None:
        super().__init__(path, base, objects.params.chunksize)
        self._objects = objects
        self._key = objects.key(path)
        self._exists = exists
        self._components = components
        self._seeded = False
        self._target = self._key  # where this session's resumable upload lands
        self._session: URL | None = None
        self._sent = 0  # bytes the resumable upload has accepted

    @classmethod
    async def open(cls, objects: GCSObjects, path: str, append: bool) -> GCSWriter:
        key = objects.key(path)
        if not append:  # truncate now, as O_TRUNC does: the empty file is visible at once
            await objects.put(path, key, b"")
            return cls(objects, path, 0, True, 1)
        info = await objects.head(path, key)
        if info is None:
            return cls(objects, path, 0, False, 0)
        return cls(objects, path, info.size, True, int(info.meta.get("componentCount", 1)))

    async def _commit(self) -> None:
        if not self._seeded:  # nothing written: an append on a missing file still creates it
            if not self._exists:
                await self._objects.put(self._path, self._key, b"")
                self._exists = True
            return
        if self._session is None:
            await self._objects.put(self._path, self._target, self._take_rest())
        else:
            await self._drain()
            await self._put_chunk(self._take_rest(), final=True)
            self._session = None
        if self._target != self._key:
            await self._compose()
            self._components += 1
        elif self._base:  # the stored bytes were re-sent: a fresh, single-component object
            self._components = 1
        self._base, self._written, self._exists = self.size, 0, True
        self._seeded, self._target, self._sent = False, self._key, 0

    async def _remove(self) -> None:
        await self._objects.delete(self._path, self._key)

    async def _abandon(self) -> None:
        session, self._session = self._session, None
        if session is not None:  # best effort: GCS expires abandoned sessions after a week
            with contextlib.suppress(StorageError, asyncio.CancelledError):
                await asyncio.shield(self._objects.call(
                    "cancel upload", self._path, "DELETE", session, expect=(499, 204, 200, 404),
                ))  # fmt: skip

    # -- internals ---------------------------------------------------------------------------

    async def _prepare(self) -> None:
        """Decide where this session's bytes go and put the stored ones in front if needed."""
        if self._seeded:
            return
        self._seeded = True
        if self._base == 0:
            return
        if self._base < self._chunksize:
            data = await read_all(self._objects, self._path, self._key, self._base)
            if len(data) != self._base:
                raise StorageError(f"{self._path}: changed by another writer")
            self._buf[:0] = data
            return
        if self._components < MAX_COMPONENTS:
            self._target = f"{self._key}.part-{uuid.uuid4().hex}"
            return
        resp = await self._objects.get(self._path, self._key, 0, self._base)
        async for chunk in chunks(resp, f"gcs get {self._path}"):
            await self._push(chunk)

    async def _ship(self, chunk: bytes) -> None:
        if self._session is None:
            self._session = await self._start()
        await self._send(lambda: self._put_chunk(chunk, final=False))

    async def _start(self) -> URL:
        url = self._objects.url("upload", query={"uploadType": "resumable", "name": self._target})
        body = json.dumps({"name": self._target, "contentType": "application/octet-stream"})
        resp = await self._objects.call(
            "start upload", self._path, "POST", url, body=body.encode(),
            headers={"Content-Type": "application/json; charset=UTF-8",
                     "X-Upload-Content-Type": "application/octet-stream"},
        )  # fmt: skip
        location = resp.headers.get("Location")
        if not location:
            raise StorageError(f"gcs: no resumable upload session for {self._path}")
        return URL(location, encoded=True)
    async def _put_chunk(self, data: bytes, final: bool) -> None:
        """Send ``data`` at the session's offset; resend what the server did not keep."""
        assert self._session is not None
        start = self._sent
        total = str(start + len(data)) if final else "*"
        while True:
            sent = self._sent - start
            rest = data[sent:]
            span = f"{self._sent}-{self._sent + len(rest) - 1}" if rest else "*"
            resp = await self._objects.call(
                "upload chunk", self._path, "PUT", self._session, body=rest,
                headers={"Content-Range": f"bytes {span}/{total}",
                         "Content-Length": str(len(rest))},
                expect=(200, 201) if final else (308,),
            )  # fmt: skip
            if final:
                self._sent = start + len(data)
                return
            kept = resp.headers.get("Range", "")  # "bytes=0-N": everything up to N is stored
            self._sent = int(kept.rsplit("-", 1)[1]) + 1 if kept else 0
            if self._sent >= start + len(data):
                return
            if self._sent < start:
                raise StorageError(f"gcs: upload of {self._path} lost bytes it had accepted")

    async def _compose(self) -> None:
        bucket = self._objects.params.bucket
        url = self._objects.url("o", self._key, suffix="/compose")
        body = {"sourceObjects": [{"name": self._key}, {"name": self._target}],
                "destination": {"bucket": bucket, "contentType": "application/octet-stream"}}
        try:
            await self._objects.call(
                "compose", self._path, "POST", url, body=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )  # fmt: skip
        finally:
            with contextlib.suppress(StorageError):
                await self._objects.delete(self._path, self._target)
