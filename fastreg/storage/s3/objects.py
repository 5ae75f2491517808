"""S3's objects for the driver and the writer: keys, the objects a file is made of (its head and
segments, segments.py), whole objects made of chunks or composed inside the store, multipart
uploads aborted, keys deleted in batches. The driver reads, lists, moves and deletes files with
these; the writer appends with them (writer.py), so neither imports the other.

A path `/docker/registry/v2/x` is the key `<rootdirectory>/docker/registry/v2/x` without a leading
slash (Distribution's `s3Path`), so Distribution and fastreg serve the same bucket.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator, Sequence
from typing import Any

import fastreg.storage.s3.operations as ops
from fastreg.storage.base import PathNotFound, StorageError, check_path
from fastreg.storage.objectstore import Bucket, byte_range
from fastreg.storage.s3.body import Chunk, PartBody
from fastreg.storage.s3.client import TRANSPORT_ERRORS, S3Client, translate
from fastreg.storage.s3.params import MAX_PART, MAX_PARTS, MIN_PART, S3Params, split
from fastreg.storage.s3.segments import (
    MARKER,
    FileLayout,
    Piece,
    SegmentsInconsistent,
    is_marked,
    resolve,
    segment_prefix,
)

READ_CHUNK = 1024 * 1024
LIST_MAX = 1000


class S3Objects:
    def __init__(self, params: S3Params) -> None:
        self.params = params
        where = params.endpoint_url or f"AWS region {params.region}"
        self.bucket = Bucket("s3", "bucket", params.bucket, params.endpoint_url or params.region,
                             where)  # fmt: skip
        self.s3 = S3Client(params)
        # one slot per part an upload holds in memory (writer.py): bounds this process's memory
        # whatever the number of uploads
        self.part_slots = asyncio.Semaphore(params.maxbufferedparts)

    def key(self, path: str) -> str:
        check_path(path)
        root = self.params.rootdirectory
        return (f"/{root}{path}" if root else path).lstrip("/")

    def prefix(self, path: str) -> str:
        """The key prefix of everything below the directory ``path`` ("" for the bucket root)."""
        key = self.key(path).rstrip("/")
        return key + "/" if key else ""

    def put_args(self, marked: bool = False) -> dict[str, Any]:
        """Headers every new object gets: content type, storage class, server-side encryption;
        and the segments marker on a head that segments may follow (segments.py)."""
        p = self.params
        args: dict[str, Any] = {"ContentType": "application/octet-stream"}
        if marked:
            args["Metadata"] = {MARKER: "1"}
        if p.storageclass:
            args["StorageClass"] = p.storageclass
        if p.encrypt:
            args["ServerSideEncryption"] = "aws:kms" if p.keyid else "AES256"
            if p.keyid:
                args["SSEKMSKeyId"] = p.keyid
        return args

    async def put_chunks(
        self, path: str, chunks: Sequence[Chunk], key: str | None = None, marked: bool = False
    ) -> None:
        """One object made of ``chunks`` in order, sent without joining them (body.py), at
        ``key`` (the path's own by default: a writer may target a segment)."""
        await self.s3.call(
            path,
            ops.put_object(
                Key=key or self.key(path), Body=PartBody(chunks), **self.put_args(marked)
            ),
        )

    async def get(self, path: str, key: str, offset: int, end: int | None) -> Any:
        return await self.s3.call(path, ops.get_object(Key=key, **byte_range(offset, end)))

    async def stream(self, path: str, body: Any) -> AsyncIterator[bytes]:
        try:
            while True:
                try:
                    chunk = await body.read(READ_CHUNK)
                except TRANSPORT_ERRORS as exc:
                    raise translate(exc, "get_object", path) from exc
                if not chunk:
                    break
                yield chunk
        finally:
            body.close()

    async def get_piece(self, path: str, piece: Piece) -> bytes:
        """The whole of one piece of a file (a writer carries a short last piece over)."""
        resp = await self.get(path, piece.key, 0, None)
        data = b"".join([chunk async for chunk in self.stream(path, resp["Body"])])
        if len(data) != piece.size:
            raise StorageError(f"{path}: changed by another writer")
        return data

    async def layout(self, path: str) -> FileLayout | None:
        """The objects the file at ``path`` is made of; None for a directory.
        PathNotFound when there is neither."""
        layout = await self.layout_of(path)
        if layout is not None:
            return layout
        prefix = self.prefix(path)
        page = await self.s3.call(path, ops.list_objects_v2(Prefix=prefix, MaxKeys=1))
        if page.get("Contents") or page.get("CommonPrefixes"):
            return None
        raise PathNotFound(path)

    async def layout_of(self, path: str) -> FileLayout | None:
        """The file's head and segments; None when there is no object at the path's key."""
        key = self.key(path)
        if not key or path == "/":  # the root is a directory (SeaweedFS heads its folder)
            return None
        try:
            head = await self.s3.call(path, ops.head_object(Key=key))
        except PathNotFound:
            return None
        mtime = head["LastModified"].timestamp() if head.get("LastModified") else 0.0
        piece = Piece(key, 0, int(head["ContentLength"]), mtime)
        if not is_marked(head):
            return FileLayout(piece)
        listed = [
            o
            async for page in self.pages(path, segment_prefix(key))
            for o in page.get("Contents", ())
        ]
        try:
            return resolve(piece, listed)
        except SegmentsInconsistent as exc:
            raise StorageError(str(exc)) from exc

    async def pages(
        self, path: str, prefix: str, delimiter: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        args: dict[str, Any] = {"Prefix": prefix, "MaxKeys": LIST_MAX}
        if delimiter:
            args["Delimiter"] = delimiter
        while True:
            page: dict[str, Any] = await self.s3.call(path, ops.list_objects_v2(**args))
            yield page
            if not page.get("IsTruncated") or not page.get("NextContinuationToken"):
                return
            args["ContinuationToken"] = page["NextContinuationToken"]

    async def mark(self, path: str, layout: FileLayout) -> None:
        """Let segments follow the head of ``layout``: drop leftovers of an earlier file at the
        path (truncated or replaced since), then set the marker (a copy of the head onto itself:
        once per file, and only for a file appended to more than once)."""
        prefix = segment_prefix(layout.head.key)
        leftovers = [
            o["Key"] async for page in self.pages(path, prefix) for o in page.get("Contents", ())
        ]
        await self.delete_keys(path, [*leftovers, prefix] if leftovers else [])
        await self.compose(path, [layout.head], layout.head.key, marked=True)
        layout.marked = True

    async def merge(self, path: str, layout: FileLayout) -> None:
        """Compose all the pieces into the head, then drop the segments (leftovers of a merge
        cut short are ignored by ``segments.resolve``: a head only ever grows)."""
        await self.compose(path, layout.pieces, layout.head.key, marked=True)
        stale = [p.key for p in layout.segments]
        layout.head = Piece(layout.head.key, 0, layout.size, layout.mtime)
        layout.segments = []
        await self.delete_keys(path, stale)

    async def compose(
        self, path: str, pieces: builtins.list[Piece], dst: str, marked: bool = False
    ) -> None:
        """One object at ``dst`` made of ``pieces`` in order, copied inside the store: CopyObject
        for one piece up to the copy threshold, else a multipart upload of UploadPartCopy ranges
        (pieces but the last are >= 5 MiB, so each can be parts of its own)."""
        pieces = [p for p in pieces if p.size] or pieces[:1]
        total = sum(p.size for p in pieces)
        if len(pieces) == 1 and total <= min(self.params.multipartcopythresholdsize, MAX_PART):
            source = {"Bucket": self.params.bucket, "Key": pieces[0].key}
            # MetadataDirective: this object's headers, not the source's marker
            copy = ops.copy_object(
                Key=dst, CopySource=source, MetadataDirective="REPLACE", **self.put_args(marked)
            )
            await self.s3.call(path, copy)
            return
        # each piece adds at most one part beyond its share of the total: 10,000 parts at most
        chunk = max(self.params.multipartcopychunksize, -(-total // (MAX_PARTS - len(pieces))))
        # a part cut from a piece that is not the last must be >= 5 MiB too
        ranges = [
            (p.key, start, end)
            for i, p in enumerate(pieces, start=1)
            for start, end in split(p.size, chunk, last_min=MIN_PART if i < len(pieces) else 0)
        ]
        upload = await self.s3.call(
            path, ops.create_multipart_upload(Key=dst, **self.put_args(marked))
        )
        upload_id = upload["UploadId"]
        try:
            parts = await self.copy_parts(path, dst, upload_id, ranges)
            await self.s3.call(
                path,
                ops.complete_multipart_upload(
                    Key=dst, UploadId=upload_id, MultipartUpload={"Parts": parts}
                ),
            )
        except BaseException:
            await self.abort(path, dst, upload_id)
            raise

    async def copy_parts(
        self,
        path: str,
        dst: str,
        upload_id: str,
        ranges: builtins.list[tuple[str, int, int]],
    ) -> builtins.list[dict[str, Any]]:
        """UploadPartCopy ``(source key, first byte, last byte)`` ranges as parts 1, 2, ...,
        in parallel."""
        limit = asyncio.Semaphore(self.params.multipartcopymaxconcurrency)

        async def one(number: int, src: str, start: int, end: int) -> dict[str, Any]:
            async with limit:
                resp = await self.s3.call(
                    path,
                    ops.upload_part_copy(
                        Key=dst,
                        UploadId=upload_id,
                        PartNumber=number,
                        CopySource={"Bucket": self.params.bucket, "Key": src},
                        CopySourceRange=f"bytes={start}-{end}",
                    ),
                )
            return {"PartNumber": number, "ETag": resp["CopyPartResult"]["ETag"]}

        tasks = [asyncio.ensure_future(one(number, *r)) for number, r in enumerate(ranges, start=1)]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:
                task.cancel()

    async def abort(self, path: str, key: str, upload_id: str) -> None:
        """Abort a multipart upload, best effort: an orphan is removed with its directory later."""
        try:
            await asyncio.shield(
                self.s3.call(path, ops.abort_multipart_upload(Key=key, UploadId=upload_id))
            )
        except (StorageError, asyncio.CancelledError):
            pass

    @staticmethod
    def keys_of(layout: FileLayout) -> builtins.list[str]:
        """The keys a file is stored in, and (when marked) its segments' folder entry."""
        keys = [p.key for p in layout.pieces]
        return [*keys, segment_prefix(layout.head.key)] if layout.marked else keys

    async def delete_keys(self, path: str, keys: builtins.list[str]) -> None:
        for i in range(0, len(keys), LIST_MAX):
            batch = [{"Key": k} for k in keys[i : i + LIST_MAX]]
            resp = await self.s3.call(
                path, ops.delete_objects(Delete={"Objects": batch, "Quiet": True})
            )
            if resp.get("Errors"):
                first = resp["Errors"][0]
                raise StorageError(f"s3 delete {path}: {first.get('Key')}: {first.get('Code')}")

    async def remove(self, path: str) -> None:
        """Delete the file at ``path`` (a writer's cancel): its head and segments."""
        layout = await self.layout_of(path)
        if layout is None:
            raise PathNotFound(path)
        await self.delete_keys(path, self.keys_of(layout))

    async def signed_url(self, key: str, method: str, expires_in: float | None) -> str | None:
        return await self.s3.presign(method, key, expires_in or self.params.presignexpiry)

    async def healthy(self) -> None:
        """One cheap authenticated call, so wrong credentials or bucket fail at start."""
        await self.s3.call("/", ops.list_objects_v2(Prefix=self.prefix("/"), MaxKeys=1))

    async def close(self) -> None:
        await self.s3.close()
