"""The storage driver interface implemented once over object primitives (azure, gcs, swift).

An object store has no files or directories: it has objects named by keys, and a listing by key
prefix. Every REST backend offers the same handful of primitives (HEAD, ranged GET, PUT, a page of
a listing, DELETE, a signed URL; a server-side copy for moves), so the driver semantics built on
them live here, once: a read with Range whose 416 at the very end is no error, offsets checked
against the file's size, stat as a HEAD or else a one-key listing (a directory is a prefix with
something below it), a paginated listing of children, delete of a tree as a listing and deletes,
publish (a HEAD of the destination, then a move) and host-local leases.

A backend provides an `Objects` (its `objects` module), which the driver and the backend's writer
both use; the driver adds only what the backend does differently. This module must not import a
backend.
"""

from __future__ import annotations

import abc
import asyncio
import builtins
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import aiohttp

from fastreg.storage.base import (
    FileInfo,
    FileWriter,
    InvalidOffset,
    PathNotFound,
    StorageError,
    check_path,
)
from fastreg.storage.locks import FlockLease, HostLocks
from fastreg.storage.rest import TRANSPORT_ERRORS, RangeNotSatisfiable

READ_CHUNK = 1024 * 1024
DELETE_CONCURRENCY = 16


@dataclass(frozen=True, slots=True)
class Bucket:
    """Which bucket (or container) of which service: named in leases and in messages."""

    service: str  # "azure"
    kind: str  # "container", "bucket"
    name: str
    url: str
    where: str = ""  # how messages name the place, when not by ``url``

    @property
    def identity(self) -> str:
        """What host-local leases are scoped to: every driver on this bucket shares them."""
        return f"{self.service} {self.url} {self.name}"

    def __str__(self) -> str:
        return f"{self.service} {self.kind} {self.name!r} at {self.where or self.url}"


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a HEAD tells of one object; ``meta`` is the backend's own answer (headers, JSON)."""

    size: int
    modtime: float
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of a listing by prefix: object keys with their sizes, the common prefixes (with
    a delimiter) and the token of the next page ("" after the last)."""

    objects: list[tuple[str, int]]
    prefixes: list[str]
    token: str


class Bucketed(Protocol):
    """What the objects of every store offer, S3's included: the bucket, keys, signed URLs."""

    bucket: Bucket

    def key(self, path: str) -> str:
        """The key of a checked driver path (base.check_path)."""
        ...

    async def signed_url(self, key: str, method: str, expires_in: float | None) -> str | None:
        """A URL for GET or HEAD, valid ``expires_in`` seconds (None: the configured default)."""
        ...

    async def healthy(self) -> None:
        """Authenticate and check (or create) the bucket; the driver names it on failure."""
        ...

    async def close(self) -> None: ...


class Objects(Bucketed, Protocol):
    """The primitives of one bucket or container. ``path`` names the file in error messages."""

    async def head(self, path: str, key: str) -> ObjectInfo | None:
        """None when there is no object at ``key``."""
        ...

    async def get(
        self, path: str, key: str, start: int = 0, end: int | None = None
    ) -> aiohttp.ClientResponse:
        """The open answer to a GET of bytes ``start`` to ``end`` (exclusive; None: all); the
        caller reads and releases it. RangeNotSatisfiable when ``start`` is at or past the end."""
        ...

    async def put(self, path: str, key: str, data: bytes) -> None: ...

    async def list_page(
        self, path: str, prefix: str, delimiter: str | None, token: str, limit: int | None = None
    ) -> ListPage:
        """``limit`` keys at most (None: as many as the service gives in one page)."""
        ...

    async def copy(self, path: str, source: str, dest: str) -> None:
        """A server-side copy; PathNotFound when there is no ``source``."""
        ...

    async def delete(self, path: str, key: str) -> None: ...


def byte_range(start: int, end: int | None, header: str = "Range") -> dict[str, str]:
    """The Range header of bytes ``start`` to ``end`` (exclusive; None: to the end), none for all
    of it (Azure's ``x-ms-range`` takes the same value)."""
    if not start and end is None:
        return {}
    return {header: f"bytes={start}-{'' if end is None else end - 1}"}


