"""`storage.cache.blobdescriptor`: cached answers stay right across workers (redis) and a cache
outage never fails a request."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from fastreg.config import parse_config
from fastreg.server.app import create_app
from tests.api.conftest import config_text
from tests.api.helpers import push_blob, push_image
from tests.redis_server import RedisServer, redis_server  # noqa: F401 - fixture

Client = TestClient[web.Request, web.Application]


async def worker(aiohttp_client: Any, root: Path, **overrides: Any) -> Client:
    config = parse_config(config_text(root, "filesystem", **overrides))
    return await aiohttp_client(create_app(config))


async def test_redis_cache_delete_on_one_worker_is_seen_by_all(
    aiohttp_client: Any, tmp_path: Path, redis_server: RedisServer  # noqa: F811
) -> None:
    settings = {"storage__cache__blobdescriptor": "redis", "redis__addr": redis_server.addr}
    a = await worker(aiohttp_client, tmp_path / "root", **settings)
    b = await worker(aiohttp_client, tmp_path / "root", **settings)
    digest = await push_blob(a, "shared/repo", b"layer bytes" * 100)
    for client in (a, b, a, b):  # fill and hit the cache on both
        assert (await client.head(f"/v2/shared/repo/blobs/{digest}")).status == 200
    assert (await a.delete(f"/v2/shared/repo/blobs/{digest}")).status == 202
    for client in (b, a):
        resp = await client.head(f"/v2/shared/repo/blobs/{digest}")
        assert resp.status == 404


async def test_inmemory_cache_serves_heads_and_manifests(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await worker(aiohttp_client, tmp_path / "root", storage__cache__blobdescriptor="inmemory")
    digest, _ = await push_image(client, "cached/app", "v1", [b"a" * 1000, b"b" * 2000])
    for _ in range(3):
        resp = await client.get(
            "/v2/cached/app/manifests/v1",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        )
        assert resp.status == 200 and resp.headers["Docker-Content-Digest"] == digest
    blob = await push_blob(client, "cached/app", b"c" * 10)
    assert (await client.delete(f"/v2/cached/app/blobs/{blob}")).status == 202
    assert (await client.head(f"/v2/cached/app/blobs/{blob}")).status == 404


async def test_redis_down_is_a_miss_not_an_error(
    aiohttp_client: Any, tmp_path: Path, redis_server: RedisServer  # noqa: F811
) -> None:
    client = await worker(
        aiohttp_client, tmp_path / "root",
        storage__cache__blobdescriptor="redis", redis__addr=redis_server.addr,
        redis__dialtimeout="200ms", redis__readtimeout="200ms",
    )
    digest = await push_blob(client, "r/repo", b"x" * 100)
    redis_server.stop()
    resp = await client.head(f"/v2/r/repo/blobs/{digest}")
    assert resp.status == 200 and resp.headers["Content-Length"] == "100"
    digest2 = await push_blob(client, "r/repo", b"y" * 50)
    assert (await client.get(f"/v2/r/repo/blobs/{digest2}")).status == 200


async def test_tag_cache_shared_in_redis_sees_writes_of_other_workers_at_once(
    aiohttp_client: Any, tmp_path: Path, redis_server: RedisServer  # noqa: F811
) -> None:
    settings = {"storage__cache__tags": "redis", "storage__cache__tagsttl": "1h",
                "redis__addr": redis_server.addr}
    a = await worker(aiohttp_client, tmp_path / "root", **settings)
    b = await worker(aiohttp_client, tmp_path / "root", **settings)
    await push_image(a, "tagged/app", "v1")
    assert (await (await b.get("/v2/tagged/app/tags/list")).json())["tags"] == ["v1"]
    await push_image(a, "tagged/app", "v2")
    assert (await (await b.get("/v2/tagged/app/tags/list")).json())["tags"] == ["v1", "v2"]
    assert (await a.delete("/v2/tagged/app/manifests/v1")).status == 202
    assert (await (await b.get("/v2/tagged/app/tags/list")).json())["tags"] == ["v2"]


async def test_inmemory_tag_cache_expires_for_foreign_writers(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    """A writer that does not share the cache (another process, Distribution) shows after the TTL."""
    cached = await worker(aiohttp_client, tmp_path / "root",
                          storage__cache__tags="inmemory", storage__cache__tagsttl="300ms")
    foreign = await worker(aiohttp_client, tmp_path / "root")
    await push_image(cached, "ttl/app", "v1")
    assert (await (await cached.get("/v2/ttl/app/tags/list")).json())["tags"] == ["v1"]
    await push_image(foreign, "ttl/app", "v2")
    assert (await (await cached.get("/v2/ttl/app/tags/list")).json())["tags"] == ["v1"]
    await asyncio.sleep(0.4)
    assert (await (await cached.get("/v2/ttl/app/tags/list")).json())["tags"] == ["v1", "v2"]
    await push_image(cached, "ttl/app", "v3")  # its own writes: at once
    assert (await (await cached.get("/v2/ttl/app/tags/list")).json())["tags"] == ["v1", "v2", "v3"]
