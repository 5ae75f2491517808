"""The Swift driver: Distribution's `swift` driver layout in one container.

A path `/docker/registry/v2/x` is the object `<prefix>/files/docker/registry/v2/x` (Distribution's
`swiftPath`); directories are name prefixes, listed with `delimiter=/`. Files written by a writer
are Dynamic Large Objects: an empty manifest object at the file's name whose `X-Object-Manifest`
names a segment prefix `<prefix>/segments/<3 hex>/<37 hex>`, and segments `<that>/%016d` beside the
files (Distribution's layout, so either server reads the other's uploads and blobs). Small files
(`put_content`) are plain objects. A move re-points a manifest, or copies a plain object server-side.
"""

from __future__ import annotations

import builtins
import hashlib
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, unquote

from fastreg.storage.base import FileInfo, InvalidOffset, PathNotFound, StorageError, check_path
from fastreg.storage.locks import FlockLease, HostLocks
from fastreg.storage.rest import TRANSPORT_ERRORS, RestError, delete_all
from fastreg.storage.swift.client import SwiftClient
from fastreg.storage.swift.params import SwiftParams
from fastreg.storage.swift.writer import SwiftWriter, segment_name

READ_CHUNK = 1024 * 1024
CONTENT_TYPE = "application/octet-stream"
DELETE_CONCURRENCY = 16