def prefix_of(key: str) -> str:
    """The key prefix of everything below the directory whose key is ``key``."""
    return key if key.endswith("/") or not key else key + "/"


async def chunks(resp: aiohttp.ClientResponse, what: str) -> AsyncIterator[bytes]:
    """The body of an open answer, read in READ_CHUNK blocks; released at the end or on error."""
    try:
        while True:
            try:
                chunk = await resp.content.read(READ_CHUNK)
            except TRANSPORT_ERRORS as exc:
                raise StorageError(f"{what}: {type(exc).__name__}: {exc}") from exc
            if not chunk:
                return
            yield chunk
    finally:
        resp.release()


async def listing(
    objects: Objects, path: str, prefix: str, delimiter: str | None = None
) -> AsyncIterator[ListPage]:
    """Every page of a listing."""
    token = ""
    while True:
        page = await objects.list_page(path, prefix, delimiter, token)
        yield page
        token = page.token
        if not token:
            return


async def read_all(objects: Objects, path: str, key: str, limit: int | None) -> bytes:
    """An object whole; more than ``limit`` bytes is a StorageError, told before the body is read
    when the answer says its length."""
    resp = await objects.get(path, key)
    try:
        if limit is not None and (resp.content_length or 0) > limit:
            raise StorageError(f"{path}: larger than {limit} bytes")
        data: bytes = await resp.read()
    except TRANSPORT_ERRORS as exc:
        raise StorageError(f"get {path}: {type(exc).__name__}: {exc}") from exc
    finally:
        resp.release()
    if limit is not None and len(data) > limit:
        raise StorageError(f"{path}: larger than {limit} bytes")
    return data


async def delete_all(
    names: list[str], delete_one: Callable[[str], Awaitable[None]], concurrency: int
) -> None:
    """Delete many objects, ``concurrency`` at a time; one already gone is no failure."""
    limit = asyncio.Semaphore(concurrency)

    async def one(name: str) -> None:
        async with limit:
            try:
                await delete_one(name)
            except PathNotFound:
                pass  # deleted meanwhile: the goal is reached

    await asyncio.gather(*(one(n) for n in names))


BucketedT = TypeVar("BucketedT", bound=Bucketed)
ObjectsT = TypeVar("ObjectsT", bound=Objects)


class BucketDriver(abc.ABC, Generic[BucketedT]):
    """What a driver on any object store is, whatever its files are made of (S3's are objects
    and segments): keys, writers that ``open_writer`` opens over the same objects, the reader's
    contract, host-local leases, signed URLs for GET and HEAD, a health check naming the bucket.
    """

    name: str
    leases_span_hosts = False  # host-local leases (storage/locks.py); many hosts need Redis

    def __init__(
        self,
        objects: BucketedT,
        open_writer: Callable[[BucketedT, str, bool], Awaitable[FileWriter]],
    ) -> None:
        self.objects = objects
        self._open_writer = open_writer
        self.locks = HostLocks(objects.bucket.identity)

    def key(self, path: str) -> str:
        return self.objects.key(path)

    def file_key(self, path: str) -> str:
        """The key of a file: the root is a directory, never a file (InvalidPath)."""
        return self.key(check_path(path, file=True))

    async def writer(self, path: str, append: bool) -> FileWriter:
        check_path(path, file=True)
        return await self._open_writer(self.objects, path, append)

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """Nothing to read (``length`` 0) still checks the offset against the file's size."""
        check_path(path, file=True)
        if length is not None and length <= 0:
            await self.check_offset(path, offset)
            return
        async for chunk in self.read(path, offset, None if length is None else offset + length):
            yield chunk

    @abc.abstractmethod
    def read(self, path: str, offset: int, end: int | None) -> AsyncIterator[bytes]:
        """Bytes ``offset`` to ``end`` (exclusive; None: to the end) of the file."""

    @abc.abstractmethod
    async def check_offset(self, path: str, offset: int) -> None:
        """PathNotFound without a file at ``path``; InvalidOffset past its end."""

    async def lease(self, path: str) -> FlockLease | None:
        return self.locks.lease(self.key(path))

    async def url_for(
        self, path: str, method: str = "GET", expires_in: float | None = None
    ) -> str | None:
        method = method.upper()
        if method not in ("GET", "HEAD"):
            return None
        return await self.objects.signed_url(self.key(path), method, expires_in)

    def local_file(self, path: str) -> str | None:
        return None

    async def healthy(self) -> None:
        try:
            await self.objects.healthy()
        except StorageError as exc:
            raise StorageError(f"{self.objects.bucket} is not usable: {exc}") from exc

    async def close(self) -> None:
        await self.objects.close()


