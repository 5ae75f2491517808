"""Swift's object primitives on one container (objectstore.Objects), and its large objects, for
driver and writer.

A path `/docker/registry/v2/x` is the object `<prefix>/files/docker/registry/v2/x` (Distribution's
`swiftPath`). Files written by a writer are Dynamic Large Objects: an empty manifest object at the
file's name whose `X-Object-Manifest` names a segment prefix `<prefix>/segments/<3 hex>/<37 hex>`,
and segments `<that>/%016d` beside the files (Distribution's layout, so either server reads the
other's uploads and blobs). Small files are plain objects. Requests go through `client.SwiftClient`
(the token, renewed when refused, over the shared retrying client).
"""

from __future__ import annotations

import builtins
import hashlib
import os
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote

import aiohttp

from fastreg.storage.base import PathNotFound, StorageError, check_path
from fastreg.storage.objectstore import (
    DELETE_CONCURRENCY,
    Bucket,
    ListPage,
    ObjectInfo,
    byte_range,
    delete_all,
    listing,
)
from fastreg.storage.swift.client import SwiftClient
from fastreg.storage.swift.params import SwiftParams

CONTENT_TYPE = "application/octet-stream"
TEMP_URL_EXPIRY = 1200.0


def segment_name(prefix: str, number: int) -> str:
    return f"{prefix}/{number:016d}"


class SwiftObjects:
    def __init__(self, params: SwiftParams) -> None:
        self.params = params
        self.bucket = Bucket("swift", "container", params.container, params.authurl)
        self.swift = SwiftClient(params)

    def key(self, path: str) -> str:
        check_path(path)
        return f"{self.params.prefix}/files{path}".strip("/")

    # -- the primitives -----------------------------------------------------------------------

    async def head(self, path: str, key: str) -> ObjectInfo | None:
        """HEAD of the object; ``meta`` holds its headers (a manifest's `X-Object-Manifest`)."""
        try:
            resp = await self.swift.request("head", path, "HEAD", key)
        except PathNotFound:
            return None
        headers = resp.headers
        return ObjectInfo(int(headers.get("Content-Length", 0)), _mtime(headers), headers)

    async def get(
        self, path: str, key: str, start: int = 0, end: int | None = None
    ) -> aiohttp.ClientResponse:
        return await self.swift.request(
            "get", path, "GET", key, headers=byte_range(start, end), expect=(200, 206), stream=True
        )

    async def put(
        self, path: str, key: str, data: bytes, headers: Mapping[str, str] | None = None
    ) -> None:
        # 202: the proxy's "Object PUT returning 202 for 409": a racing PUT with the same or a
        # later timestamp is already stored whole; a racing writer is promised no more than that
        await self.swift.request(
            "put", path, "PUT", key, body=data, expect=(201, 202),
            headers={"Content-Type": CONTENT_TYPE, **(headers or {})},
        )  # fmt: skip

    async def list_page(
        self, path: str, prefix: str, delimiter: str | None, token: str, limit: int | None = None
    ) -> ListPage:
        """A page of the container listing in name order; the next starts after its last name."""
        query = {"format": "json", "prefix": prefix}
        if delimiter:
            query["delimiter"] = delimiter
        if limit or self.params.pagesize:
            query["limit"] = str(limit or self.params.pagesize)
        if token:
            query["marker"] = token
        resp = await self.swift.request("list", path, "GET", query=query, expect=(200, 204))
        entries = await resp.json(content_type=None) if resp.status == 200 else []
        objects = [(e["name"], int(e.get("bytes", 0))) for e in entries if "subdir" not in e]
        prefixes = [e["subdir"] for e in entries if "subdir" in e]
        last = entries[-1] if entries else {}
        return ListPage(objects, prefixes, last.get("subdir") or last.get("name") or "")

    async def copy(self, path: str, source: str, dest: str) -> None:
        """A server-side copy of a plain object (X-Copy-From)."""
        await self.put(path, dest, b"", {"X-Copy-From": self.copy_source(source)})

    async def delete(self, path: str, key: str) -> None:
        await self.swift.request("delete", path, "DELETE", key, expect=(204,))

    async def signed_url(self, key: str, method: str, expires_in: float | None) -> str | None:
        # a temp URL signed for GET also answers HEAD (Swift's tempurl middleware)
        if "GET" not in await self.swift.tempurl_methods():
            return None
        return await self.swift.temp_url(key, "GET", expires_in or TEMP_URL_EXPIRY)

    async def healthy(self) -> None:
        """Authenticate; create the container when missing (at start, as Distribution does)."""
        try:
            await self.swift.request("health", "/", "HEAD")
        except PathNotFound:
            await self.swift.request("health", "/", "PUT", expect=(201, 202))

    async def close(self) -> None:
        await self.swift.close()

    # -- large objects ------------------------------------------------------------------------

    def new_segments(self, path: str) -> str:
        """A fresh segment prefix: sha1 of the path and 32 random bytes (Distribution's names)."""
        digest = hashlib.sha1(path.encode() + os.urandom(32), usedforsecurity=False).hexdigest()
        return f"{self.params.prefix}/segments/{digest[:3]}/{digest[3:]}".strip("/")

    def copy_source(self, key: str) -> str:
        """An `X-Copy-From` value: the object ``key`` of this container."""
        return f"/{quote(self.params.container, safe='')}/{quote(key)}"

    def segments_of(self, info: ObjectInfo | None) -> str | None:
        """The segment prefix of a DLO manifest in this container, None for a plain object."""
        value = info.meta.get("X-Object-Manifest") if info else None
        if not value:
            return None
        container, _, prefix = unquote(value).partition("/")
        if container != self.params.container:
            raise StorageError(f"swift: manifest points to another container ({container!r})")
        return prefix

    async def put_manifest(self, path: str, key: str, segments: str) -> None:
        value = f"{quote(self.params.container, safe='')}/{quote(segments)}"
        await self.put(path, key, b"", {"X-Object-Manifest": value})

    async def entries(self, path: str, prefix: str) -> builtins.list[tuple[str, int]]:
        """(name, size) of every object below ``prefix``."""
        return [o async for page in listing(self, path, prefix) for o in page.objects]

    async def delete_segments(self, path: str, segments: str) -> None:
        names = [name for name, _ in await self.entries(path, segments + "/")]
        await delete_all(names, lambda name: self.delete(path, name), DELETE_CONCURRENCY)

    async def segments(self, path: str, prefix: str) -> builtins.list[tuple[int, int]]:
        """(number, size) of every segment of a DLO, in order.

        The listing may lag behind the newest segments on a real cluster (eventual consistency):
        as Distribution does, the numbers after the last one listed are checked with HEAD.
        """
        found: dict[int, int] = {}
        for name, size in await self.entries(path, prefix + "/"):
            tail = name[len(prefix) + 1 :]
            if tail.isdigit():
                found[int(tail)] = size
        number = max(found, default=0) + 1
        while (info := await self.head(path, segment_name(prefix, number))) is not None:
            found[number] = info.size
            number += 1
        return sorted(found.items())


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