class SwiftDriver:
    name = "swift"
    leases_span_hosts = False  # host-local leases (storage/locks.py); many hosts need Redis

    def __init__(self, params: SwiftParams) -> None:
        self.params = params
        self.swift = SwiftClient(params)
        self.locks = HostLocks(f"swift {params.authurl} {params.container}")

    @classmethod
    def from_parameters(cls, params: Mapping[str, Any]) -> SwiftDriver:
        return cls(SwiftParams.parse(params))

    # -- names --------------------------------------------------------------------------------

    def key(self, path: str) -> str:
        check_path(path)
        return f"{self.params.prefix}/files{path}".strip("/")

    def new_segments(self, path: str) -> str:
        """A fresh segment prefix: sha1 of the path and 32 random bytes, as Distribution names it."""
        digest = hashlib.sha1(path.encode() + os.urandom(32), usedforsecurity=False).hexdigest()
        return f"{self.params.prefix}/segments/{digest[:3]}/{digest[3:]}".strip("/")

    def manifest_value(self, segments: str) -> str:
        return f"{quote(self.params.container, safe='')}/{quote(segments)}"

    def copy_source(self, key: str) -> str:
        """An `X-Copy-From` value: the object ``key`` of this container."""
        return f"/{quote(self.params.container, safe='')}/{quote(key)}"

    def segments_of(self, headers: Mapping[str, str]) -> str | None:
        """The segment prefix of a DLO manifest in this container, None for a plain object."""
        value = headers.get("X-Object-Manifest")
        if not value:
            return None
        container, _, prefix = unquote(value).partition("/")
        if container != self.params.container:
            raise StorageError(f"swift: manifest points to another container ({container!r})")
        return prefix

    # -- small files --------------------------------------------------------------------------

    async def get_content(self, path: str, limit: int | None = None) -> bytes:
        check_path(path, file=True)
        resp = await self.swift.request("get", path, "GET", self.key(path), stream=True)
        try:
            if limit is not None and (resp.content_length or 0) > limit:
                raise StorageError(f"{path}: larger than {limit} bytes")
            data = await resp.read()
        except TRANSPORT_ERRORS as exc:
            raise StorageError(f"swift get {path}: {type(exc).__name__}: {exc}") from exc
        finally:
            resp.release()
        if limit is not None and len(data) > limit:
            raise StorageError(f"{path}: larger than {limit} bytes")
        return data

    async def put_content(self, path: str, data: bytes) -> None:
        check_path(path, file=True)
        await self.put(path, self.key(path), data)

    async def put(self, path: str, key: str, data: bytes, headers: Mapping[str, str] = {}) -> None:
        await self.swift.request(
            "put", path, "PUT", key, body=data, expect=(201,),
            headers={"Content-Type": CONTENT_TYPE, **headers},
        )  # fmt: skip

    async def put_manifest(self, path: str, segments: str) -> None:
        await self.put(
            path, self.key(path), b"", {"X-Object-Manifest": self.manifest_value(segments)}
        )

    # -- streams ------------------------------------------------------------------------------

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        check_path(path, file=True)
        if length is not None and length <= 0:
            await self._check_offset(path, offset)
            return
        headers = {}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            headers["Range"] = f"bytes={offset}-{end}"
        try:
            resp = await self.swift.request(
                "get", path, "GET", self.key(path), headers=headers, expect=(200, 206), stream=True
            )
        except RestError as exc:
            if exc.status != 416:
                raise
            await self._check_offset(path, offset)  # at the very end (or empty): nothing to read
            return
        try:
            while chunk := await resp.content.read(READ_CHUNK):
                yield chunk
        except TRANSPORT_ERRORS as exc:
            raise StorageError(f"swift get {path}: {type(exc).__name__}: {exc}") from exc
        finally:
            resp.release()

    async def _check_offset(self, path: str, offset: int) -> None:
        info = await self.stat(path)
        if info.is_dir:
            raise PathNotFound(path)
        if offset > info.size:
            raise InvalidOffset(f"{path}: offset {offset} beyond {info.size}")

    async def writer(self, path: str, append: bool) -> SwiftWriter:
        check_path(path, file=True)
        return await SwiftWriter.open(self, path, append)

    # -- metadata -----------------------------------------------------------------------------

    async def head(self, path: str, key: str | None = None) -> Mapping[str, str]:
        resp = await self.swift.request("head", path, "HEAD", key or self.key(path))
        return resp.headers

    async def stat(self, path: str) -> FileInfo:
        try:
            headers = await self.head(path)
            return FileInfo(path, int(headers.get("Content-Length", 0)), _mtime(headers), False)
        except PathNotFound:
            pass
        async for _ in self.objects(path, self.key(path) + "/", limit=1):
            return FileInfo(path, 0, 0.0, True)
        raise PathNotFound(path)

    async def list(self, path: str) -> list[str]:
        prefix = self.key(path) + "/"
        names = [
            (entry.get("subdir") or entry["name"])[len(prefix) :].rstrip("/")
            async for entry in self.objects(path, prefix, delimiter="/")
        ]
        names = [n for n in names if n]
        if not names and path != "/":  # the root always exists, as in Distribution
            raise PathNotFound(path)
        return names

    async def objects(
        self, path: str, prefix: str, delimiter: str | None = None, limit: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Container listing entries below ``prefix`` in name order, page by page (`marker`)."""
        query = {"format": "json", "prefix": prefix}
        if delimiter:
            query["delimiter"] = delimiter
        page_size = limit or self.params.pagesize
        if page_size:
            query["limit"] = str(page_size)
        seen = 0
        while True:
            resp = await self.swift.request("list", path, "GET", query=query, expect=(200, 204))
            page = await resp.json(content_type=None) if resp.status == 200 else []
            for entry in page:
                yield entry
                seen += 1
                if limit is not None and seen >= limit:
                    return
            if not page:
                return
            last = page[-1]
            query["marker"] = last.get("subdir") or last["name"]

    async def segments(self, path: str, prefix: str) -> builtins.list[tuple[int, int]]:
        """(number, size) of every segment of a DLO, in order.

        The listing may lag behind the newest segments on a real cluster (eventual consistency):
        as Distribution does, the numbers after the last one listed are checked with HEAD.
        """
        found: dict[int, int] = {}
        async for entry in self.objects(path, prefix + "/"):
            number = entry["name"][len(prefix) + 1 :]
            if number.isdigit():
                found[int(number)] = int(entry.get("bytes", 0))
        number = max(found, default=0) + 1
        while True:
            try:
                headers = await self.head(path, segment_name(prefix, number))
            except PathNotFound:
                break
            found[number] = int(headers.get("Content-Length", 0))
            number += 1
        return sorted(found.items())

    # -- move and delete ----------------------------------------------------------------------

    async def move(self, source: str, dest: str) -> None:
        check_path(source, file=True), check_path(dest, file=True)
        try:
            replaced = self.segments_of(await self.head(dest))
        except PathNotFound:
            replaced = None
        await self._move(source, dest, replaced)

    async def publish(self, source: str, dest: str) -> bool:
        """The HEAD of the destination a move makes anyway decides: no request more."""
        check_path(source, file=True), check_path(dest, file=True)
        try:
            await self.head(dest)
        except PathNotFound:
            await self._move(source, dest, None)
            return True
        return False

    async def lease(self, path: str) -> FlockLease | None:
        return self.locks.lease(self.key(path))

    async def _move(self, source: str, dest: str, replaced: str | None) -> None:
        """Move ``source`` over ``dest``, whose DLO segments were ``replaced`` (None: none)."""
        src, dst = self.key(source), self.key(dest)
        segments = self.segments_of(await self.head(source))
        if segments is not None:
            await self.put_manifest(dest, segments)
        else:
            await self.put(source, dst, b"", {"X-Copy-From": self.copy_source(src)})
        await self.swift.request("delete", source, "DELETE", src, expect=(204,))
        if replaced is not None and replaced != segments:
            await self.delete_segments(dest, replaced)

    async def delete(self, path: str) -> None:
        key = self.key(path)
        names: builtins.list[str] = []
        manifests: builtins.list[str] = []
        try:
            segments = self.segments_of(await self.head(path))
            names.append(key)
            if segments is not None:
                manifests.append(segments)
        except PathNotFound:
            pass
        async for entry in self.objects(path, key + "/"):
            names.append(entry["name"])
            if int(entry.get("bytes", 0)) == 0:  # a DLO manifest lists as an empty object
                try:
                    found = self.segments_of(await self.head(path, entry["name"]))
                except PathNotFound:
                    continue
                if found is not None:
                    manifests.append(found)
        if not names:
            raise PathNotFound(path)
        # manifests first: a reader never sees a file whose segments are half gone
        await self._delete_all(path, names)
        for segments in manifests:
            await self.delete_segments(path, segments)

    async def delete_segments(self, path: str, segments: str) -> None:
        await self._delete_all(
            path, [entry["name"] async for entry in self.objects(path, segments + "/")]
        )

    async def _delete_all(self, path: str, names: Iterable[str]) -> None:
        async def one(name: str) -> None:
            await self.swift.request("delete", path, "DELETE", name, expect=(204,))

        await delete_all(list(names), one, DELETE_CONCURRENCY)

    # -- the rest -----------------------------------------------------------------------------

    async def url_for(self, path: str, method: str = "GET", expires_in: float = 1200) -> str | None:
        method = method.upper()
        if method not in ("GET", "HEAD"):
            return None
        # a temp URL signed for GET also answers HEAD (Swift's tempurl middleware)
        if "GET" not in await self.swift.tempurl_methods():
            return None
        return await self.swift.temp_url(self.key(path), "GET", expires_in)

    def local_file(self, path: str) -> str | None:
        return None

    async def healthy(self) -> None:
        """Authenticate and make sure the container exists (created at start, as Distribution does)."""
        p = self.params
        try:
            try:
                await self.swift.request("health", "/", "HEAD")
            except PathNotFound:
                await self.swift.request("health", "/", "PUT", expect=(201, 202))
        except StorageError as exc:
            raise StorageError(
                f"swift container {p.container!r} at {p.authurl} is not usable: {exc}"
            ) from exc

    async def close(self) -> None:
        await self.swift.close()


def _mtime(headers: Mapping[str, str]) -> float:
    stamp = headers.get("X-Timestamp")
    if stamp:
        try:
            return float(stamp)
        except ValueError:
            pass
    modified = headers.get("Last-Modified")
    if modified:
        try:
            return parsedate_to_datetime(modified).timestamp()
        except (TypeError, ValueError):
            pass
    return 0.0
