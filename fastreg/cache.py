"""Blob descriptor caches (`storage.cache.blobdescriptor`): what HEADs and manifest checks ask
storage most often, kept in memory.

Blobs are content-addressed, so a descriptor (digest -> size) never changes while the blob exists;
only "this repository has this blob" can become false, through a blob delete, which goes through
`forget_link`. Only positive answers are cached: a blob pushed by another worker is found on
storage at once. Like Distribution's `inmemory` cache, a per-process cache learns of a delete made
by another process only when its entry is evicted; the `redis` cache (shared) does not have that
limit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from fastreg.config import parse_duration
from fastreg.lru import LRU
from fastreg.registry.blobs import BlobInfo
from fastreg.registry.digests import Digest

log = logging.getLogger("fastreg.cache")


class InMemoryDescriptorCache:
    def __init__(self, size: int = 10000) -> None:
        self._blobs: LRU[Digest, BlobInfo] = LRU(size)
        self._links: LRU[tuple[str, Digest], bool] = LRU(size)

    @property
    def hits(self) -> int:
        return self._blobs.hits + self._links.hits

    @property
    def misses(self) -> int:
        return self._blobs.misses + self._links.misses

    async def get(self, digest: Digest) -> BlobInfo | None:
        return self._blobs.get(digest)

    async def put(self, info: BlobInfo) -> None:
        self._blobs.put(info.digest, info)

    async def is_linked(self, name: str, digest: Digest) -> bool:
        return self._links.get((name, digest)) is not None

    async def put_link(self, name: str, digest: Digest) -> None:
        self._links.put((name, digest), True)

    async def forget_link(self, name: str, digest: Digest) -> None:
        self._links.pop((name, digest))

    async def forget(self, digest: Digest) -> None:
        self._blobs.pop(digest)

    async def close(self) -> None:
        return None


class RedisDescriptorCache:
    """The descriptor cache in Redis, shared by every worker and host: a delete seen by one is
    seen by all. Keys follow Distribution's redis cache (`blobs::<digest>` hashes,
    `repository::<name>::blobs` sets). Redis trouble never fails a request: it is a miss, logged.
    """

    BACKOFF = 5.0  # seconds without trying Redis after a failure: an outage costs no latency

    def __init__(self, client: Any) -> None:
        self._redis = client
        self._down_until = 0.0
        self.hits = 0
        self.misses = 0

    @classmethod
    def from_config(cls, redis: Mapping[str, Any]) -> RedisDescriptorCache:
        addr = str(redis.get("addr") or "127.0.0.1:6379")
        host, _, port = addr.rpartition(":")
        pool = redis.get("pool") or {}
        client = aioredis.Redis(
            host=host or "127.0.0.1",
            port=int(port or 6379),
            db=int(redis.get("db") or 0),
            username=str(redis["username"]) if redis.get("username") else None,
            password=str(redis["password"]) if redis.get("password") else None,
            socket_connect_timeout=_seconds(redis.get("dialtimeout"), 1.0),
            socket_timeout=_seconds(redis.get("readtimeout"), 1.0),
            max_connections=int(pool.get("maxactive") or 64),
            ssl=bool((redis.get("tls") or {}).get("enabled")),
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client)

    async def _call(self, op: str, *args: Any, **kwargs: Any) -> Any:
        if time.monotonic() < self._down_until:
            return None
        try:
            return await getattr(self._redis, op)(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any redis failure is a cache miss, not an error
            self._down_until = time.monotonic() + self.BACKOFF
            log.warning("redis descriptor cache: %s failed", op, extra={"error": str(exc)[:200]})
            return None

    async def get(self, digest: Digest) -> BlobInfo | None:
        fields = await self._call("hgetall", f"blobs::{digest}")
        if not fields or b"size" not in fields:
            self.misses += 1
            return None
        self.hits += 1
        media_type = fields.get(b"mediatype", b"application/octet-stream").decode()
        return BlobInfo(digest, int(fields[b"size"]), media_type)

    async def put(self, info: BlobInfo) -> None:
        mapping = {"digest": str(info.digest), "size": info.size, "mediatype": info.media_type}
        await self._call("hset", f"blobs::{info.digest}", mapping=mapping)

    async def is_linked(self, name: str, digest: Digest) -> bool:
        linked = bool(await self._call("sismember", f"repository::{name}::blobs", str(digest)))
        if linked:
            self.hits += 1
        else:
            self.misses += 1
        return linked

    async def put_link(self, name: str, digest: Digest) -> None:
        await self._call("sadd", f"repository::{name}::blobs", str(digest))

    async def forget_link(self, name: str, digest: Digest) -> None:
        await self._call("srem", f"repository::{name}::blobs", str(digest))
        await self._call("delete", f"repository::{name}::{digest}")

    async def forget(self, digest: Digest) -> None:
        await self._call("delete", f"blobs::{digest}")

    async def close(self) -> None:
        await self._redis.aclose()


def _seconds(value: Any, default: float) -> float:
    return parse_duration(value) if value not in (None, "") else default


class InMemoryTagCache:
    """Tag lists per repository for ``ttl`` seconds, in this process."""

    def __init__(self, ttl: float, size: int = 10000) -> None:
        self.ttl = ttl
        self._lists: LRU[str, tuple[float, list[str]]] = LRU(size)

    async def get(self, name: str) -> list[str] | None:
        entry = self._lists.get(name)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    async def put(self, name: str, tags: list[str]) -> None:
        self._lists.put(name, (time.monotonic() + self.ttl, tags))

    async def forget(self, name: str) -> None:
        self._lists.pop(name)

    async def close(self) -> None:
        return None


class RedisTagCache:
    """Tag lists shared by every worker in Redis, expiring after ``ttl`` seconds."""

    def __init__(self, cache: RedisDescriptorCache, ttl: float, owns: bool) -> None:
        self._cache = cache
        self.ttl = ttl
        self._owns = owns  # False when the descriptor cache shares (and closes) the client

    async def get(self, name: str) -> list[str] | None:
        raw = await self._cache._call("get", f"fastreg::tags::{name}")
        return list(orjson.loads(raw)) if raw else None

    async def put(self, name: str, tags: list[str]) -> None:
        ttl_ms = max(1, int(self.ttl * 1000))
        await self._cache._call("set", f"fastreg::tags::{name}", orjson.dumps(tags), px=ttl_ms)

    async def forget(self, name: str) -> None:
        await self._cache._call("delete", f"fastreg::tags::{name}")

    async def close(self) -> None:
        if self._owns:
            await self._cache.close()
