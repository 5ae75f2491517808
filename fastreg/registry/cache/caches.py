"""Caches of what storage is asked most: blob descriptors and repository links
(`storage.cache.blobdescriptor`), and tag lists (`storage.cache.tags`).

Blobs are content-addressed, so a descriptor (digest -> size) never changes while the blob exists;
what can become false is "this repository has this blob" (a blob delete) and a tag list (a tag
write). Only positive link answers are cached, so a blob pushed by another worker is found on
storage at once.

Every invalidation bumps a generation number of the repository, and a fill (a value read from
storage after a miss) is stored only if the generation it started from is still current. Without
that, a reader that listed storage just before a concurrent write would put the old answer back
after the write cleared it, and it would stay until it expired (or forever for a link).

In Redis (shared by every worker and host; keys as Distribution's redis cache where it has them:
`blobs::<digest>` hashes, `repository::<name>::blobs` sets) an outage is a miss, never an error,
and Redis is left alone for a few seconds after a failure. Invalidations that failed meanwhile
are replayed when it answers again, and if too many piled up, every cached key is dropped.
A per-process (`inmemory`) cache learns of a write made by another process only when its entry
expires or is evicted, as with Distribution's `inmemory` cache.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from fastreg.registry.blobs import BlobInfo
from fastreg.registry.cache.lru import LRU
from fastreg.registry.cache.redis import RedisSettings
from fastreg.registry.digests import Digest

log = logging.getLogger("fastreg.cache")

GENERATION_LIFETIME = 24 * 3600  # seconds a Redis generation counter outlives its last bump
MAX_PENDING = 10000  # invalidations kept for replay during an outage before a full flush
KEY_PATTERNS = ("blobs::*", "repository::*", "fastreg::*")

# store ARGV[2..] only if the generation in KEYS[1] still is ARGV[1]
_SADD_IF_CURRENT = """
if (redis.call('GET', KEYS[1]) or '0') == ARGV[1] then redis.call('SADD', KEYS[2], ARGV[2]) end
"""
_SET_IF_CURRENT = """
if (redis.call('GET', KEYS[1]) or '0') == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
end
"""


# The repository's generation and the tag link cached under it, in one round trip.
_GET_TAG_LINK = """
local g = redis.call('GET', KEYS[1]) or '0'
return {g, redis.call('GET', ARGV[1] .. g .. '::' .. ARGV[2])}
"""


class Generations:
    """Per-repository invalidation counters of one process."""

    def __init__(self) -> None:
        self._gen: dict[str, int] = {}

    def current(self, name: str) -> str:
        return str(self._gen.get(name, 0))

    def bump(self, name: str) -> None:
        self._gen[name] = self._gen.get(name, 0) + 1


class InMemoryDescriptorCache:
    def __init__(self, size: int = 10000) -> None:
        self._blobs: LRU[Digest, BlobInfo] = LRU(size)
        self._links: LRU[tuple[str, Digest], bool] = LRU(size)
        self._generations = Generations()

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

    async def link_generation(self, name: str) -> str:
        return self._generations.current(name)

    async def put_link(self, name: str, digest: Digest, generation: str | None = None) -> None:
        if generation is None or generation == self._generations.current(name):
            self._links.put((name, digest), True)

    async def forget_link(self, name: str, digest: Digest) -> None:
        self._generations.bump(name)
        self._links.pop((name, digest))

    async def forget(self, digest: Digest) -> None:
        self._blobs.pop(digest)

    async def close(self) -> None:
        return None


class RedisDescriptorCache:
    """The descriptor cache in Redis, shared by every worker and host: a delete seen by one is
    seen by all."""

    BACKOFF = 5.0  # seconds without trying Redis after a failure: an outage costs no latency

    def __init__(self, client: Any) -> None:
        self._redis = client
        self._down_until = 0.0
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        self._flush_needed = False
        self.hits = 0
        self.misses = 0

    @classmethod
    def from_config(cls, redis: RedisSettings) -> RedisDescriptorCache:
        host, port = redis.host_port()
        # the redis client (some 7 MiB per worker) is loaded only when a cache uses Redis
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        client = aioredis.Redis(
            host=host,
            port=port,
            db=redis.db,
            username=redis.username,
            password=redis.password,
            socket_connect_timeout=redis.dialtimeout,
            socket_timeout=redis.readtimeout,
            max_connections=redis.maxactive,
            ssl=redis.tls,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client)

    async def call(self, op: str, *args: Any, **kwargs: Any) -> Any:
        """A Redis command; None when Redis is unreachable (logged, then left alone a while)."""
        return (await self._execute(op, *args, **kwargs))[1]

    async def execute(self, op: str, *args: Any, **kwargs: Any) -> tuple[bool, Any]:
        """A Redis command as (answered, result): unlike ``call``, an outage is told apart from
        a None result (the upload leases, registry/leases.py, must not take one for the other)."""
        return await self._execute(op, *args, **kwargs)

    async def _execute(self, op: str, *args: Any, **kwargs: Any) -> tuple[bool, Any]:
        if time.monotonic() < self._down_until:
            return False, None
        try:
            if self._pending or self._flush_needed:
                await self._replay()
            return True, await getattr(self._redis, op)(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any redis failure is a cache miss, not an error
            self._down_until = time.monotonic() + self.BACKOFF
            log.warning("redis cache: %s failed", op, extra={"error": str(exc)[:200]})
            return False, None

    async def invalidate(self, *ops: tuple[str, tuple[Any, ...]]) -> None:
        """Run invalidations now, or keep them for when Redis answers again: a delete made
        during an outage must not leave the old answer in the cache afterwards."""
        for i, (op, args) in enumerate(ops):
            done, _ = await self._execute(op, *args)
            if not done:
                self._keep(list(ops[i:]))
                return

    def _keep(self, ops: list[tuple[str, tuple[Any, ...]]]) -> None:
        self._pending.extend(ops)
        if len(self._pending) > MAX_PENDING:
            self._pending.clear()
            self._flush_needed = True

    async def _replay(self) -> None:
        if self._flush_needed:
            for pattern in KEY_PATTERNS:
                async for key in self._redis.scan_iter(match=pattern, count=1000):
                    await self._redis.delete(key)
            self._flush_needed = False
        while self._pending:
            op, args = self._pending[0]
            await getattr(self._redis, op)(*args)
            self._pending.pop(0)

    async def generation(self, key: str) -> str:
        value = await self.call("get", key)
        return value.decode() if value else "0"

    def bump_ops(self, key: str) -> tuple[tuple[str, tuple[Any, ...]], ...]:
        return (("incr", (key,)), ("expire", (key, GENERATION_LIFETIME)))

    async def get(self, digest: Digest) -> BlobInfo | None:
        fields = await self.call("hgetall", f"blobs::{digest}")
        if not fields or b"size" not in fields:
            self.misses += 1
            return None
        self.hits += 1
        media_type = fields.get(b"mediatype", b"application/octet-stream").decode()
        return BlobInfo(digest, int(fields[b"size"]), media_type)

    async def put(self, info: BlobInfo) -> None:
        mapping = {"digest": str(info.digest), "size": info.size, "mediatype": info.media_type}
        await self.call("hset", f"blobs::{info.digest}", mapping=mapping)

    async def is_linked(self, name: str, digest: Digest) -> bool:
        linked = bool(await self.call("sismember", f"repository::{name}::blobs", str(digest)))
        if linked:
            self.hits += 1
        else:
            self.misses += 1
        return linked

    async def link_generation(self, name: str) -> str:
        return await self.generation(f"fastreg::linkgen::{name}")

    async def put_link(self, name: str, digest: Digest, generation: str | None = None) -> None:
        if generation is None:
            await self.call("sadd", f"repository::{name}::blobs", str(digest))
            return
        keys = (f"fastreg::linkgen::{name}", f"repository::{name}::blobs")
        await self.call("eval", _SADD_IF_CURRENT, 2, *keys, generation, str(digest))

    async def forget_link(self, name: str, digest: Digest) -> None:
        await self.invalidate(
            *self.bump_ops(f"fastreg::linkgen::{name}"),
            ("srem", (f"repository::{name}::blobs", str(digest))),
            ("delete", (f"repository::{name}::{digest}",)),
        )

    async def forget(self, digest: Digest) -> None:
        await self.invalidate(("delete", (f"blobs::{digest}",)))

    async def close(self) -> None:
        await self._redis.aclose()


class InMemoryTagCache:
    """Tag lists and tag -> digest links per repository for ``ttl`` seconds, in this process."""

    def __init__(self, ttl: float, size: int = 10000) -> None:
        self.ttl = ttl
        self._lists: LRU[str, tuple[float, list[str]]] = LRU(size)
        self._links: LRU[tuple[str, str], tuple[float, str, str]] = LRU(size)
        self._generations = Generations()

    async def get_tag(self, name: str, tag: str) -> tuple[str | None, str]:
        generation = self._generations.current(name)
        entry = self._links.get((name, tag))
        if entry is None or entry[0] < time.monotonic() or entry[2] != generation:
            return None, generation
        return entry[1], generation

    async def put_tag(self, name: str, tag: str, digest: str, generation: str) -> None:
        if generation == self._generations.current(name):
            self._links.put((name, tag), (time.monotonic() + self.ttl, digest, generation))

    async def get(self, name: str) -> list[str] | None:
        entry = self._lists.get(name)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    async def generation(self, name: str) -> str:
        return self._generations.current(name)

    async def put(self, name: str, tags: list[str], generation: str) -> None:
        if generation == self._generations.current(name):
            self._lists.put(name, (time.monotonic() + self.ttl, tags))

    async def forget(self, name: str) -> None:
        self._generations.bump(name)
        self._lists.pop(name)

    async def close(self) -> None:
        return None


class RedisTagCache:
    """Tag lists and tag -> digest links shared by every worker in Redis, expiring after ``ttl``
    seconds. A link's key holds the repository's generation, so a ``forget`` (one INCR) makes
    every cached link of the repository unreachable at once."""

    def __init__(self, redis: RedisDescriptorCache, ttl: float, owns: bool) -> None:
        self._redis = redis
        self.ttl = ttl
        self._owns = owns  # False when the descriptor cache shares (and closes) the client

    async def get(self, name: str) -> list[str] | None:
        raw = await self._redis.call("get", f"fastreg::tags::{name}")
        return list(orjson.loads(raw)) if raw else None

    async def generation(self, name: str) -> str:
        return await self._redis.generation(f"fastreg::tagsgen::{name}")

    async def put(self, name: str, tags: list[str], generation: str) -> None:
        keys = (f"fastreg::tagsgen::{name}", f"fastreg::tags::{name}")
        ttl_ms = max(1, int(self.ttl * 1000))
        await self._redis.call("eval", _SET_IF_CURRENT, 2, *keys, generation, orjson.dumps(tags), ttl_ms)

    async def get_tag(self, name: str, tag: str) -> tuple[str | None, str]:
        found = await self._redis.call(
            "eval", _GET_TAG_LINK, 1, f"fastreg::tagsgen::{name}", f"fastreg::tag::{name}::", tag
        )
        if not found:
            return None, "0"
        generation, digest = found[0], found[1] if len(found) > 1 else None
        return (digest.decode() if digest else None), generation.decode()

    async def put_tag(self, name: str, tag: str, digest: str, generation: str) -> None:
        keys = (f"fastreg::tagsgen::{name}", f"fastreg::tag::{name}::{generation}::{tag}")
        ttl_ms = max(1, int(self.ttl * 1000))
        await self._redis.call("eval", _SET_IF_CURRENT, 2, *keys, generation, digest, ttl_ms)

    async def forget(self, name: str) -> None:
        await self._redis.invalidate(
            *self._redis.bump_ops(f"fastreg::tagsgen::{name}"),
            ("delete", (f"fastreg::tags::{name}",)),
        )

    async def close(self) -> None:
        if self._owns:
            await self._redis.close()
