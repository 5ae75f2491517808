"""GCS's object primitives on one bucket (objectstore.Objects), over the JSON API, for driver and
writer.

A path `/docker/registry/v2/x` is the object `<rootdirectory>/docker/registry/v2/x` (no leading
slash, Distribution's `pathToKey`). A small file is one media upload; a copy is a server-side
rewrite, in several calls for a large object. `endpoint` points at another JSON-API server
(fake-gcs-server). Requests go through the shared retrying client (rest.py), signed by `auth`.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from yarl import URL

from fastreg.storage.base import PathNotFound, StorageError, check_path
from fastreg.storage.gcs.auth import GCSAuth, describe
from fastreg.storage.gcs.params import SIGNED_URL_MAX, GCSParams
from fastreg.storage.objectstore import Bucket, ListPage, ObjectInfo, byte_range
from fastreg.storage.rest import RestClient, RestSettings

LIST_MAX = 1000


class GCSObjects:
    def __init__(self, params: GCSParams) -> None:
        self.params = params
        self.bucket = Bucket("gcs", "bucket", params.bucket, params.endpoint)
        self.auth = GCSAuth(params)
        settings = RestSettings.of("gcs", params, connections=params.maxconcurrency)
        self.rest = RestClient(settings, self.auth.sign, describe)
        self.auth.rest = self.rest  # the token request shares the pool

    def key(self, path: str) -> str:
        return self.params.key(check_path(path))

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

    async def head(self, path: str, key: str) -> ObjectInfo | None:
        """The object's metadata document (``meta``: size, updated, componentCount...)."""
        try:
            meta: dict[str, Any] = await self.json("stat", path, "GET", self.url("o", key))
        except PathNotFound:
            return None
        updated = str(meta.get("updated") or "")
        mtime = datetime.datetime.fromisoformat(updated).timestamp() if updated else 0.0
        return ObjectInfo(int(meta.get("size", 0)), mtime, meta)

    async def get(
        self, path: str, key: str, start: int = 0, end: int | None = None
    ) -> aiohttp.ClientResponse:
        url = self.url("o", key, {"alt": "media"})
        resp: aiohttp.ClientResponse = await self.call(
            "get", path, "GET", url, headers=byte_range(start, end), expect=(200, 206), stream=True
        )
        return resp

    async def put(self, path: str, key: str, data: bytes) -> None:
        url = self.url("upload", query={"uploadType": "media", "name": key})
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(data))}
        await self.call("upload", path, "POST", url, headers=headers, body=data)

    async def list_page(
        self, path: str, prefix: str, delimiter: str | None, token: str, limit: int | None = None
    ) -> ListPage:
        query = {"prefix": prefix, "maxResults": str(limit or LIST_MAX)}
        if delimiter:
            query["delimiter"] = delimiter
        if token:
            query["pageToken"] = token
        doc = await self.json("list", path, "GET", self.url("o", query=query))
        items = [(str(i["name"]), int(i.get("size", 0))) for i in doc.get("items", ())]
        prefixes = [str(p) for p in doc.get("prefixes", ())]
        return ListPage(items, prefixes, str(doc.get("nextPageToken", "")))

    async def copy(self, path: str, source: str, dest: str) -> None:
        suffix = f"/rewriteTo/b/{quote(self.params.bucket, safe='')}/o/{quote(dest, safe='')}"
        query: dict[str, str] = {}
        while True:  # large objects are rewritten in several calls
            url = self.url("o", source, query, suffix)
            headers = {"Content-Type": "application/json"}
            doc = await self.json("rewrite", path, "POST", url, headers=headers, body=b"{}")
            if doc.get("done"):
                return
            query = {"rewriteToken": str(doc["rewriteToken"])}

    async def delete(self, path: str, key: str) -> None:
        await self.call("delete", path, "DELETE", self.url("o", key), expect=(200, 204))

    async def signed_url(self, key: str, method: str, expires_in: float | None) -> str | None:
        expiry = min(expires_in or self.params.presignexpiry, SIGNED_URL_MAX)
        return self.auth.signed_url(key, expiry, method)

    async def healthy(self) -> None:
        """Authenticate and check the bucket exists (the token is fetched here, at start)."""
        try:
            await self.call("health", "/", "GET", self.url("b"))
        except PathNotFound as exc:
            raise StorageError("the bucket does not exist") from exc

    async def close(self) -> None:
        await self.rest.close()
