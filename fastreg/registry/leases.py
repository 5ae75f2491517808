"""One request at a time on an upload, across workers and hosts; and a cancel that never waits.

Why a try-lock and not a wait: no client overlaps its own requests on one upload, so a second
request while one is in flight is a race (or a hostile client), and waiting is what made a
DELETE or a PUT hang behind a PATCH stalled mid-body (issue 12). The second request is refused
at once with BLOB_UPLOAD_INVALID ("upload busy"), and the bytes a commit checks can never be
changed by a PATCH still running elsewhere: a PATCH racing a PUT either holds the lease (the PUT
is refused) or has finished before the PUT reads the bytes.

The lease is the driver's (``StorageDriver.lease`` on the upload's `startedat`: a `flock` of the
file on the filesystem, host-local for object stores), or a Redis key when the descriptor cache
is configured (`redis.addr`) and the driver's leases do not reach other hosts. A Redis lease is `SET NX PX` with a
random token, renewed while held and deleted only by its holder (compare-and-delete); it expires
when its holder dies. When Redis does not answer, uploads answer 503 rather than go on unlocked.
A lease that cannot be renewed is lost: the request stops before it commits anything.

Cancel (DELETE) takes no lease: it tells a request in flight in this process to stop (``Hold``:
the request's task is interrupted while it reads the body, so a stalled PATCH ends at once) and
deletes the upload; a request on another worker finds the upload gone when its write ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from fastreg.registry.errors import ErrorCode, RegistryError
from fastreg.storage.base import Lease, PathNotFound, StorageDriver

REDIS_TTL_MS = 30_000  # a dead holder's lease outlives it by this much at most
REDIS_RENEW = REDIS_TTL_MS / 3000  # seconds between renewals: two may fail before it expires
REDIS_PREFIX = "fastreg::uploadlease::"
_IF_OURS = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call({}) end return 0"
_RENEW = _IF_OURS.format("'PEXPIRE', KEYS[1], ARGV[2]")
_RELEASE = _IF_OURS.format("'DEL', KEYS[1]")


@runtime_checkable
class RedisCommands(Protocol):
    """Redis as the caches reach it (cache.RedisDescriptorCache): (answered, result)."""

    async def execute(self, op: str, *args: Any, **kwargs: Any) -> tuple[bool, Any]: ...

    async def close(self) -> None: ...


def busy(upload_id: str) -> RegistryError:
    return RegistryError(
        ErrorCode.BLOB_UPLOAD_INVALID, "upload busy: another request on it is in flight",
        {"uuid": upload_id},
    )


def unknown(upload_id: str) -> RegistryError:
    return RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN, detail={"uuid": upload_id})


@dataclass(slots=True)
class Hold:
    """The request holding an upload's lease in this process, and why it must stop, if it must."""

    upload_id: str
    cancelled: bool = False  # the upload was cancelled (DELETE) meanwhile
    lost: bool = False  # the Redis lease could not be renewed
    _reading: asyncio.Task[Any] | None = field(default=None, repr=False)

    def stop(self, *, cancelled: bool) -> None:
        if cancelled:
            self.cancelled = True
        else:
            self.lost = True
        if self._reading is not None:
            self._reading.cancel()  # wakes a read of the body stalled on the socket

    def check(self) -> None:
        """Raise when the request must stop: the upload is gone, or no longer ours alone."""
        if self.cancelled:
            raise unknown(self.upload_id)
        if self.lost:
            raise RegistryError(
                ErrorCode.BLOB_UPLOAD_INVALID, "upload lease lost", {"uuid": self.upload_id}
            )

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """A stretch (reading the body) that ``stop`` interrupts by cancelling the task; the
        cancellation is turned into the stop's error, and one from elsewhere is left alone."""
        self.check()
        task = asyncio.current_task()
        self._reading = task
        try:
            yield
        except asyncio.CancelledError:
            if (self.cancelled or self.lost) and task is not None and task.uncancel() == 0:
                self.check()
            raise
        finally:
            self._reading = None
        self.check()


class _RedisLease:
    def __init__(self, redis: RedisCommands, key: str, token: str, hold: Hold) -> None:
        self._redis = redis
        self._key = key
        self._token = token
        self._renewal = asyncio.ensure_future(self._renew(hold))

    async def _renew(self, hold: Hold) -> None:
        while True:
            await asyncio.sleep(REDIS_RENEW)
            answered, kept = await self._redis.execute(
                "eval", _RENEW, 1, self._key, self._token, REDIS_TTL_MS
            )
            if not answered or not kept:
                hold.stop(cancelled=False)
                return

    async def release(self) -> None:
        self._renewal.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._renewal
        await self._redis.execute("eval", _RELEASE, 1, self._key, self._token)


class UploadLeases:
    """Leases on uploads for one registry process, and the holds of its requests."""

    def __init__(self, driver: StorageDriver, redis: RedisCommands | None) -> None:
        self.driver = driver
        # Redis only where the driver's own leases stop at this host
        self.redis = None if driver.leases_span_hosts else redis
        self._holds: dict[str, Hold] = {}

    @contextlib.asynccontextmanager
    async def hold(self, upload_id: str, path: str) -> AsyncIterator[Hold]:
        """Hold the lease of the upload whose `startedat` is ``path`` for a request, or raise
        BLOB_UPLOAD_INVALID (busy) at once; BLOB_UPLOAD_UNKNOWN when the upload is gone."""
        if upload_id in self._holds:
            raise busy(upload_id)  # this process's own holder: no storage round trip
        hold = self._holds[upload_id] = Hold(upload_id)
        try:
            lease = await self._take(upload_id, path, hold)
            if lease is None:
                raise busy(upload_id)
            try:
                yield hold
            finally:
                await lease.release()
        finally:
            del self._holds[upload_id]

    def cancel(self, upload_id: str) -> None:
        """Tell this process's request on the upload, if there is one, that it is cancelled."""
        hold = self._holds.get(upload_id)
        if hold is not None:
            hold.stop(cancelled=True)

    async def _take(self, upload_id: str, path: str, hold: Hold) -> Lease | None:
        if self.redis is None:
            try:
                return await self.driver.lease(path)
            except PathNotFound:
                raise unknown(upload_id) from None
        return await take_redis_lease(self.redis, REDIS_PREFIX + upload_id, hold)


async def take_redis_lease(redis: RedisCommands, key: str, hold: Hold) -> Lease | None:
    """The Redis lease ``key`` (renewed while held; ``hold`` is told when it is lost), or None
    while another holder has it; UNAVAILABLE when Redis does not answer. Also the mirror's
    lock of a blob being fetched (proxy/flight.py)."""
    token = secrets.token_hex(16)
    answered, taken = await redis.execute("set", key, token, nx=True, px=REDIS_TTL_MS)
    if not answered:
        raise RegistryError(ErrorCode.UNAVAILABLE, "leases: redis unreachable")
    return _RedisLease(redis, key, token, hold) if taken else None
