"""The Azure Blob driver: Distribution's `azure` driver layout in one container, over REST.

Files are block blobs named by `AzureParams.blob_name` (2.8's names by default); directories are
name prefixes. Small files are one Put Blob (atomic); appended files are staged blocks committed
with Put Block List (`writer.py`); moves are a server-side Copy Blob from a SAS URL of the source
(as Distribution 3 does), polled until done, then a delete. Downloads redirect to a read-only
service SAS URL. The container is created at start when missing, as Distribution does.
"""

from __future__ import annotations

import asyncio
import builtins
import email.utils
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Mapping
from typing import Any

from fastreg.storage.azure.client import AzureAuth, describe
from fastreg.storage.azure.params import AzureParams
from fastreg.storage.azure.writer import AzureWriter
from fastreg.storage.base import FileInfo, InvalidOffset, PathNotFound, StorageError, check_path
from fastreg.storage.locks import FlockLease, HostLocks
from fastreg.storage.rest import (
    TRANSPORT_ERRORS,
    RestClient,
    RestError,
    RestSettings,
    delete_all,
)

READ_CHUNK = 1024 * 1024
LIST_MAX = 5000
DELETE_CONCURRENCY = 16


class AzureDriver:
    name = "azure"
    leases_span_hosts = False  # host-local leases (storage/locks.py); many hosts need Redis

    def __init__(self, params: AzureParams) -> None:
        self.params = params
        self.auth = AzureAuth(params)
        self.locks = HostLocks(f"azure {params.service_url} {params.container}")
        self.rest = RestClient(
            RestSettings("azure", params.maxretries, params.connecttimeout, params.readtimeout),
            self.auth.sign,
            describe,
        )

    @classmethod
    def from_parameters(cls, params: Mapping[str, Any]) -> AzureDriver:
        return cls(AzureParams.parse(params))

    def blob(self, path: str) -> str:
        return self.params.blob_name(check_path(path))

    def _prefix(self, path: str) -> str:
        name = self.blob(path)
        return name if name.endswith("/") or not name else name + "/"

    async def call(self, op: str, path: str, method: str, name: str | None, **kw: Any) -> Any:
        """One request on a blob (``name``) or, when ``name`` is None, on the container."""
        query = kw.pop("query", None)
        url = self.auth.container_url(query) if name is None else self.auth.blob_url(name, query)
        return await self.rest.request(op, path, method, url, **kw)

    # -- small files ------------------------------------------------------------------------

    async def get_content(self, path: str, limit: int | None = None) -> bytes:
        check_path(path, file=True)
        resp = await self.call("get", path, "GET", self.blob(path))
        if limit is not None and (resp.content_length or 0) > limit:
            raise StorageError(f"{path}: larger than {limit} bytes")
        data: bytes = await resp.read()
        return data

    async def put_content(self, path: str, data: bytes) -> None:
        check_path(path, file=True)
        await self.put_blob(path, self.blob(path), data)

    async def put_blob(self, path: str, name: str, data: bytes) -> None:
        headers = {"x-ms-blob-type": "BlockBlob", "Content-Type": "application/octet-stream",
                   "Content-Length": str(len(data))}  # fmt: skip
        try:
            await self.call("put", path, "PUT", name, headers=headers, body=data, expect=(201,))
        except RestError as exc:
            if exc.code != "InvalidBlobType":
                raise
            # an append blob (Distribution 2.8's uploads) cannot be overwritten by Put Blob
            await self.call("delete", path, "DELETE", name, expect=(202,))
            await self.call("put", path, "PUT", name, headers=headers, body=data, expect=(201,))

    # -- streams ----------------------------------------------------------------------------

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        check_path(path, file=True)
        name = self.blob(path)
        if length is not None and length <= 0:
            await self._check_offset(path, offset)
            return
        headers = {}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            headers["x-ms-range"] = f"bytes={offset}-{end}"
        try:
            resp = await self.call(
                "get", path, "GET", name, headers=headers, expect=(200, 206), stream=True
            )
        except RestError as exc:
            if exc.status != 416:
                raise
            await self._check_offset(path, offset)  # at the very end: nothing to read
            return
        try:
            while True:
                try:
                    chunk = await resp.content.read(READ_CHUNK)
                except TRANSPORT_ERRORS as exc:
                    raise StorageError(f"azure get {path}: {type(exc).__name__}: {exc}") from exc
                if not chunk:
                    break
                yield chunk
        finally:
            resp.release()

    async def _check_offset(self, path: str, offset: int) -> None:
        info = await self.stat(path)
        if info.is_dir:
            raise PathNotFound(path)
        if offset > info.size:
            raise InvalidOffset(f"{path}: offset {offset} beyond {info.size}")

    async def writer(self, path: str, append: bool) -> AzureWriter:
        check_path(path, file=True)
        return await AzureWriter.open(self, path, append)

    # -- metadata ---------------------------------------------------------------------------

    async def properties(self, path: str, name: str) -> Mapping[str, str] | None:
        """The headers of Get Blob Properties, or None when there is no such blob."""
        try:
            resp = await self.call("head", path, "HEAD", name)
        except PathNotFound:
            return None
        headers: Mapping[str, str] = resp.headers
        return headers

    async def stat(self, path: str) -> FileInfo:
        name = self.blob(path)
        if name.strip("/"):
            head = await self.properties(path, name)
            if head is not None:
                modified = email.utils.parsedate_to_datetime(head["Last-Modified"]).timestamp()
                return FileInfo(path, int(head["Content-Length"]), modified, False)
        page = await self._list_page(path, self._prefix(path), None, "", 1)
        if page[0] or page[1]:
            return FileInfo(path, 0, 0.0, True)
        raise PathNotFound(path)

    async def list(self, path: str) -> builtins.list[str]:
        prefix = self._prefix(path)
        names: builtins.list[str] = []
        marker = ""
        while True:
            blobs, dirs, marker = await self._list_page(path, prefix, "/", marker, LIST_MAX)
            names += [b[len(prefix) :] for b in blobs]
            names += [d[len(prefix) :].rstrip("/") for d in dirs]
            if not marker:
                break
        names = [n for n in names if n]
        if not names and path != "/":  # the root always exists, as in Distribution
            raise PathNotFound(path)
        return names

    async def walk_names(self, path: str, prefix: str) -> builtins.list[str]:
        """Every blob name below ``prefix``."""
        names: builtins.list[str] = []
        marker = ""
        while True:
            blobs, _, marker = await self._list_page(path, prefix, None, marker, LIST_MAX)
            names += blobs
            if not marker:
                return names

    async def _list_page(
        self, path: str, prefix: str, delimiter: str | None, marker: str, limit: int
    ) -> tuple[builtins.list[str], builtins.list[str], str]:
        query = {"restype": "container", "comp": "list", "prefix": prefix,
                 "maxresults": str(limit)}  # fmt: skip
        if delimiter:
            query["delimiter"] = delimiter
        if marker:
            query["marker"] = marker
        resp = await self.call("list", path, "GET", None, query=query)
        root = ET.fromstring(await resp.read())
        blobs = [e.text or "" for e in root.iterfind("./Blobs/Blob/Name")]
        dirs = [e.text or "" for e in root.iterfind("./Blobs/BlobPrefix/Name")]
        return blobs, dirs, root.findtext("NextMarker") or ""

    # -- move and delete --------------------------------------------------------------------

    async def publish(self, source: str, dest: str) -> bool:
        """A move after a Get Blob Properties of the destination: one request more per new
        blob, and none of Azure's conditional copies (unsupported by Azurite's older ones)."""
        check_path(source, file=True), check_path(dest, file=True)
        if await self.properties(dest, self.blob(dest)) is not None:
            return False
        await self.move(source, dest)
        return True

    async def lease(self, path: str) -> FlockLease | None:
        return self.locks.lease(self.blob(path))

    async def move(self, source: str, dest: str) -> None:
        check_path(source, file=True), check_path(dest, file=True)
        src, dst = self.blob(source), self.blob(dest)
        if await self.properties(source, src) is None:
            raise PathNotFound(source)
        copy_source = self.auth.sas_url(src, 3600)
        resp = await self.call(
            "copy", source, "PUT", dst, headers={"x-ms-copy-source": copy_source}, expect=(202,)
        )
        status = resp.headers.get("x-ms-copy-status", "success")
        for _ in range(self.params.copypollretries):
            if status != "pending":
                break
            await asyncio.sleep(self.params.copypolldelay)
            head = await self.properties(dest, dst)
            status = (head or {}).get("x-ms-copy-status", "failed")
        if status != "success":
            raise StorageError(f"azure copy {source} -> {dest}: copy status {status}")
        await self._delete_blob(source, src)

    async def _delete_blob(self, path: str, name: str) -> None:
        headers = {"x-ms-delete-snapshots": "include"}
        await self.call("delete", path, "DELETE", name, headers=headers, expect=(202,))

    async def delete(self, path: str) -> None:
        name = self.blob(path)
        names = await self.walk_names(path, self._prefix(path))
        if name.strip("/") and await self.properties(path, name) is not None:
            names.append(name)
        if not names:
            raise PathNotFound(path)
        await delete_all(names, lambda blob: self._delete_blob(path, blob), DELETE_CONCURRENCY)

    # -- the rest ---------------------------------------------------------------------------

    async def url_for(
        self, path: str, method: str = "GET", expires_in: float | None = None
    ) -> str | None:
        if method.upper() not in ("GET", "HEAD"):
            return None
        return self.auth.sas_url(self.blob(path), expires_in or self.params.presignexpiry)

    def local_file(self, path: str) -> str | None:
        return None

    async def healthy(self) -> None:
        """Authenticate against the container, creating it when missing (as Distribution does)."""
        p = self.params
        try:
            try:
                await self.call("health", "/", "GET", None, query={"restype": "container"})
            except RestError as exc:
                if exc.code != "ContainerNotFound":
                    raise
                await self.call(
                    "create container", "/", "PUT", None, query={"restype": "container"},
                    headers={"Content-Length": "0"}, expect=(201, 409),
                )  # fmt: skip
        except StorageError as exc:
            raise StorageError(
                f"azure container {p.container!r} at {p.service_url} is not usable: {exc}"
            ) from exc

    async def close(self) -> None:
        await self.rest.close()
