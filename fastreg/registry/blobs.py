"""Blobs: content-addressed bytes under `blobs/`, and the per-repository links that make a blob
part of a repository (upload commit or cross-repository mount).

A blob belongs to a repository only through its `_layers` link, exactly as in Distribution, so a
client can never read a blob of another repository by guessing its digest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from fastreg.registry import layout
from fastreg.registry.digests import Digest
from fastreg.registry.errors import ErrorCode, RegistryError
from fastreg.registry.redirects import Redirector
from fastreg.storage.base import PathNotFound, StorageDriver

LINK_LIMIT = 1024


@dataclass(frozen=True, slots=True)
class BlobInfo:
    digest: Digest
    size: int
    media_type: str = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class BlobSource:
    """Where the bytes of a blob can be had: a local file, a redirect URL, or a stream."""

    info: BlobInfo
    local_path: str | None
    driver: StorageDriver
    path: str

    def stream(self, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        return self.driver.reader(self.path, offset, length)

    async def redirect_url(self, method: str, via: Redirector | None = None) -> str | None:
        """The storage middleware's URL (``via``), else the driver's presigned one, if any."""
        if via is not None:
            return via.url(self.driver, self.path)
        return await self.driver.url_for(self.path, method)

    def release(self) -> None:
        """Nothing to give back (a mirror's cold blob, the other `BlobReader`, has)."""


class BlobReader(Protocol):
    """What a download reads: a stored blob (`BlobSource`) or one a mirror is fetching."""

    @property
    def info(self) -> BlobInfo: ...

    @property
    def local_path(self) -> str | None: ...

    def stream(self, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]: ...

    async def redirect_url(self, method: str, via: Redirector | None = None) -> str | None: ...

    def release(self) -> None: ...


async def read_link(driver: StorageDriver, path: str) -> Digest | None:
    """The digest a link file names, or None when the link is absent or unreadable."""
    try:
        content = await driver.get_content(path, LINK_LIMIT)
    except PathNotFound:
        return None
    try:
        return Digest.parse(content.decode("ascii", "replace").strip())
    except RegistryError:
        return None


class DescriptorCache(Protocol):
    """Positive answers about blobs, so hot HEADs and manifest checks skip storage."""

    async def get(self, digest: Digest) -> BlobInfo | None: ...
    async def put(self, info: BlobInfo) -> None: ...
    async def is_linked(self, name: str, digest: Digest) -> bool: ...
    async def link_generation(self, name: str) -> str: ...
    async def put_link(self, name: str, digest: Digest, generation: str | None = None) -> None:
        """Remember a link; with ``generation`` only if no link of ``name`` was forgotten since
        it was read (a fill racing with a delete must not resurrect the link)."""
        ...

    async def forget_link(self, name: str, digest: Digest) -> None: ...
    async def forget(self, digest: Digest) -> None: ...
    async def close(self) -> None: ...


class NoCache:
    async def get(self, digest: Digest) -> BlobInfo | None:
        return None

    async def put(self, info: BlobInfo) -> None:
        return None

    async def is_linked(self, name: str, digest: Digest) -> bool:
        return False

    async def link_generation(self, name: str) -> str:
        return ""

    async def put_link(self, name: str, digest: Digest, generation: str | None = None) -> None:
        return None

    async def forget_link(self, name: str, digest: Digest) -> None:
        return None

    async def forget(self, digest: Digest) -> None:
        return None

    async def close(self) -> None:
        return None


class BlobStore:
    def __init__(self, driver: StorageDriver, cache: DescriptorCache | None = None) -> None:
        self.driver = driver
        self.cache: DescriptorCache = cache or NoCache()

    async def stat(self, digest: Digest) -> BlobInfo:
        """The blob in the global store, whatever repository it belongs to."""
        cached = await self.cache.get(digest)
        if cached is not None:
            return cached
        try:
            info = await self.driver.stat(layout.blob_data(digest))
        except PathNotFound:
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": str(digest)}) from None
        if info.is_dir:
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": str(digest)})
        blob = BlobInfo(digest, info.size)
        await self.cache.put(blob)
        return blob

    async def exists(self, digest: Digest) -> bool:
        try:
            await self.stat(digest)
        except RegistryError:
            return False
        return True

    async def is_linked(self, name: str, digest: Digest) -> bool:
        if await self.cache.is_linked(name, digest):
            return True
        generation = await self.cache.link_generation(name)
        linked = await read_link(self.driver, layout.layer_link(name, digest)) == digest
        if linked:
            await self.cache.put_link(name, digest, generation)
        return linked

    async def stat_in(self, name: str, digest: Digest) -> BlobInfo:
        """The blob as seen from one repository: it must be linked there and present."""
        if not await self.is_linked(name, digest):
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": str(digest)})
        return await self.stat(digest)

    async def source(self, name: str, digest: Digest) -> BlobSource:
        info = await self.stat_in(name, digest)
        path = layout.blob_data(digest)
        return BlobSource(info, self.driver.local_file(path), self.driver, path)

    async def link(self, name: str, digest: Digest) -> None:
        await self.driver.put_content(layout.layer_link(name, digest), layout.link_content(digest))
        await self.cache.put_link(name, digest)

    async def unlink(self, name: str, digest: Digest) -> None:
        """Remove the blob from one repository; the content stays for garbage collection."""
        link = layout.layer_link(name, digest)
        if await read_link(self.driver, link) != digest:
            await self.cache.forget_link(name, digest)
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": str(digest)})
        try:
            await self.driver.delete(link.rsplit("/", 1)[0])
        except PathNotFound:
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": str(digest)}) from None
        finally:
            await self.cache.forget_link(name, digest)

    async def mount(self, name: str, digest: Digest, source: str | None) -> BlobInfo | None:
        """Link a blob from ``source`` (or, when None, from the global store) into ``name``.

        Returns None when the blob cannot be mounted, and the caller opens a normal upload.
        """
        try:
            info = await (self.stat_in(source, digest) if source else self.stat(digest))
        except RegistryError:
            return None
        await self.link(name, digest)
        return info

    async def put(self, digest: Digest, data: bytes) -> None:
        """Store small content (a manifest) under its digest.

        Written every time, not after an existence check: on object storage the check of a new
        digest costs two requests (a HEAD, then a LIST for a directory) where the write is one,
        and rewriting the same bytes is harmless (an atomic replace, or a new S3 object)."""
        await self.driver.put_content(layout.blob_data(digest), data)
        await self.cache.put(BlobInfo(digest, len(data)))

    async def get(self, digest: Digest, limit: int) -> bytes:
        try:
            return await self.driver.get_content(layout.blob_data(digest), limit)
        except PathNotFound:
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": str(digest)}) from None
