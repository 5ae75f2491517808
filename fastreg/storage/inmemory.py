"""The in-memory driver: for tests and throwaway registries.

Directories exist from the first file written below them until they are deleted themselves, as on
a disk: deleting the last file of a directory leaves the directory (Distribution relies on this,
e.g. a repository whose manifests were all deleted is still a repository). As on disk, a writer
appends to the stored buffer itself, so it checks that the buffer is still the file at its path
before each write: a buffer moved to a blob or deleted is never written again.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from fastreg.config.keys import struct
from fastreg.storage.base import (
    FileInfo,
    InvalidOffset,
    Lease,
    PathNotFound,
    StorageError,
    check_path,
)
from fastreg.storage.locks import ProcessLocks

#: `storage.inmemory` takes no parameters: any key under it warns as unknown.
KEYS = struct()


def parse(raw: Mapping[str, Any]) -> None:
    """Nothing to read (the factory's hook): the driver has no settings."""


READ_CHUNK = 1024 * 1024


class InMemoryDriver:
    name = "inmemory"
    leases_span_hosts = True  # the files live in this process: there is no other holder

    def __init__(self) -> None:
        self._files: dict[str, tuple[bytearray, float]] = {}
        self._dirs: set[str] = {"/"}
        self._locks = ProcessLocks()

    @classmethod
    def from_settings(cls, settings: None) -> InMemoryDriver:
        return cls()

    def _prefix(self, path: str) -> str:
        return path.rstrip("/") + "/"

    def _is_dir(self, path: str) -> bool:
        return path in self._dirs

    def _add_parents(self, path: str) -> None:
        parent = path.rsplit("/", 1)[0]
        while parent and parent not in self._dirs:
            self._dirs.add(parent)
            parent = parent.rsplit("/", 1)[0]

    async def get_content(self, path: str, limit: int | None = None) -> bytes:
        check_path(path, file=True)
        try:
            data = bytes(self._files[path][0])
        except KeyError:
            raise PathNotFound(path) from None
        if limit is not None and len(data) > limit:
            raise StorageError(f"{path}: larger than {limit} bytes")
        return data

    async def put_content(self, path: str, data: bytes) -> None:
        check_path(path, file=True)
        self._add_parents(path)
        self._files[path] = (bytearray(data), time.time())

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        data = await self.get_content(path)
        if offset > len(data):
            raise InvalidOffset(f"{path}: offset {offset} beyond {len(data)}")
        end = len(data) if length is None else min(len(data), offset + length)
        for start in range(offset, end, READ_CHUNK):
            yield data[start : min(end, start + READ_CHUNK)]

    async def writer(self, path: str, append: bool) -> MemoryWriter:
        check_path(path, file=True)
        if append and path not in self._files:
            raise PathNotFound(path)  # as on disk: an append never recreates a deleted file
        self._add_parents(path)
        buf = self._files[path][0] if append else bytearray()
        self._files[path] = (buf, time.time())
        return MemoryWriter(self, path, buf)

    async def stat(self, path: str) -> FileInfo:
        check_path(path)
        if path in self._files:
            data, mtime = self._files[path]
            return FileInfo(path, len(data), mtime, False)
        if self._is_dir(path):
            return FileInfo(path, 0, 0.0, True)
        raise PathNotFound(path)

    async def list(self, path: str) -> list[str]:
        check_path(path)
        if path not in self._dirs:
            raise PathNotFound(path)
        prefix = self._prefix(path)
        entries = [*self._files, *self._dirs]
        below = [p[len(prefix) :] for p in entries if p.startswith(prefix) and p != prefix]
        return sorted({p.split("/", 1)[0] for p in below})  # the root itself is no child

    async def move(self, source: str, dest: str) -> None:
        check_path(source, file=True), check_path(dest, file=True)
        try:
            moved = self._files.pop(source)
        except KeyError:
            raise PathNotFound(source) from None
        self._add_parents(dest)
        self._files[dest] = moved

    async def publish(self, source: str, dest: str) -> bool:
        check_path(source, file=True), check_path(dest, file=True)
        if source not in self._files:
            raise PathNotFound(source)
        if dest in self._files:
            return False
        await self.move(source, dest)
        return True

    async def lease(self, path: str) -> Lease | None:
        check_path(path)
        return self._locks.lease(path)

    async def delete(self, path: str) -> None:
        check_path(path)
        prefix = self._prefix(path)
        doomed = [p for p in self._files if p == path or p.startswith(prefix)]
        dirs = {d for d in self._dirs if d == path or d.startswith(prefix)} - {"/"}
        if not doomed and not dirs:
            raise PathNotFound(path)
        for p in doomed:
            del self._files[p]
        self._dirs -= dirs

    async def url_for(self, path: str, method: str = "GET", expires_in: float = 1200) -> str | None:
        return None

    def local_file(self, path: str) -> str | None:
        return None

    async def healthy(self) -> None:
        return None

    async def close(self) -> None:
        return None


class MemoryWriter:
    """Appends to the stored buffer itself, so what is written is visible at once (as on disk)."""

    def __init__(self, driver: InMemoryDriver, path: str, buf: bytearray) -> None:
        self._driver = driver
        self._path = path
        self._buf = buf
        self._closed = False

    @property
    def size(self) -> int:
        return len(self._buf)

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise StorageError("write on a closed writer")
        if self._driver._files.get(self._path, (None,))[0] is not self._buf:
            raise PathNotFound(self._path)  # moved or deleted since the writer opened
        self._buf += data

    async def commit(self) -> None:
        return None

    async def cancel(self) -> None:
        self._closed = True
        if self._driver._files.get(self._path, (None,))[0] is self._buf:
            del self._driver._files[self._path]

    async def close(self) -> None:
        self._closed = True
