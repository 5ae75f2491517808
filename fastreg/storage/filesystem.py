"""The filesystem driver: the embedded default, Distribution's `filesystem` driver layout.

Every blocking call runs on the driver's own thread pool so the event loop never waits on disk.
Durability: small files are written to a temporary name, fsynced and renamed (atomic); a file is
fsynced before ``move`` makes it visible under its new name, which is how an upload becomes a
blob. Appends (upload chunks) are not fsynced one by one: an upload in progress that a power loss
cuts short fails its digest check and is pushed again, while the fsync per chunk would cost a
disk round trip per PATCH. Writeback of appended bytes is started as they are written
(`sync_file_range`), so the fsync before a blob becomes visible has little left to wait for.
``local_file`` lets the HTTP layer serve blobs with ``sendfile``.

Upload safety (issue 12): an upload's data file is an inode that ``publish`` turns into a blob,
so a writer must never write into it afterwards, whatever the request locking above missed.
Each write first checks that its descriptor is still the one file at its path (same inode, one
link): a file moved (or linked) into ``blobs/`` or deleted by a cancel fails the write instead
of changing a blob. An append opens the existing file only, never recreating a cancelled one.
``publish`` never replaces a blob (`renameat2(RENAME_NOREPLACE)`, or `link` + `unlink` where the
filesystem has no renameat2), and ``lease`` is a `flock` on the file it names (locks.py).
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import functools
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar

from fastreg.config.convert import Section
from fastreg.config.keys import INT, STR, struct
from fastreg.storage.base import FileInfo, InvalidOffset, PathNotFound, StorageError, check_path
from fastreg.storage.locks import FlockLease, flock_file

T = TypeVar("T")

READ_CHUNK = 1024 * 1024
WRITEBACK_STEP = 8 * 1024 * 1024
DEFAULT_ROOT = "/var/lib/registry"
DEFAULT_THREADS = 32

#: `storage.filesystem` (Distribution 2.8's keys; checked at load, see fastreg.config).
KEYS = struct(rootdirectory=STR, maxthreads=INT)


@dataclass(frozen=True, slots=True)
class FilesystemParams:
    rootdirectory: str = DEFAULT_ROOT
    maxthreads: int = DEFAULT_THREADS


def parse(raw: Mapping[str, Any]) -> FilesystemParams:
    """The driver's settings from its `storage.filesystem` section; errors name the key."""
    p = Section(raw, "storage.filesystem")
    return FilesystemParams(
        rootdirectory=p.text("rootdirectory", DEFAULT_ROOT),
        maxthreads=p.integer("maxthreads", DEFAULT_THREADS) or DEFAULT_THREADS,
    )


