"""The S3 driver: Distribution's `s3` driver layout on any S3-compatible store.

A path `/docker/registry/v2/x` is the key `<rootdirectory>/docker/registry/v2/x` without a leading
slash (Distribution's `s3Path`), so Distribution and fastreg serve the same bucket. Directories are
key prefixes. Moves are server-side copies (multipart above `multipartcopythresholdsize`, always
above 5 GiB where CopyObject cannot go) followed by a delete of the source. A file appended to in
several sessions (an upload sent in many PATCHes) is a head object and segments (segments.py),
read, moved and deleted as one file.

``publish`` (a move that never replaces a blob) asks for the destination's head first: one HEAD
more per new blob (S3 has no copy that fails on an existing key everywhere). ``lease`` is
host-local (storage/locks.py): several hosts on one bucket need the Redis lease.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from fastreg.storage.base import FileInfo, InvalidOffset, PathNotFound, StorageError, check_path
from fastreg.storage.locks import FlockLease, HostLocks
from fastreg.storage.s3.body import Chunk, PartBody
from fastreg.storage.s3.client import TRANSPORT_ERRORS, S3Client, S3Error, translate
from fastreg.storage.s3.params import MAX_PART, MAX_PARTS, MIN_PART, S3Params, split
from fastreg.storage.s3.segments import (
    MARKER,
    FileLayout,
    Piece,
    SegmentsInconsistent,
    covering,
    is_marked,
    resolve,
    segment_prefix,
)
from fastreg.storage.s3.writer import S3Writer

READ_CHUNK = 1024 * 1024
LIST_MAX = 1000


class S3Driver:
    name = "s3"
    leases_span_hosts = False

    def __init__(self, params: S3Params) -> None:
        self.params = params
        self.s3 = S3Client(params)
        self.locks = HostLocks(f"s3 {params.endpoint_url or params.region} {params.bucket}")
        # one slot per part an upload holds in memory (writer.py): bounds this process's memory
        # whatever the number of uploads
        self.part_slots = asyncio.Semaphore(params.maxbufferedparts)

    @classmethod
    def from_parameters(cls, params: Mapping[str, Any]) -> S3Driver:
        return cls(S3Params.parse(params))

    # -- keys -----------------------------------------------------------------------------

    def key(self, path: str) -> str:
        check_path(path)
        root = self.params.rootdirectory
        return (f"/{root}{path}" if root else path).lstrip("/")

    def _prefix(self, path: str) -> str:
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

    # -- small files ------------------------------------------------------------------------

    async def get_content(self, path: str, limit: int | None = None) -> bytes:
        check_path(path, file=True)
        resp = await self.s3.call("get_object", path, Key=self.key(path))
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
        check_path(path, file=True)
        await self.put_chunks(path, [data])

    async def put_chunks(
        self, path: str, chunks: Sequence[Chunk], key: str | None = None, marked: bool = False
    ) -> None:
        """One object made of ``chunks`` in order, sent without joining them (body.py), at
        ``key`` (the path's own by default: a writer may target a segment)."""
        await self.s3.call(
            "put_object",
            path,
            Key=key or self.key(path),
            Body=PartBody(chunks),
            **self.put_args(marked),
        )

    # -- streams ----------------------------------------------------------------------------

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        check_path(path, file=True)
        key = self.key(path)
        if length is not None and length <= 0:
            await self._check_offset(path, offset)
            return
        end = None if length is None else offset + length
        try:
            resp = await self._get(path, key, offset, end)
        except S3Error as exc:
            if exc.code != "InvalidRange":
                raise
            # past the head's end: the bytes are in segments, or this is the very end
            layout = await self._check_offset(path, offset)
            if layout.segments:
                async for chunk in self._read_pieces(path, layout, offset, end):
                    yield chunk
            return
        if is_marked(resp):  # a head of segments: read the file piece by piece
            resp["Body"].close()
            whole = await self._layout_of(path)
            if whole is None:
                raise PathNotFound(path)
            async for chunk in self._read_pieces(path, whole, offset, end):
                yield chunk
            return
        async for chunk in self._stream(path, resp["Body"]):
            yield chunk

    async def _get(self, path: str, key: str, offset: int, end: int | None) -> Any:
        args: dict[str, Any] = {"Key": key}
        if offset or end is not None:
            args["Range"] = f"bytes={offset}-{'' if end is None else end - 1}"
        return await self.s3.call("get_object", path, **args)

    async def _stream(self, path: str, body: Any) -> AsyncIterator[bytes]:
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

    async def _read_pieces(
        self, path: str, layout: FileLayout, offset: int, end: int | None
    ) -> AsyncIterator[bytes]:
        if offset > layout.size:
            raise InvalidOffset(f"{path}: offset {offset} beyond {layout.size}")
        for piece, start, stop in covering(layout, offset, layout.size if end is None else end):
            resp = await self._get(path, piece.key, start, stop)
            async for chunk in self._stream(path, resp["Body"]):
                yield chunk

    async def get_piece(self, path: str, piece: Piece) -> bytes:
        """The whole of one piece of a file (a writer carries a short last piece over)."""
        resp = await self._get(path, piece.key, 0, None)
        data = b"".join([chunk async for chunk in self._stream(path, resp["Body"])])
        if len(data) != piece.size:
            raise StorageError(f"{path}: changed by another writer")
        return data

    async def _check_offset(self, path: str, offset: int) -> FileLayout:
        layout = await self.layout(path)
        if layout is None:
            raise PathNotFound(path)
        if offset > layout.size:
            raise InvalidOffset(f"{path}: offset {offset} beyond {layout.size}")
        return layout

    async def writer(self, path: str, append: bool) -> S3Writer:
        check_path(path, file=True)
        return await S3Writer.open(self, path, append)

    # -- metadata ---------------------------------------------------------------------------

    async def stat(self, path: str) -> FileInfo:
        layout = await self.layout(path)
        if layout is None:
            return FileInfo(path, 0, 0.0, True)
        return FileInfo(path, layout.size, layout.mtime, False)

    async def layout(self, path: str) -> FileLayout | None:
        """The objects the file at ``path`` is made of; None for a directory.
        PathNotFound when there is neither."""
        layout = await self._layout_of(path)
        if layout is not None:
            return layout
        prefix = self._prefix(path)
        page = await self.s3.call("list_objects_v2", path, Prefix=prefix, MaxKeys=1)
        if page.get("Contents") or page.get("CommonPrefixes"):
            return None
        raise PathNotFound(path)

    async def _layout_of(self, path: str) -> FileLayout | None:
        """The file's head and segments; None when there is no object at the path's key."""
        key = self.key(path)
        if not key or path == "/":  # the root is a directory (SeaweedFS heads its folder)
            return None
        try:
            head = await self.s3.call("head_object", path, Key=key)
        except PathNotFound:
            return None
        mtime = head["LastModified"].timestamp() if head.get("LastModified") else 0.0
        piece = Piece(key, 0, int(head["ContentLength"]), mtime)
        if not is_marked(head):
            return FileLayout(piece)
        listed = [
            o
            async for page in self._pages(path, segment_prefix(key))
            for o in page.get("Contents", ())
        ]
        try:
            return resolve(piece, listed)
        except SegmentsInconsistent as exc:
            raise StorageError(str(exc)) from exc

    async def list(self, path: str) -> list[str]:
        prefix = self._prefix(path)
        names: list[str] = []
        async for page in self._pages(path, prefix, delimiter="/"):
            names += [o["Key"][len(prefix) :] for o in page.get("Contents", ())]
            names += [
                c["Prefix"][len(prefix) :].rstrip("/") for c in page.get("CommonPrefixes", ())
            ]
        # "": a "folder marker" object named like the prefix; "~": a file's segments
        names = [n for n in names if n and "~" not in n]
        if not names and path != "/":  # the root always exists, as in Distribution
            raise PathNotFound(path)
        return names

    async def _pages(
        self, path: str, prefix: str, delimiter: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        args: dict[str, Any] = {"Prefix": prefix, "MaxKeys": LIST_MAX}
        if delimiter:
            args["Delimiter"] = delimiter
        while True:
            page: dict[str, Any] = await self.s3.call("list_objects_v2", path, **args)
            yield page
            if not page.get("IsTruncated") or not page.get("NextContinuationToken"):
                return
            args["ContinuationToken"] = page["NextContinuationToken"]

    # -- segments ---------------------------------------------------------------------------

    async def mark(self, path: str, layout: FileLayout) -> None:
        """Let segments follow the head of ``layout``: drop leftovers of an earlier file at the
        path (truncated or replaced since), then set the marker (a copy of the head onto itself:
        once per file, and only for a file appended to more than once)."""
        prefix = segment_prefix(layout.head.key)
        leftovers = [
            o["Key"] async for page in self._pages(path, prefix) for o in page.get("Contents", ())
        ]
        await self._delete_keys(path, [*leftovers, prefix] if leftovers else [])
        await self.compose(path, [layout.head], layout.head.key, marked=True)
        layout.marked = True

    async def merge(self, path: str, layout: FileLayout) -> None:
        """Compose all the pieces into the head, then drop the segments (leftovers of a merge
        cut short are ignored by ``segments.resolve``: a head only ever grows)."""
        await self.compose(path, layout.pieces, layout.head.key, marked=True)
        stale = [p.key for p in layout.segments]
        layout.head = Piece(layout.head.key, 0, layout.size, layout.mtime)
        layout.segments = []
        await self._delete_keys(path, stale)

    async def compose(
        self, path: str, pieces: builtins.list[Piece], dst: str, marked: bool = False
    ) -> None:
        """One object at ``dst`` made of ``pieces`` in order, copied inside the store: CopyObject
        for one piece up to the copy threshold, else a multipart upload of UploadPartCopy ranges
        (pieces but the last are >= 5 MiB, so each can be parts of its own)."""
        pieces = [p for p in pieces if p.size] or pieces[:1]
        total = sum(p.size for p in pieces)
        if len(pieces) == 1 and total <= min(self.params.multipartcopythresholdsize, MAX_PART):
            await self.s3.call(
                "copy_object",
                path,
                Key=dst,
                CopySource={"Bucket": self.params.bucket, "Key": pieces[0].key},
                MetadataDirective="REPLACE",  # this object's headers, not the source's marker
                **self.put_args(marked),
            )
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
            "create_multipart_upload", path, Key=dst, **self.put_args(marked)
        )
        upload_id = upload["UploadId"]
        try:
            parts = await self.copy_parts(path, dst, upload_id, ranges)
            await self.s3.call(
                "complete_multipart_upload",
                path,
                Key=dst,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            await self.abort(path, dst, upload_id)
            raise

    # -- move and delete --------------------------------------------------------------------

    async def move(self, source: str, dest: str) -> None:
        check_path(source, file=True), check_path(dest, file=True)
        layout = await self.layout(source)
        if layout is None:
            raise PathNotFound(source)
        await self.compose(source, layout.pieces, self.key(dest))
        await self._delete_keys(source, self._keys_of(layout))

    async def publish(self, source: str, dest: str) -> bool:
        check_path(source, file=True), check_path(dest, file=True)
        if await self._layout_of(dest) is not None:
            return False
        await self.move(source, dest)
        return True

    async def lease(self, path: str) -> FlockLease | None:
        return self.locks.lease(self.key(path))

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
                    "upload_part_copy",
                    path,
                    Key=dst,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource={"Bucket": self.params.bucket, "Key": src},
                    CopySourceRange=f"bytes={start}-{end}",
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
                self.s3.call("abort_multipart_upload", path, Key=key, UploadId=upload_id)
            )
        except (StorageError, asyncio.CancelledError):
            pass

    @staticmethod
    def _keys_of(layout: FileLayout) -> builtins.list[str]:
        """The keys a file is stored in, and (when marked) its segments' folder entry."""
        keys = [p.key for p in layout.pieces]
        return [*keys, segment_prefix(layout.head.key)] if layout.marked else keys

    async def delete(self, path: str) -> None:
        """Delete the file or the tree at ``path``, and abort the multipart uploads a crashed
        writer left below it. The three listings go out at once: deleting an upload's folder
        ends every push, and each round trip is latency on it."""
        key, prefix = self.key(path), self._prefix(path)

        async def below() -> builtins.list[str]:
            return [
                o["Key"]
                async for page in self._pages(path, prefix)
                for o in page.get("Contents", ())
            ]

        async def own() -> FileLayout | None:
            return await self._layout_of(path) if key else None

        keys, layout, uploads = await asyncio.gather(
            below(), own(), self._uploads_below(path, prefix)
        )
        children = bool(keys)
        if layout is not None:
            keys += self._keys_of(layout)
        if not keys:
            raise PathNotFound(path)
        if children:
            keys += _folders(prefix, keys)
        await self._delete_keys(path, keys)
        if children:
            await asyncio.gather(*(self.abort(path, k, u) for k, u in uploads))

    async def _uploads_below(self, path: str, prefix: str) -> builtins.list[tuple[str, str]]:
        """(key, upload id) of the multipart uploads in progress below ``prefix``."""
        found: builtins.list[tuple[str, str]] = []
        args: dict[str, Any] = {"Prefix": prefix}
        while True:
            page = await self.s3.call("list_multipart_uploads", path, **args)
            found += [(u["Key"], u["UploadId"]) for u in page.get("Uploads", ())]
            if not page.get("IsTruncated"):
                return found
            args["KeyMarker"] = page.get("NextKeyMarker", "")
            args["UploadIdMarker"] = page.get("NextUploadIdMarker", "")

    async def _delete_keys(self, path: str, keys: builtins.list[str]) -> None:
        for i in range(0, len(keys), LIST_MAX):
            batch = [{"Key": k} for k in keys[i : i + LIST_MAX]]
            resp = await self.s3.call(
                "delete_objects", path, Delete={"Objects": batch, "Quiet": True}
            )
            if resp.get("Errors"):
                first = resp["Errors"][0]
                raise StorageError(f"s3 delete {path}: {first.get('Key')}: {first.get('Code')}")

    # -- the rest ---------------------------------------------------------------------------

    async def url_for(
        self, path: str, method: str = "GET", expires_in: float | None = None
    ) -> str | None:
        method = method.upper()
        if method not in ("GET", "HEAD"):
            return None
        return await self.s3.presign(method, self.key(path), expires_in or self.params.presignexpiry)

    def local_file(self, path: str) -> str | None:
        return None

    async def healthy(self) -> None:
        """One cheap authenticated call, so wrong credentials or bucket fail at start."""
        p = self.params
        try:
            await self.s3.call("list_objects_v2", "/", Prefix=self._prefix("/"), MaxKeys=1)
        except StorageError as exc:
            where = p.endpoint_url or f"AWS region {p.region}"
            raise StorageError(f"s3 bucket {p.bucket!r} at {where} is not usable: {exc}") from exc

    async def close(self) -> None:
        await self.s3.close()


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
