"""The S3 driver: Distribution's `s3` driver layout on any S3-compatible store.

A path `/docker/registry/v2/x` is the key `<rootdirectory>/docker/registry/v2/x` without a leading
slash (Distribution's `s3Path`), so Distribution and fastreg serve the same bucket. Directories are
key prefixes. Moves are server-side copies (multipart above `multipartcopythresholdsize`, always
above 5 GiB where CopyObject cannot go) followed by a delete of the source.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from fastreg.storage.base import FileInfo, InvalidOffset, PathNotFound, StorageError, check_path
from fastreg.storage.s3.body import Chunk, PartBody
from fastreg.storage.s3.client import TRANSPORT_ERRORS, S3Client, S3Error, translate
from fastreg.storage.s3.params import MAX_PART, MAX_PARTS, S3Params, split
from fastreg.storage.s3.writer import S3Writer

READ_CHUNK = 1024 * 1024
LIST_MAX = 1000


class S3Driver:
    name = "s3"

    def __init__(self, params: S3Params) -> None:
        self.params = params
        self.s3 = S3Client(params)
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

    def put_args(self) -> dict[str, str]:
        """Headers every new object gets: content type, storage class, server-side encryption."""
        p = self.params
        args = {"ContentType": "application/octet-stream"}
        if p.storageclass:
            args["StorageClass"] = p.storageclass
        if p.encrypt:
            args["ServerSideEncryption"] = "aws:kms" if p.keyid else "AES256"
            if p.keyid:
                args["SSEKMSKeyId"] = p.keyid
        return args

    # -- small files ------------------------------------------------------------------------

    async def get_content(self, path: str, limit: int | None = None) -> bytes:
        resp = await self.s3.call("get_object", path, Key=self.key(path))
        body = resp["Body"]
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
        await self.put_chunks(path, [data])

    async def put_chunks(self, path: str, chunks: Sequence[Chunk]) -> None:
        """One object made of ``chunks`` in order, sent without joining them (body.py)."""
        await self.s3.call(
            "put_object", path, Key=self.key(path), Body=PartBody(chunks), **self.put_args()
        )

    # -- streams ----------------------------------------------------------------------------

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        key = self.key(path)
        if length is not None and length <= 0:
            await self._check_offset(path, offset)
            return
        args: dict[str, Any] = {"Key": key}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            args["Range"] = f"bytes={offset}-{end}"
        try:
            resp = await self.s3.call("get_object", path, **args)
        except S3Error as exc:
            if exc.code != "InvalidRange":
                raise
            await self._check_offset(path, offset)  # at the very end: nothing to read
            return
        body = resp["Body"]
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

    async def _check_offset(self, path: str, offset: int) -> None:
        info = await self.stat(path)
        if info.is_dir:
            raise PathNotFound(path)
        if offset > info.size:
            raise InvalidOffset(f"{path}: offset {offset} beyond {info.size}")

    async def writer(self, path: str, append: bool) -> S3Writer:
        return await S3Writer.open(self, path, append)

    # -- metadata ---------------------------------------------------------------------------

    async def stat(self, path: str) -> FileInfo:
        key = self.key(path)
        if key:
            try:
                head = await self.s3.call("head_object", path, Key=key)
                mtime = head["LastModified"].timestamp() if head.get("LastModified") else 0.0
                return FileInfo(path, int(head["ContentLength"]), mtime, False)
            except PathNotFound:
                pass
        page = await self.s3.call("list_objects_v2", path, Prefix=self._prefix(path), MaxKeys=1)
        if page.get("Contents") or page.get("CommonPrefixes"):
            return FileInfo(path, 0, 0.0, True)
        raise PathNotFound(path)

    async def list(self, path: str) -> list[str]:
        prefix = self._prefix(path)
        names: list[str] = []
        async for page in self._pages(path, prefix, delimiter="/"):
            names += [o["Key"][len(prefix) :] for o in page.get("Contents", ())]
            names += [
                c["Prefix"][len(prefix) :].rstrip("/") for c in page.get("CommonPrefixes", ())
            ]
        names = [n for n in names if n]  # a "folder marker" object named like the prefix
        if not names:
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

    # -- move and delete --------------------------------------------------------------------

    async def move(self, source: str, dest: str) -> None:
        info = await self.stat(source)
        if info.is_dir:
            raise PathNotFound(source)
        src, dst = self.key(source), self.key(dest)
        if info.size <= min(self.params.multipartcopythresholdsize, MAX_PART):
            await self.s3.call(
                "copy_object",
                source,
                Key=dst,
                CopySource={"Bucket": self.params.bucket, "Key": src},
                **self.put_args(),
            )
        else:
            await self.multipart_copy(source, src, dst, info.size)
        await self.s3.call("delete_object", source, Key=src)

    async def multipart_copy(self, path: str, src: str, dst: str, size: int) -> None:
        upload = await self.s3.call("create_multipart_upload", path, Key=dst, **self.put_args())
        upload_id = upload["UploadId"]
        try:
            chunk = max(self.params.multipartcopychunksize, -(-size // MAX_PARTS))
            parts = await self.copy_parts(path, src, dst, upload_id, split(size, chunk), 1)
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

    async def copy_parts(
        self,
        path: str,
        src: str,
        dst: str,
        upload_id: str,
        ranges: builtins.list[tuple[int, int]],
        first: int,
    ) -> builtins.list[dict[str, Any]]:
        """UploadPartCopy ``ranges`` of ``src`` as parts ``first, first+1, ...``, in parallel."""
        limit = asyncio.Semaphore(self.params.multipartcopymaxconcurrency)

        async def one(number: int, start: int, end: int) -> dict[str, Any]:
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

        tasks = [asyncio.ensure_future(one(first + i, s, e)) for i, (s, e) in enumerate(ranges)]
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

    async def delete(self, path: str) -> None:
        key, prefix = self.key(path), self._prefix(path)
        keys = [
            o["Key"] async for page in self._pages(path, prefix) for o in page.get("Contents", ())
        ]
        children = bool(keys)
        if key:
            try:
                await self.s3.call("head_object", path, Key=key)
                keys.append(key)
            except PathNotFound:
                pass
        if not keys:
            raise PathNotFound(path)
        if children:
            keys += _folders(prefix, keys)
        for i in range(0, len(keys), LIST_MAX):
            batch = [{"Key": k} for k in keys[i : i + LIST_MAX]]
            resp = await self.s3.call(
                "delete_objects", path, Delete={"Objects": batch, "Quiet": True}
            )
            if resp.get("Errors"):
                first = resp["Errors"][0]
                raise StorageError(f"s3 delete {path}: {first.get('Key')}: {first.get('Code')}")
        if children:
            await self._abort_uploads(path, prefix)

    async def _abort_uploads(self, path: str, prefix: str) -> None:
        """Abort multipart uploads left below a deleted directory by a writer that crashed."""
        args: dict[str, Any] = {"Prefix": prefix}
        while True:
            page = await self.s3.call("list_multipart_uploads", path, **args)
            for upload in page.get("Uploads", ()):
                await self.abort(path, upload["Key"], upload["UploadId"])
            if not page.get("IsTruncated"):
                return
            args["KeyMarker"] = page.get("NextKeyMarker", "")
            args["UploadIdMarker"] = page.get("NextUploadIdMarker", "")

    # -- the rest ---------------------------------------------------------------------------

    async def url_for(
        self, path: str, method: str = "GET", expires_in: float | None = None
    ) -> str | None:
        op = {"GET": "get_object", "HEAD": "head_object"}.get(method.upper())
        if op is None:
            return None
        return await self.s3.presign(op, self.key(path), expires_in or self.params.presignexpiry)

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
