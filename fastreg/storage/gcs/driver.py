"""The GCS driver: Distribution's `gcs` layout in one bucket, over the JSON API (aiohttp).

A path `/docker/registry/v2/x` is the object `<rootdirectory>/docker/registry/v2/x` (no leading
slash, Distribution's `pathToKey`); directories are name prefixes. Small files are one media
upload; appended files go through resumable uploads and compose (`writer.py`); moves are
server-side rewrites, then a delete. Downloads redirect to V4 signed URLs when a service account
key is configured. `endpoint` points the driver at another JSON-API server (fake-gcs-server).
"""

from __future__ import annotations

import builtins
import datetime
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from yarl import URL

from fastreg.storage.base import FileInfo, InvalidOffset, PathNotFound, StorageError, check_path
from fastreg.storage.gcs.auth import GCSAuth, describe
from fastreg.storage.gcs.params import GCSParams
from fastreg.storage.gcs.writer import GCSWriter
from fastreg.storage.locks import FlockLease, HostLocks
from fastreg.storage.rest import (
    TRANSPORT_ERRORS,
    RestClient,
    RestError,
    RestSettings,
    delete_all,
)

READ_CHUNK = 1024 * 1024
LIST_MAX = 1000
DELETE_CONCURRENCY = 16


class GCSDriver:
    name = "gcs"
    leases_span_hosts = False  # host-local leases (storage/locks.py); many hosts need Redis

    def __init__(self, params: GCSParams) -> None:
        self.params = params
        self.locks = HostLocks(f"gcs {params.endpoint} {params.bucket}")
        self.auth = GCSAuth(params)
        self.rest = RestClient(
            RestSettings("gcs", params.maxretries, params.connecttimeout, params.readtimeout,
                         params.maxconcurrency),
            self.auth.sign,
            describe,
        )  # fmt: skip
        self.auth.rest = self.rest

    @classmethod
    def from_parameters(cls, params: Mapping[str, Any]) -> GCSDriver:
        return cls(GCSParams.parse(params))

    def key(self, path: str) -> str:
        return self.params.key(check_path(path))

    def _prefix(self, path: str) -> str:
        key = self.key(path).rstrip("/")
        return key + "/" if key else ""

    # -- URLs and calls ---------------------------------------------------------------------

    def url(
        self, kind: str, key: str = "", query: Mapping[str, str] | None = None, suffix: str = ""
    ) -> URL:
        """``kind``: "o" (an object, or the object list when ``key`` is ""), "upload", "b"."""
        base = f"{self.params.endpoint}/{'upload/' if kind == 'upload' else ''}storage/v1/b/"
        text = base + quote(self.params.bucket, safe="")
        if kind != "b":
            text += "/o" + (f"/{quote(key, safe='')}" if key else "") + suffix
        if query:
            text += "?" + urlencode(query, quote_via=quote)
        return URL(text, encoded=True)

    async def call(self, op: str, path: str, method: str, url: URL, **kw: Any) -> Any:
        return await self.rest.request(op, path, method, url, **kw)

    async def json(self, op: str, path: str, method: str, url: URL, **kw: Any) -> Any:
        resp = await self.call(op, path, method, url, **kw)
        return json.loads(await resp.read())

    async def upload(self, path: str, key: str, data: bytes) -> dict[str, Any]:
        url = self.url("upload", query={"uploadType": "media", "name": key})
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(data))}
        doc: dict[str, Any] = await self.json("upload", path, "POST", url, headers=headers,
                                              body=data)  # fmt: skip
        return doc

    async def metadata(self, path: str, key: str) -> dict[str, Any] | None:
        try:
            doc: dict[str, Any] = await self.json("stat", path, "GET", self.url("o", key))
        except PathNotFound:
            return None
        return doc

    async def delete_object(self, path: str, key: str) -> None:
        await self.call("delete", path, "DELETE", self.url("o", key), expect=(200, 204))

    # -- small files ------------------------------------------------------------------------

    async def get_content(self, path: str, limit: int | None = None) -> bytes:
        check_path(path, file=True)
        url = self.url("o", self.key(path), {"alt": "media"})
        resp = await self.call("get", path, "GET", url)
        if limit is not None and (resp.content_length or 0) > limit:
            raise StorageError(f"{path}: larger than {limit} bytes")
        data: bytes = await resp.read()
        if limit is not None and len(data) > limit:
            raise StorageError(f"{path}: larger than {limit} bytes")
        return data

    async def put_content(self, path: str, data: bytes) -> None:
        check_path(path, file=True)
        await self.upload(path, self.key(path), data)

    # -- streams ----------------------------------------------------------------------------

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
        url = self.url("o", self.key(path), {"alt": "media"})
        try:
            resp = await self.call(
                "get", path, "GET", url, headers=headers, expect=(200, 206), stream=True
            )
        except RestError as exc:
            if exc.status != 416:
                raise
            await self._check_offset(path, offset)  # at the very end: nothing to read
            return
        try:
            async for chunk in _chunks(resp, path):
                yield chunk
        finally:
            resp.release()

    async def _check_offset(self, path: str, offset: int) -> None:
        info = await self.stat(path)
        if info.is_dir:
            raise PathNotFound(path)
        if offset > info.size:
            raise InvalidOffset(f"{path}: offset {offset} beyond {info.size}")

    async def writer(self, path: str, append: bool) -> GCSWriter:
        check_path(path, file=True)
        return await GCSWriter.open(self, path, append)

    # -- metadata ---------------------------------------------------------------------------

    async def stat(self, path: str) -> FileInfo:
        key = self.key(path)
        if key:
            meta = await self.metadata(path, key)
            if meta is not None:
                updated = str(meta.get("updated") or "")
                mtime = datetime.datetime.fromisoformat(updated).timestamp() if updated else 0.0
                return FileInfo(path, int(meta.get("size", 0)), mtime, False)
        items, prefixes, _ = await self._list_page(path, self._prefix(path), None, "", 1)
        if items or prefixes:
            return FileInfo(path, 0, 0.0, True)
        raise PathNotFound(path)

    async def list(self, path: str) -> builtins.list[str]:
        prefix = self._prefix(path)
        names: builtins.list[str] = []
        token = ""
        while True:
            items, prefixes, token = await self._list_page(path, prefix, "/", token, LIST_MAX)
            names += [i[len(prefix) :] for i in items]
            names += [p[len(prefix) :].rstrip("/") for p in prefixes]
            if not token:
                break
        names = [n for n in names if n]
        if not names and path != "/":  # the root always exists, as in Distribution
            raise PathNotFound(path)
        return names

    async def _list_page(
        self, path: str, prefix: str, delimiter: str | None, token: str, limit: int
    ) -> tuple[builtins.list[str], builtins.list[str], str]:
        query = {"prefix": prefix, "maxResults": str(limit)}
        if delimiter:
            query["delimiter"] = delimiter
        if token:
            query["pageToken"] = token
        doc = await self.json("list", path, "GET", self.url("o", query=query))
        items = [str(i["name"]) for i in doc.get("items", ())]
        return items, [str(p) for p in doc.get("prefixes", ())], str(doc.get("nextPageToken", ""))

    # -- move and delete --------------------------------------------------------------------

    async def publish(self, source: str, dest: str) -> bool:
        """A move after a metadata GET of the destination: one request more per new blob."""
        check_path(source, file=True), check_path(dest, file=True)
        if await self.metadata(dest, self.key(dest)) is not None:
            return False
        await self.move(source, dest)
        return True

    async def lease(self, path: str) -> FlockLease | None:
        return self.locks.lease(self.key(path))

    async def move(self, source: str, dest: str) -> None:
        check_path(source, file=True), check_path(dest, file=True)
        src, dst = self.key(source), self.key(dest)
        suffix = f"/rewriteTo/b/{quote(self.params.bucket, safe='')}/o/{quote(dst, safe='')}"
        query: dict[str, str] = {}
        while True:  # large objects are rewritten in several calls
            url = self.url("o", src, query, suffix)
            doc = await self.json("rewrite", source, "POST", url,
                                  headers={"Content-Type": "application/json"}, body=b"{}")  # fmt: skip
            if doc.get("done"):
                break
            query = {"rewriteToken": str(doc["rewriteToken"])}
        await self.delete_object(source, src)

    async def delete(self, path: str) -> None:
        key, prefix = self.key(path), self._prefix(path)
        keys: builtins.list[str] = []
        token = ""
        while True:
            items, _, token = await self._list_page(path, prefix, None, token, LIST_MAX)
            keys += items
            if not token:
                break
        if key and await self.metadata(path, key) is not None:
            keys.append(key)
        if not keys:
            raise PathNotFound(path)
        await delete_all(keys, lambda name: self.delete_object(path, name), DELETE_CONCURRENCY)

    # -- the rest ---------------------------------------------------------------------------

    async def url_for(
        self, path: str, method: str = "GET", expires_in: float | None = None
    ) -> str | None:
        if method.upper() not in ("GET", "HEAD"):
            return None
        expiry = min(expires_in or self.params.presignexpiry, 7 * 24 * 3600.0)
        return self.auth.signed_url(self.key(path), expiry, method.upper())

    def local_file(self, path: str) -> str | None:
        return None

    async def healthy(self) -> None:
        """Authenticate and check the bucket exists (the token is fetched here, at start)."""
        p = self.params
        try:
            await self.call("health", "/", "GET", self.url("b"))
        except StorageError as exc:
            if isinstance(exc, PathNotFound):
                exc = StorageError("the bucket does not exist")
            raise StorageError(
                f"gcs bucket {p.bucket!r} at {p.endpoint} is not usable: {exc}"
            ) from exc

    async def close(self) -> None:
        await self.rest.close()


async def _chunks(resp: aiohttp.ClientResponse, path: str) -> AsyncIterator[bytes]:
    while True:
        try:
            chunk = await resp.content.read(READ_CHUNK)
        except TRANSPORT_ERRORS as exc:
            raise StorageError(f"gcs get {path}: {type(exc).__name__}: {exc}") from exc
        if not chunk:
            return
        yield chunk
