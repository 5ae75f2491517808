"""The caches: a fill racing with an invalidation never puts the old answer back, and an
invalidation made while Redis is unreachable is replayed when it answers again."""

from __future__ import annotations

from typing import Any

import pytest

from fastreg.registry.cache.caches import (
    InMemoryDescriptorCache,
    InMemoryTagCache,
    RedisDescriptorCache,
    RedisTagCache,
)
from fastreg.registry.cache.redis import parse as parse_redis
from fastreg.registry.digests import Digest
from tests.redis_server import RedisServer, redis_server  # noqa: F401 - fixture

DIGEST = Digest.from_bytes(b"layer")


def redis_cache(server: RedisServer) -> RedisDescriptorCache:
    return RedisDescriptorCache.from_config(
        parse_redis({"addr": server.addr, "dialtimeout": "200ms", "readtimeout": "200ms"})
    )


@pytest.fixture(params=["inmemory", "redis"])
async def caches(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    if request.param == "inmemory":
        yield InMemoryDescriptorCache(), InMemoryTagCache(ttl=60)
        return
    server = request.getfixturevalue("redis_server")
    descriptors = redis_cache(server)
    yield descriptors, RedisTagCache(descriptors, ttl=60, owns=False)
    await descriptors.close()


async def test_tag_fill_racing_with_a_write_is_dropped(caches: Any) -> None:
    _, tags = caches
    generation = await tags.generation("repo")  # a reader starts listing storage ...
    await tags.forget("repo")  # ... a tag is written meanwhile ...
    await tags.put("repo", ["old"], generation)  # ... and the reader's stale list arrives
    assert await tags.get("repo") is None
    fresh = await tags.generation("repo")
    await tags.put("repo", ["old", "new"], fresh)
    assert await tags.get("repo") == ["old", "new"]


async def test_tag_link_is_cached_until_the_repository_changes(caches: Any) -> None:
    _, tags = caches
    cached, generation = await tags.get_tag("repo", "v1")
    assert cached is None
    await tags.put_tag("repo", "v1", str(DIGEST), generation)
    assert (await tags.get_tag("repo", "v1"))[0] == str(DIGEST)
    assert (await tags.get_tag("other", "v1"))[0] is None
    await tags.forget("repo")  # a tag written: every cached link of the repository is gone
    assert (await tags.get_tag("repo", "v1"))[0] is None


async def test_tag_link_fill_racing_with_a_write_is_dropped(caches: Any) -> None:
    _, tags = caches
    _, generation = await tags.get_tag("repo", "v1")  # a reader misses and reads storage ...
    await tags.forget("repo")  # ... the tag is moved meanwhile ...
    await tags.put_tag("repo", "v1", str(DIGEST), generation)  # ... the old digest arrives
    assert (await tags.get_tag("repo", "v1"))[0] is None


async def test_link_fill_racing_with_a_delete_is_dropped(caches: Any) -> None:
    descriptors, _ = caches
    generation = await descriptors.link_generation("repo")
    await descriptors.forget_link("repo", DIGEST)
    await descriptors.put_link("repo", DIGEST, generation)
    assert not await descriptors.is_linked("repo", DIGEST)
    await descriptors.put_link("repo", DIGEST, await descriptors.link_generation("repo"))
    assert await descriptors.is_linked("repo", DIGEST)


async def test_invalidation_during_an_outage_is_replayed(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    reader = redis_cache(redis_server)
    await reader.put_link("repo", DIGEST)
    tags_r = RedisTagCache(reader, 60, False)
    await tags_r.put("repo", ["v1"], await tags_r.generation("repo"))
    # the writer's Redis is unreachable (nothing listens there): its invalidations cannot land
    writer = RedisDescriptorCache.from_config(parse_redis({"addr": f"127.0.0.1:{_closed_port()}"}))
    writer.BACKOFF = 0.0
    await writer.forget_link("repo", DIGEST)
    await RedisTagCache(writer, 60, False).forget("repo")
    assert len(writer._pending) == 7
    assert await reader.is_linked("repo", DIGEST)  # still the old answer, for now
    healthy = redis_cache(redis_server)
    writer._redis, unreachable = healthy._redis, writer._redis  # Redis answers again
    await writer.call("ping")  # the writer's next call replays what failed, in order
    assert writer._pending == []
    assert not await reader.is_linked("repo", DIGEST)
    assert await tags_r.get("repo") is None
    await unreachable.aclose()
    for cache in (writer, reader):
        await cache.close()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
