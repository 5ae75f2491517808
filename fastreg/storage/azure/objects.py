"""Azure Blob's object primitives on one container (objectstore.Objects), for driver and writer.

Files are block blobs named by `AzureParams.blob_name`. A small file is one Put Blob (atomic);
a copy is a server-side Copy Blob from a SAS URL of the source (as Distribution 3 does), polled
until done. Requests go through the shared retrying client (rest.py), signed by `client.AzureAuth`.
"""

from __future__ import annotations

import asyncio
import email.utils
import xml.etree.ElementTree as ET
from typing import Any

import aiohttp

from fastreg.storage.azure.client import AzureAuth, describe
from fastreg.storage.azure.params import AzureParams
from fastreg.storage.base import PathNotFound, StorageError, check_path
from fastreg.storage.objectstore import Bucket, ListPage, ObjectInfo, byte_range
from fastreg.storage.rest import RestClient, RestError, RestSettings

LIST_MAX = 5000


class AzureObjects:
    def __init__(self, params: AzureParams) -> None:
        self.params = params
        self.bucket = Bucket("azure", "container", params.container, params.service_url)
        self.auth = AzureAuth(params)
        self.rest = RestClient(RestSettings.of("azure", params), self.auth.sign, describe)

    def key(self, path: str) -> str:
        return self.params.blob_name(check_path(path))

    async def call(self, op: str, path: str, method: str, name: str | None, **kw: Any) -> Any:
        """One request on a blob (``name``) or, when ``name`` is None, on the container."""
        query = kw.pop("query", None)
        url = self.auth.container_url(query) if name is None else self.auth.blob_url(name, query)
        return await self.rest.request(op, path, method, url, **kw)

    async def head(self, path: str, key: str) -> ObjectInfo | None:
        """Get Blob Properties; ``meta`` holds its headers."""
        try:
            resp = await self.call("head", path, "HEAD", key)
        except PathNotFound:
            return None
        headers = resp.headers
        modified = email.utils.parsedate_to_datetime(headers["Last-Modified"]).timestamp()
        return ObjectInfo(int(headers["Content-Length"]), modified, headers)

    async def get(
        self, path: str, key: str, start: int = 0, end: int | None = None
    ) -> aiohttp.ClientResponse:
        headers = byte_range(start, end, "x-ms-range")
        resp: aiohttp.ClientResponse = await self.call(
            "get", path, "GET", key, headers=headers, expect=(200, 206), stream=True
        )
        return resp

    async def put(self, path: str, key: str, data: bytes) -> None:
        headers = {"x-ms-blob-type": "BlockBlob", "Content-Type": "application/octet-stream",
                   "Content-Length": str(len(data))}  # fmt: skip
        try:
            await self.call("put", path, "PUT", key, headers=headers, body=data, expect=(201,))
        except RestError as exc:
            if exc.code != "InvalidBlobType":
                raise
            # an append blob (Distribution 2.8's uploads) cannot be overwritten by Put Blob
            await self.delete(path, key)
            await self.call("put", path, "PUT", key, headers=headers, body=data, expect=(201,))

    async def list_page(
        self, path: str, prefix: str, delimiter: str | None, token: str, limit: int | None = None
    ) -> ListPage:
        query = {"restype": "container", "comp": "list", "prefix": prefix,
                 "maxresults": str(limit or LIST_MAX)}  # fmt: skip
        if delimiter:
            query["delimiter"] = delimiter
        if token:
            query["marker"] = token
        resp = await self.call("list", path, "GET", None, query=query)
        root = ET.fromstring(await resp.read())
        blobs = [
            (b.findtext("Name") or "", int(b.findtext("Properties/Content-Length") or 0))
            for b in root.iterfind("./Blobs/Blob")
        ]
        dirs = [e.text or "" for e in root.iterfind("./Blobs/BlobPrefix/Name")]
        return ListPage(blobs, dirs, root.findtext("NextMarker") or "")

    async def copy(self, path: str, source: str, dest: str) -> None:
        if await self.head(path, source) is None:
            raise PathNotFound(path)
        copy_source = self.auth.sas_url(source, 3600)
        resp = await self.call(
            "copy", path, "PUT", dest, headers={"x-ms-copy-source": copy_source}, expect=(202,)
        )
        status = resp.headers.get("x-ms-copy-status", "success")
        for _ in range(self.params.copypollretries):
            if status != "pending":
                break
            await asyncio.sleep(self.params.copypolldelay)
            info = await self.head(path, dest)
            status = info.meta.get("x-ms-copy-status", "failed") if info else "failed"
        if status != "success":
            raise StorageError(f"azure copy {path} -> {dest}: copy status {status}")

    async def delete(self, path: str, key: str) -> None:
        headers = {"x-ms-delete-snapshots": "include"}
        await self.call("delete", path, "DELETE", key, headers=headers, expect=(202,))

    async def signed_url(self, key: str, method: str, expires_in: float | None) -> str | None:
        return self.auth.sas_url(key, expires_in or self.params.presignexpiry)

    async def healthy(self) -> None:
        """Authenticate against the container, creating it when missing (as Distribution does)."""
        try:
            await self.call("health", "/", "GET", None, query={"restype": "container"})
        except RestError as exc:
            if exc.code != "ContainerNotFound":
                raise
            await self.call(
                "create container", "/", "PUT", None, query={"restype": "container"},
                headers={"Content-Length": "0"}, expect=(201, 409),
            )  # fmt: skip

    async def close(self) -> None:
        await self.rest.close()
