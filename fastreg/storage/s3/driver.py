"""The S3 driver: Distribution's `s3` driver layout on any S3-compatible store.

Keys are Distribution's (objects.py); directories are key prefixes. Moves are server-side copies
(multipart above `multipartcopythresholdsize`, always above 5 GiB where CopyObject cannot go)
followed by a delete of the source. A file appended to in several sessions (an upload sent in
many PATCHes) is a head object and segments (segments.py), read, moved and deleted as one file:
so this driver shares only the bucket-level part of the object-store driver (`BucketDriver`:
keys, writers, the reader's contract, leases, signed URLs, health), not its file operations.

``publish`` (a move that never replaces a blob) asks for the destination's head first: one HEAD
more per new blob (S3 has no copy that fails on an existing key everywhere). ``lease`` is
host-local (storage/locks.py): several hosts on one bucket need the Redis lease.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator
from typing import Any

import fastreg.storage.s3.operations as ops
from fastreg.storage.base import FileInfo, InvalidOffset, PathNotFound, StorageError, check_path
from fastreg.storage.objectstore import BucketDriver
from fastreg.storage.s3.client import TRANSPORT_ERRORS, RestError, translate
from fastreg.storage.s3.objects import S3Objects
from fastreg.storage.s3.params import S3Params
from fastreg.storage.s3.segments import FileLayout, covering, is_marked
from fastreg.storage.s3.writer import S3Writer


class S3Driver(BucketDriver[S3Objects]):
    name = "s3"

    def __init__(self, params: S3Params) -> None:
        super().__init__(S3Objects(params), S3Writer.open)
        self.params = params
        self.s3 = self.objects.s3

    @classmethod
    def from_settings(cls, settings: S3Params) -> S3Driver:
        return cls(settings)

    # -- small files ------------------------------------------------------------------------

    async def get_content(self, path: str, limit: int | None = None) -> bytes:
        resp = await self.s3.call(path, ops.get_object(Key=self.file_key(path)))
        body = resp["Body"]
        if is_marked(resp):  # a head of segments (appended in sessions): the whole file
            body.close()
            whole = b"".join([chunk async for chunk in self.reader(path)])
            if limit is not None and len(whole) > limit:
                raise StorageError(f"{path}: larger than {limit} bytes")
            return whole
        try:
            if limit is not None and int(resp.get("ContentLength", 0)) > limit:
                raise StorageError(f"{path}: larger than {limit} bytes")
            data: bytes = await body.read()
        except TRANSPORT_ERRORS as exc:
            raise translate(exc, "get_object", path) from exc
        finally:
            body.close()
        return data

    async def put_content(self, path: str, data: bytes) -> None:
        await self.objects.put_chunks(check_path(path, file=True), [data])

    # -- streams ----------------------------------------------------------------------------

    async def read(self, path: str, offset: int, end: int | None) -> AsyncIterator[bytes]:
        try:
            resp = await self.objects.get(path, self.key(path), offset, end)
        except RestError as exc:
            if exc.code != "InvalidRange":
                raise
            # past the head's end: the bytes are in segments, or this is the very end
            layout = await self._layout_at(path, offset)
            if layout.segments:
                async for chunk in self._read_pieces(path, layout, offset, end):
                    yield chunk
            return
        if is_marked(resp):  # a head of segments: read the file piece by piece
            resp["Body"].close()
            whole = await self.objects.layout_of(path)
            if whole is None:
                raise PathNotFound(path)
            async for chunk in self._read_pieces(path, whole, offset, end):
                yield chunk
            return
        async for chunk in self.objects.stream(path, resp["Body"]):
            yield chunk

    async def _read_pieces(
        self, path: str, layout: FileLayout, offset: int, end: int | None
    ) -> AsyncIterator[bytes]:
        if offset > layout.size:
            raise InvalidOffset(f"{path}: offset {offset} beyond {layout.size}")
        for piece, start, stop in covering(layout, offset, layout.size if end is None else end):
            resp = await self.objects.get(path, piece.key, start, stop)
            async for chunk in self.objects.stream(path, resp["Body"]):
                yield chunk

    async def check_offset(self, path: str, offset: int) -> None:
        await self._layout_at(path, offset)

    async def _layout_at(self, path: str, offset: int) -> FileLayout:
        """The file's layout, which ``offset`` is not past the end of."""
        layout = await self.objects.layout(path)
        if layout is None:
            raise PathNotFound(path)
        if offset > layout.size:
            raise InvalidOffset(f"{path}: offset {offset} beyond {layout.size}")
        return layout

    # -- metadata ---------------------------------------------------------------------------

    async def stat(self, path: str) -> FileInfo:
        layout = await self.objects.layout(path)
        if layout is None:
            return FileInfo(path, 0, 0.0, True)
        return FileInfo(path, layout.size, layout.mtime, False)

    async def list(self, path: str) -> list[str]:
        prefix = self.objects.prefix(path)
        names: list[str] = []
        async for page in self.objects.pages(path, prefix, delimiter="/"):
            names += [o["Key"][len(prefix) :] for o in page.get("Contents", ())]
            names += [
                c["Prefix"][len(prefix) :].rstrip("/") for c in page.get("CommonPrefixes", ())
            ]
        # "": a "folder marker" object named like the prefix; "~": a file's segments
        names = [n for n in names if n and "~" not in n]
        if not names and path != "/":  # the root always exists, as in Distribution
            raise PathNotFound(path)
        return names

    # -- move and delete --------------------------------------------------------------------

    async def move(self, source: str, dest: str) -> None:
        check_path(source, file=True), check_path(dest, file=True)
        layout = await self.objects.layout(source)
        if layout is None:
            raise PathNotFound(source)
        await self.objects.compose(source, layout.pieces, self.objects.key(dest))
        await self.objects.delete_keys(source, self.objects.keys_of(layout))

    async def publish(self, source: str, dest: str) -> bool:
        check_path(source, file=True), check_path(dest, file=True)
        if await self.objects.layout_of(dest) is not None:
            return False
        await self.move(source, dest)
        return True

    async def delete(self, path: str) -> None:
        """Delete the file or the tree at ``path``, and abort the multipart uploads a crashed
        writer left below it. The three listings go out at once: deleting an upload's folder
        ends every push, and each round trip is latency on it."""
        key, prefix = self.objects.key(path), self.objects.prefix(path)

        async def below() -> builtins.list[str]:
            return [
                o["Key"]
                async for page in self.objects.pages(path, prefix)
                for o in page.get("Contents", ())
            ]

        async def own() -> FileLayout | None:
            return await self.objects.layout_of(path) if key else None

        keys, layout, uploads = await asyncio.gather(
            below(), own(), self._uploads_below(path, prefix)
        )
        children = bool(keys)
        if layout is not None:
            keys += self.objects.keys_of(layout)
        if not keys:
            raise PathNotFound(path)
        if children:
            keys += _folders(prefix, keys)
        await self.objects.delete_keys(path, keys)
        if children:
            await asyncio.gather(*(self.objects.abort(path, k, u) for k, u in uploads))

    async def _uploads_below(self, path: str, prefix: str) -> builtins.list[tuple[str, str]]:
        """(key, upload id) of the multipart uploads in progress below ``prefix``."""
        found: builtins.list[tuple[str, str]] = []
        args: dict[str, Any] = {"Prefix": prefix}
        while True:
            page = await self.s3.call(path, ops.list_multipart_uploads(**args))
            found += [(u["Key"], u["UploadId"]) for u in page.get("Uploads", ())]
            if not page.get("IsTruncated"):
                return found
            args["KeyMarker"] = page.get("NextKeyMarker", "")
            args["UploadIdMarker"] = page.get("NextUploadIdMarker", "")


def _folders(prefix: str, keys: builtins.list[str]) -> builtins.list[str]:
    """The folder entries below ``prefix`` (itself included), deepest first.

    Plain S3 has no folders and ignores these deletes; filer-backed stores (SeaweedFS) keep an
    emptied folder and list it as a common prefix until it is deleted, leaf first.
    """
    folders = {prefix}
    for key in keys:
        parts = key[len(prefix) :].split("/")[:-1]
        folders.update(prefix + "/".join(parts[: i + 1]) + "/" for i in range(len(parts)))
    return sorted(folders, key=lambda f: (-f.count("/"), f))
