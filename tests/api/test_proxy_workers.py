"""One upstream fetch of a cold blob across the workers of a mirror (registry/proxy/flight.py):
two registry apps on one storage root stand for two workers (or hosts), with the lock of a blob
being fetched in a real Redis, or, without Redis, in a host lock file. The worker that does not
fetch waits for the commit and serves storage; a lock left by a dead holder is taken over."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient

from fastreg.api.context import REGISTRY
from fastreg.config.load import parse_config
from fastreg.server.app import create_app
from tests.api.conftest import config_text
from tests.api.fakeupstream import FakeUpstream, sha256
from tests.redis_server import RedisServer, redis_server  # noqa: F401 - fixture

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def upstream() -> Any:
    fake = await FakeUpstream().start()
    try:
        yield fake
    finally:
        await fake.stop()


async def worker(aiohttp_client: Any, root: Path, upstream: FakeUpstream, **overrides: Any) -> Client:
    config = parse_config(config_text(root, "filesystem", proxy__remoteurl=upstream.url, **overrides))
    return await aiohttp_client(create_app(config))


async def pull_all(workers: list[Client], digest: str, n: int) -> list[bytes]:
    async def one(i: int) -> bytes:
        await asyncio.sleep(0.02 * i)
        resp = await workers[i % len(workers)].get(f"/v2/app/blobs/{digest}")
        assert resp.status == 200, await resp.text()
        return await resp.read()

    return await asyncio.gather(*(one(i) for i in range(n)))


@pytest.mark.parametrize("lock", ["redis", "host"])
async def test_concurrent_cold_pulls_on_two_workers_fetch_once(
    aiohttp_client: Any, tmp_path: Path, upstream: FakeUpstream, redis_server: RedisServer,  # noqa: F811
    lock: str,
) -> None:
    data = os.urandom(3 * 1024 * 1024)
    upstream.push("app", "v1", [data])
    upstream.pace = 0.005  # 48 chunks: the pulls on both workers overlap
    settings = {"redis__addr": redis_server.addr} if lock == "redis" else {}
    a = await worker(aiohttp_client, tmp_path / "root", upstream, **settings)
    b = await worker(aiohttp_client, tmp_path / "root", upstream, **settings)
    results = await pull_all([a, b], sha256(data), 8)
    assert all(r == data for r in results)
    assert upstream.gets("blobs") == 1


async def test_a_dead_holders_lock_is_taken_over(
    aiohttp_client: Any, tmp_path: Path, upstream: FakeUpstream, redis_server: RedisServer,  # noqa: F811
) -> None:
    data = os.urandom(256 * 1024)
    upstream.push("app", "v1", [data])
    digest = sha256(data)
    r = aioredis.Redis(host="127.0.0.1", port=redis_server.port)
    try:  # the lock as a worker that died mid-fetch left it: it expires, nobody deletes it
        await r.set(f"fastreg::proxyfetch::{digest}", "dead-holder", px=800)
    finally:
        await r.aclose()
    a = await worker(aiohttp_client, tmp_path / "root", upstream, redis__addr=redis_server.addr)
    started = time.monotonic()
    resp = await a.get(f"/v2/app/blobs/{digest}")
    assert resp.status == 200 and await resp.read() == data
    assert time.monotonic() - started >= 0.5  # waited for the lock to expire, then fetched
    assert upstream.gets("blobs") == 1


async def test_a_bad_blob_on_two_workers_caches_nothing(
    aiohttp_client: Any, tmp_path: Path, upstream: FakeUpstream, redis_server: RedisServer,  # noqa: F811
) -> None:
    data = os.urandom(1024 * 1024)
    upstream.push("app", "v1", [data])
    digest = sha256(data)
    upstream.corrupt[digest] = bytes(len(data))
    upstream.pace = 0.005
    a = await worker(aiohttp_client, tmp_path / "root", upstream, redis__addr=redis_server.addr)
    b = await worker(aiohttp_client, tmp_path / "root", upstream, redis__addr=redis_server.addr)

    async def one(client: Client) -> None:
        resp = await client.get(f"/v2/app/blobs/{digest}")
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()

    await asyncio.gather(one(a), one(b))  # b waits for a's fetch, finds nothing, fetches itself
    assert upstream.gets("blobs") == 2
    upstream.corrupt.clear()
    # the clients saw the resets; the workers may still be ending the bad fetches (a pull joining
    # one would be reset too)
    await asyncio.gather(a.app[REGISTRY].settled(), b.app[REGISTRY].settled())
    results = await pull_all([a, b], digest, 2)
    assert all(r == data for r in results) and upstream.gets("blobs") == 3
