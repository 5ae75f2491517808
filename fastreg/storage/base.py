"""The storage driver interface, its errors, and the one wrapper every driver goes through.

A driver is a flat key space of byte files addressed by absolute slash paths ("/docker/registry/v2/...").
Drivers know nothing about registries; this module must not import from ``fastreg.registry`` or
``fastreg.api``. The interface follows Distribution's ``storagedriver.StorageDriver``: a handful of
methods, and a writer that adds only ``size / commit / cancel`` to ``write / close``. Two
capabilities go beyond it, both for upload sessions shared by workers and hosts: ``lease`` (one
request at a time per upload) and ``publish`` (a move that never replaces what is there).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class StorageError(Exception):
    """A driver failed for a reason the client cannot fix (I/O error, backend down)."""


class PathNotFound(StorageError):
    """Nothing is stored at the path."""

    def __init__(self, path: str) -> None:
        super().__init__(f"path not found: {path}")
        self.path = path


class InvalidPath(StorageError):
    """The path is not an absolute, normalised slash path."""


class InvalidOffset(StorageError):
    """A read asked for an offset beyond the end of the file."""


@dataclass(frozen=True, slots=True)
class FileInfo:
    path: str
    size: int
    modtime: float
    is_dir: bool


class Lease(Protocol):
    """An exclusive hold taken by ``StorageDriver.lease``; it ends with ``release`` or with the
    holder's death (a kernel lock dies with its descriptor, a Redis key with its TTL)."""

    async def release(self) -> None: ...


@runtime_checkable
class FileWriter(Protocol):
    """An append-only writer. Bytes are durable only after ``commit``."""

    @property
    def size(self) -> int:
        """Bytes in the file, those written before this writer was opened included."""
        ...

    async def write(self, data: bytes) -> None: ...

    async def commit(self) -> None:
        """Flush what was written so that it survives a crash."""
        ...

    async def cancel(self) -> None:
        """Remove the file; the writer is closed afterwards."""
        ...

    async def close(self) -> None:
        """Release resources; safe to call twice."""
        ...


class StorageDriver(Protocol):
    """The capability set every backend provides."""

    name: str
    #: Whether ``lease`` excludes holders on other hosts too. False: only this host's processes
    #: (an object store has no lock of its own; several hosts on one then need Redis).
    leases_span_hosts: bool

    async def get_content(self, path: str, limit: int | None = None) -> bytes:
        """Read a small file whole (links, manifests). More than ``limit`` bytes -> StorageError."""
        ...

    async def put_content(self, path: str, data: bytes) -> None:
        """Write a small file atomically: readers see the old or the new content, nothing between."""
        ...

    def reader(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Stream ``length`` bytes (all when None) from ``offset``."""
        ...

    async def writer(self, path: str, append: bool) -> FileWriter:
        """Open a writer; ``append`` continues an existing file, else the file starts empty."""
        ...

    async def stat(self, path: str) -> FileInfo: ...

    async def list(self, path: str) -> list[str]:
        """Names (not paths) of the direct children of a directory, in any order."""
        ...

    async def move(self, source: str, dest: str) -> None:
        """Move a file, replacing ``dest`` atomically."""
        ...

    async def publish(self, source: str, dest: str) -> bool:
        """Move ``source`` to ``dest`` unless a file is at ``dest``: then nothing changes and the
        answer is False. Content-addressed files never change once they exist: a reader (a
        sendfile, a presigned URL, a range request) must never see them replaced."""
        ...

    async def lease(self, path: str) -> Lease | None:
        """Take, without waiting, the exclusive lease named by ``path`` (a file of the thing it
        guards): None when another holder, in any process, has it. Drivers that lock in storage
        raise PathNotFound when the file is missing; the others leave that to the caller."""
        ...

    async def delete(self, path: str) -> None:
        """Delete a file or a whole directory tree. PathNotFound when nothing is there."""
        ...

    async def url_for(self, path: str, method: str = "GET", expires_in: float = 1200) -> str | None:
        """A URL the client may fetch directly (presigned), or None when the driver has none."""
        ...

    def local_file(self, path: str) -> str | None:
        """An OS path to the file for ``sendfile``, or None when the bytes are not on local disk."""
        ...

    async def healthy(self) -> None:
        """Raise StorageError when the backend is unreachable."""
        ...

    async def close(self) -> None: ...


_PATH_RE = re.compile(r"^(/[A-Za-z0-9._:@+=-]+)+$")


def check_path(path: str, file: bool = False) -> str:
    """Reject anything that is not an absolute path of plain segments: no '..', no '//'; and
    the root as a ``file`` (it is a directory)."""
    if file and path == "/":
        raise InvalidPath("invalid path: '/' is the root directory, not a file")
    if path != "/" and (not _PATH_RE.match(path) or any(p in (".", "..") for p in path.split("/"))):
        raise InvalidPath(f"invalid path: {path!r}")
    return path


def take_chunk(buf: bytearray, size: int) -> bytes | None:
    """Cut the first ``size`` bytes off ``buf`` when it holds that many (a part, block or
    segment ready to ship); None otherwise. The writers of the object-store drivers buffer
    client bytes this way, at most one chunk each."""
    if len(buf) < size:
        return None
    with memoryview(buf) as view:
        chunk = bytes(view[:size])
    del buf[:size]
    return chunk