class ObjectStoreDriver(BucketDriver[ObjectsT]):
    """A StorageDriver over an object store's primitives, whose files are objects. A backend's
    driver subclasses it with its name and ``from_settings``, and overrides what its store
    does otherwise (Swift's large objects)."""

    def prefix(self, path: str) -> str:
        return prefix_of(self.key(path))

    # -- small files ------------------------------------------------------------------------

    async def get_content(self, path: str, limit: int | None = None) -> bytes:
        return await read_all(self.objects, path, self.file_key(path), limit)

    async def put_content(self, path: str, data: bytes) -> None:
        await self.objects.put(path, self.file_key(path), data)

    # -- streams ----------------------------------------------------------------------------

    async def read(self, path: str, offset: int, end: int | None) -> AsyncIterator[bytes]:
        try:
            resp = await self.objects.get(path, self.key(path), offset, end)
        except RangeNotSatisfiable:
            await self.check_offset(path, offset)  # at the very end (or empty): nothing to read
            return
        async for chunk in chunks(resp, f"{self.name} get {path}"):
            yield chunk

    async def check_offset(self, path: str, offset: int) -> None:
        info = await self.stat(path)
        if info.is_dir:
            raise PathNotFound(path)
        if offset > info.size:
            raise InvalidOffset(f"{path}: offset {offset} beyond {info.size}")
    # -- metadata ---------------------------------------------------------------------------

    async def stat(self, path: str) -> FileInfo:
        key = self.key(path)
        if key.strip("/"):
            info = await self.objects.head(path, key)
            if info is not None:
                return FileInfo(path, info.size, info.modtime, False)
        page = await self.objects.list_page(path, prefix_of(key), None, "", 1)
        if page.objects or page.prefixes:
            return FileInfo(path, 0, 0.0, True)
        raise PathNotFound(path)

    async def list(self, path: str) -> builtins.list[str]:
        prefix = self.prefix(path)
        names: builtins.list[str] = []
        async for page in self.pages(path, prefix, "/"):
            names += [key[len(prefix) :] for key, _ in page.objects]
            names += [p[len(prefix) :].rstrip("/") for p in page.prefixes]
        names = [n for n in names if n]
        if not names and path != "/":  # the root always exists, as in Distribution
            raise PathNotFound(path)
        return names

    def pages(
        self, path: str, prefix: str, delimiter: str | None = None
    ) -> AsyncIterator[ListPage]:
        return listing(self.objects, path, prefix, delimiter)

    async def keys_below(self, path: str, prefix: str) -> builtins.list[str]:
        return [key async for page in self.pages(path, prefix) for key, _ in page.objects]

    # -- move and delete --------------------------------------------------------------------

    async def move(self, source: str, dest: str) -> None:
        src = self.file_key(source)
        await self.objects.copy(source, src, self.file_key(dest))
        await self.objects.delete(source, src)

    async def publish(self, source: str, dest: str) -> bool:
        """A move after a HEAD of the destination: one request more per new blob (no store here
        has a copy that fails on an existing object everywhere)."""
        if await self.objects.head(dest, self.file_key(dest)) is not None:
            return False
        await self.move(source, dest)
        return True

    async def delete(self, path: str) -> None:
        key = self.key(path)
        keys = await self.keys_below(path, prefix_of(key))
        if key.strip("/") and await self.objects.head(path, key) is not None:
            keys.append(key)
        if not keys:
            raise PathNotFound(path)
        await self.delete_keys(path, keys)

    async def delete_keys(self, path: str, keys: builtins.list[str]) -> None:
        await delete_all(keys, lambda key: self.objects.delete(path, key), DELETE_CONCURRENCY)
