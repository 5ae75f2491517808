"""Leases (base.Lease) built on the kernel's `flock`, for the drivers that keep no lock in storage.

`flock` belongs to an open file description, so two opens conflict even inside one process,
and the kernel drops the lock when its holder dies: no stale lease after a crash, nothing to
expire. The filesystem driver locks a file of the upload itself (``flock_file``), which covers
every worker and, on NFSv4 (where Linux maps `flock` to NFS locks), every host. Object stores
have nothing to lock, so ``HostLocks`` locks a file per lease name in a directory of this host,
keyed by the storage's identity: it covers every worker of the host; several hosts on one store
need the Redis lease (registry/leases.py). ``ProcessLocks`` serves the in-memory driver, whose
files live in one process anyway.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import tempfile

from fastreg.storage.base import Lease

#: Where host-local lease files live (one directory per storage identity below it).
LOCK_ROOT = os.path.join(tempfile.gettempdir(), "fastreg-leases")


class FlockLease:
    """A held `flock`; ``unlink`` is the lock file this lease removes on release (HostLocks)."""

    def __init__(self, fd: int, unlink: str | None = None) -> None:
        self._fd: int | None = fd
        self._unlink = unlink

    async def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if self._unlink is not None:
            # removed while still held, so no one can lock the name between unlink and close
            # and then lose it to a third party that creates a new file (see _lock_created)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._unlink)
        os.close(fd)


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def flock_file(full: str) -> FlockLease | None:
    """Lock the existing file ``full`` (FileNotFoundError when missing); None when held."""
    fd = os.open(full, os.O_RDONLY | os.O_CLOEXEC)
    if not _try_flock(fd):
        os.close(fd)
        return None
    return FlockLease(fd)


def _lock_created(full: str) -> FlockLease | None:
    """Lock the file ``full``, created when missing, and removed again on release. A holder that
    releases unlinks the name: a lock taken on a file no longer at ``full`` is retried."""
    while True:
        fd = os.open(full, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if not _try_flock(fd):
            os.close(fd)
            return None
        try:
            same = os.stat(full).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return FlockLease(fd, unlink=full)
        os.close(fd)


class HostLocks:
    """Leases shared by the processes of this host that use the same storage (``identity``)."""

    def __init__(self, identity: str, root: str = LOCK_ROOT) -> None:
        self.directory = os.path.join(root, hashlib.sha256(identity.encode()).hexdigest()[:32])

    def lease(self, name: str) -> FlockLease | None:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        return _lock_created(os.path.join(self.directory, hashlib.sha256(name.encode()).hexdigest()))


class _HeldName:
    def __init__(self, held: set[str], name: str) -> None:
        self._held: set[str] | None = held
        self._name = name

    async def release(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.discard(self._name)


class ProcessLocks:
    """Leases inside one process, for storage that lives in one process."""

    def __init__(self) -> None:
        self._held: set[str] = set()

    def lease(self, name: str) -> Lease | None:
        if name in self._held:
            return None
        self._held.add(name)
        return _HeldName(self._held, name)
