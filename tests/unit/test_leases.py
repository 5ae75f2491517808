"""Upload leases (registry/leases.py): the Redis lease that several hosts on one object store
share, and the stop of a request in flight by a cancel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fastreg.registry import leases
from fastreg.registry.cache.caches import RedisDescriptorCache
from fastreg.registry.cache.redis import parse as parse_redis
from fastreg.registry.errors import ErrorCode, RegistryError
from fastreg.registry.leases import UploadLeases
from fastreg.storage.inmemory import InMemoryDriver
from fastreg.storage.s3 import S3Driver, S3Params
from tests.procs import free_port
from tests.redis_server import RedisServer, redis_server  # noqa: F401 - fixture

UPLOAD = "0b5a9d1e-55c0-4f0e-9a53-7b1b6c1a7e2f"
PATH = f"/docker/registry/v2/repositories/r/_uploads/{UPLOAD}/startedat"


def redis(addr: str) -> RedisDescriptorCache:
    return RedisDescriptorCache.from_config(parse_redis({"addr": addr, "dialtimeout": "200ms",
                                             "readtimeout": "200ms"}))  # fmt: skip


def host_local_driver() -> S3Driver:
    """A driver whose leases stop at this host (never contacted: leases go to Redis)."""
    return S3Driver(S3Params.parse({"bucket": "b", "region": "us-east-1",
                                    "regionendpoint": "http://127.0.0.1:1"}))  # fmt: skip


@pytest.fixture
async def two_hosts(redis_server: RedisServer) -> AsyncIterator[tuple[UploadLeases, UploadLeases]]:  # noqa: F811
    a, b = redis(redis_server.addr), redis(redis_server.addr)
    yield UploadLeases(host_local_driver(), a), UploadLeases(host_local_driver(), b)
    await a.close()
    await b.close()


async def test_a_redis_lease_refuses_a_second_holder_until_released(
    two_hosts: tuple[UploadLeases, UploadLeases],
) -> None:
    one, other = two_hosts
    assert one.redis is not None
    async with one.hold(UPLOAD, PATH):
        with pytest.raises(RegistryError) as err:
            async with other.hold(UPLOAD, PATH):
                pass
        assert err.value.code is ErrorCode.BLOB_UPLOAD_INVALID
    async with other.hold(UPLOAD, PATH):
        pass


async def test_a_redis_lease_taken_over_stops_its_holder(
    two_hosts: tuple[UploadLeases, UploadLeases], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leases, "REDIS_RENEW", 0.05)
    one, _ = two_hosts
    assert one.redis is not None
    async with one.hold(UPLOAD, PATH) as hold:
        await one.redis.execute("delete", leases.REDIS_PREFIX + UPLOAD)  # expired, say
        with pytest.raises(RegistryError) as err, hold.interruptible():
            await asyncio.sleep(10)  # a body read stalled on the socket
        assert err.value.code is ErrorCode.BLOB_UPLOAD_INVALID


async def test_no_redis_answer_is_unavailable_not_unlocked(tmp_path: Path) -> None:
    down = redis(f"127.0.0.1:{free_port()}")
    with pytest.raises(RegistryError) as err:
        async with UploadLeases(host_local_driver(), down).hold(UPLOAD, PATH):
            pass
    assert err.value.code is ErrorCode.UNAVAILABLE
    await down.close()


async def test_drivers_whose_leases_span_hosts_do_not_use_redis() -> None:
    assert UploadLeases(InMemoryDriver(), redis("127.0.0.1:1")).redis is None


async def test_a_cancel_stops_a_stalled_read_of_this_process_only() -> None:
    upload_leases = UploadLeases(InMemoryDriver(), None)

    async def stalled() -> None:
        async with upload_leases.hold(UPLOAD, PATH) as hold:
            with hold.interruptible():
                await asyncio.sleep(10)

    task = asyncio.ensure_future(stalled())
    await asyncio.sleep(0.01)
    with pytest.raises(RegistryError) as busy:
        async with upload_leases.hold(UPLOAD, PATH):
            pass
    assert busy.value.code is ErrorCode.BLOB_UPLOAD_INVALID
    upload_leases.cancel(UPLOAD)
    with pytest.raises(RegistryError) as err:
        await asyncio.wait_for(task, 5)  # the hang detector; a cancel ends it at once
    assert err.value.code is ErrorCode.BLOB_UPLOAD_UNKNOWN
    # a cancellation from elsewhere (client gone, shutdown) stays a cancellation
    task = asyncio.ensure_future(stalled())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("descriptors", ["inmemory", "redis"])
async def test_redis_addr_alone_gives_apps_on_an_object_store_one_lease(
    redis_server: RedisServer, descriptors: str  # noqa: F811
) -> None:
    """Two hosts over one object store with `redis.addr` exclude each other on an upload,
    whatever cache the descriptors use (a Redis descriptor cache is not required)."""
    from fastreg.api.context import REGISTRY
    from fastreg.config import parse_config
    from fastreg.server.app import create_app

    config = parse_config(
        "version: 0.1\nstorage:\n  inmemory: {}\n"
        f"  cache: {{blobdescriptor: {descriptors}}}\nredis: {{addr: '{redis_server.addr}'}}\n"
    )
    one = create_app(config, host_local_driver())[REGISTRY]
    other = create_app(config, host_local_driver())[REGISTRY]
    try:
        assert one.uploads.leases.redis is not None
        async with one.uploads.leases.hold(UPLOAD, PATH):
            with pytest.raises(RegistryError) as err:
                async with other.uploads.leases.hold(UPLOAD, PATH):
                    pass
            assert err.value.code is ErrorCode.BLOB_UPLOAD_INVALID
    finally:
        for registry in (one, other):
            await registry.close()