class FilesystemDriver:
    name = "filesystem"
    leases_span_hosts = True  # flock: every process here, and every host on NFSv4

    def __init__(self, rootdirectory: str = DEFAULT_ROOT, maxthreads: int = DEFAULT_THREADS) -> None:
        self.root = os.path.abspath(rootdirectory)
        self._pool = ThreadPoolExecutor(max_workers=max(4, maxthreads), thread_name_prefix="fs")

    @classmethod
    def from_settings(cls, settings: FilesystemParams) -> FilesystemDriver:
        return cls(settings.rootdirectory, settings.maxthreads)

    def _full(self, path: str) -> str:
        return self.root + check_path(path)

    def _file(self, path: str) -> str:
        return self.root + check_path(path, file=True)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        except FileNotFoundError as exc:
            raise PathNotFound(exc.filename or "") from exc
        except NotADirectoryError as exc:
            raise PathNotFound(exc.filename or "") from exc
        except OSError as exc:
            raise StorageError(f"filesystem: {exc}") from exc

    async def get_content(self, path: str, limit: int | None = None) -> bytes:
        full = self._file(path)

        def read() -> bytes:
            with open(full, "rb") as f:
                data = f.read() if limit is None else f.read(limit + 1)
            if limit is not None and len(data) > limit:
                raise StorageError(f"{path}: larger than {limit} bytes")
            return data

        try:
            return await self._run(read)
        except PathNotFound:
            raise PathNotFound(path) from None

    async def put_content(self, path: str, data: bytes) -> None:
        full = self._file(path)
        await self._run(_atomic_write, full, data)

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        full = self._file(path)
        try:
            f = await self._run(_open_read, full)
        except PathNotFound:
            raise PathNotFound(path) from None
        try:
            size = os.fstat(f.fileno()).st_size
            if offset > size:
                raise InvalidOffset(f"{path}: offset {offset} beyond {size}")
            f.seek(offset)
            remaining = size - offset if length is None else min(length, size - offset)
            while remaining > 0:
                chunk = await self._run(f.read, min(READ_CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk
        finally:
            f.close()

    async def writer(self, path: str, append: bool) -> FileWriter:
        full = self._file(path)

        def open_fd() -> int:
            if append:  # continue the file that is there: a deleted one stays deleted
                return os.open(full, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            return os.open(full, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)

        try:
            fd = await self._run(open_fd)
        except PathNotFound:
            raise PathNotFound(path) from None
        return FileWriter(self, path, full, fd, os.fstat(fd).st_size)

    async def stat(self, path: str) -> FileInfo:
        full = self._full(path)
        try:
            st = await self._run(os.stat, full)
        except PathNotFound:
            raise PathNotFound(path) from None
        return FileInfo(path, st.st_size, st.st_mtime, os.path.isdir(full))

    async def list(self, path: str) -> list[str]:
        full = self._full(path)
        try:
            return await self._run(os.listdir, full)
        except PathNotFound:
            raise PathNotFound(path) from None

    async def move(self, source: str, dest: str) -> None:
        src, dst = self._file(source), self._file(dest)

        def move() -> None:
            fsync_path(src)  # the bytes are on disk before anything can see them at dest
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.rename(src, dst)
            fsync_path(os.path.dirname(dst))

        try:
            await self._run(move)
        except PathNotFound:
            raise PathNotFound(source) from None

    async def publish(self, source: str, dest: str) -> bool:
        src, dst = self._file(source), self._file(dest)

        def publish() -> bool:
            fsync_path(src)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            try:
                _rename_noreplace(src, dst)
            except FileExistsError:
                return False
            fsync_path(os.path.dirname(dst))
            return True

        try:
            return await self._run(publish)
        except PathNotFound:
            raise PathNotFound(source) from None

    async def lease(self, path: str) -> FlockLease | None:
        try:
            return await self._run(flock_file, self._full(path))
        except PathNotFound:
            raise PathNotFound(path) from None

    async def delete(self, path: str) -> None:
        full = self._full(path)

        def delete() -> None:
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full)
            else:
                os.unlink(full)

        try:
            await self._run(delete)
        except PathNotFound:
            raise PathNotFound(path) from None

    async def url_for(self, path: str, method: str = "GET", expires_in: float = 1200) -> str | None:
        return None

    def local_file(self, path: str) -> str | None:
        return self._full(path)

    async def healthy(self) -> None:
        def probe() -> None:
            os.makedirs(self.root, exist_ok=True)
            if not os.access(self.root, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, "not writable", self.root)

        await self._run(probe)

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class FileWriter:
    """Appends to one open file descriptor, starting writeback behind itself; each write checks
    first that the descriptor is still the file at the path (the module's docstring says why)."""

    def __init__(self, driver: FilesystemDriver, path: str, full: str, fd: int, size: int) -> None:
        self._driver = driver
        self._path = path
        self._full = full
        self._fd: int | None = fd
        self._size = size
        self._flushed = size  # bytes before this offset have had their writeback started

    @property
    def size(self) -> int:
        return self._size

    def _write_all(self, data: bytes, end: int) -> None:
        assert self._fd is not None
        mine = os.fstat(self._fd)
        try:
            there = os.stat(self._full)
        except FileNotFoundError:
            there = None
        if there is None or (there.st_dev, there.st_ino) != (mine.st_dev, mine.st_ino) or (
            mine.st_nlink != 1
        ):
            raise FileNotFoundError(errno.ENOENT, "moved or deleted while written", self._path)
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        if end - self._flushed >= WRITEBACK_STEP:
            start_writeback(self._fd, self._flushed, end - self._flushed)
            self._flushed = end

    async def write(self, data: bytes) -> None:
        if self._fd is None:
            raise StorageError("write on a closed writer")
        await self._driver._run(self._write_all, data, self._size + len(data))
        self._size += len(data)

    async def commit(self) -> None:
        """Appended bytes are visible to every process at once; `move` makes them durable."""
        if self._fd is None:
            raise StorageError("commit on a closed writer")

    async def cancel(self) -> None:
        await self.close()
        try:
            await self._driver._run(os.unlink, self._full)
        except PathNotFound:
            pass

    async def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _atomic_write(full: str, data: bytes) -> None:
    directory = os.path.dirname(full)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".tmp-{uuid.uuid4().hex}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, full)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


@functools.cache
def _renameat2() -> Callable[[bytes, bytes], int] | None:
    """`renameat2(AT_FDCWD, src, AT_FDCWD, dst, RENAME_NOREPLACE)` from libc, when it has it."""
    try:
        call = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    call.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    at_fdcwd, noreplace = -100, 1
    return lambda src, dst: int(call(at_fdcwd, src, at_fdcwd, dst, noreplace))


def _rename_noreplace(src: str, dst: str) -> None:
    """Rename ``src`` to ``dst`` unless ``dst`` exists (FileExistsError): atomically with
    renameat2; where the kernel or filesystem lacks it (EINVAL, ENOSYS), by `link` (which fails
    on an existing name) then `unlink` of the source. Between the two the file has two names:
    a writer still open on it then sees two links and refuses to write (FileWriter)."""
    rename = _renameat2()
    if rename is not None:
        if rename(os.fsencode(src), os.fsencode(dst)) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(err, os.strerror(err), src, None, dst)
    os.link(src, dst)
    os.unlink(src)


def fsync_path(path: str) -> None:
    """A file's bytes, or a directory's entries, on disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_read(full: str) -> BinaryIO:
    return open(full, "rb")


@functools.cache
def _sync_file_range() -> Callable[[int, int, int], None]:
    """`sync_file_range(fd, offset, n, SYNC_FILE_RANGE_WRITE)`: start writeback without waiting
    and without dropping the page cache (a pull right after a push still reads from memory).
    Linux only; elsewhere writeback is left to the kernel and the fsync before `move`."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return lambda fd, offset, n: None
    call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)

    def start(fd: int, offset: int, n: int) -> None:
        call(fd, offset, n, 2)  # SYNC_FILE_RANGE_WRITE; a failure only means no head start

    return start


def start_writeback(fd: int, offset: int, n: int) -> None:
    _sync_file_range()(fd, offset, n)
