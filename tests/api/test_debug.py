"""The debug application (/debug/health, /debug/vars, Prometheus metrics) and the health gate on
the API, driven through aiohttp's test client."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from fastreg.server.debug import debug_app
from fastreg.server.health import HEALTH
from fastreg.storage.base import StorageDriver, StorageError
from fastreg.storage.inmemory import InMemoryDriver
from tests.api.conftest import Client, MakeClient
from tests.api.helpers import OCI_MANIFEST, expect_error, push_blob, push_image, sha256
from tests.metrics import parse, samples

AiohttpClient = Callable[..., Awaitable[Client]]


@pytest.fixture
def driver_name() -> str:
    return "inmemory"


class FlakyDriver(InMemoryDriver):
    """In memory, with a switch that makes `healthy()` fail."""

    broken = False

    async def healthy(self) -> None:
        if self.broken:
            raise StorageError("backend unreachable")


async def until(predicate: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def make_debug(aiohttp_client: AiohttpClient, tmp_path: Path) -> Callable[..., Awaitable[Any]]:
    from fastreg.config import parse_config
    from fastreg.server.app import create_app
    from tests.api.conftest import config_text

    async def make(driver: StorageDriver | None = None, **overrides: Any) -> tuple[Client, Client]:
        config = parse_config(config_text(tmp_path / "root", "inmemory", **overrides))
        api = await aiohttp_client(create_app(config, driver))
        return api, await aiohttp_client(debug_app(api.app, config))

    return make


async def test_storage_health_threshold_gates_the_api(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    driver = FlakyDriver()
    api, debug = await make_debug(aiohttp_client, tmp_path)(
        driver, health={"storagedriver": {"enabled": True, "interval": "20ms", "threshold": 3}}
    )
    resp = await debug.get("/debug/health")
    assert resp.status == 200 and await resp.json() == {}
    assert (await api.get("/v2/")).status == 200
    driver.broken = True
    check = api.app[HEALTH].checks[0]
    await until(lambda: check.failures >= 1)
    assert not check.failing  # below the threshold the registry still serves
    await until(lambda: check.failing)
    resp = await debug.get("/debug/health")
    assert resp.status == 503
    assert await resp.json() == {"storagedriver_inmemory": "backend unreachable"}
    body = await expect_error(await api.get("/v2/"), 503, "UNAVAILABLE")
    assert body["errors"][0]["detail"] == {"storagedriver_inmemory": "backend unreachable"}
    await expect_error(await api.get("/v2/x/tags/list"), 503, "UNAVAILABLE")
    driver.broken = False
    await until(lambda: not check.failing)
    assert (await debug.get("/debug/health")).status == 200
    assert (await api.get("/v2/")).status == 200


async def test_file_and_tcp_checks(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    marker = tmp_path / "maintenance"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens once the socket is closed
    api, debug = await make_debug(aiohttp_client, tmp_path)(health={
        "file": [{"file": str(marker), "interval": "20ms"}],
        "tcp": [{"addr": f"127.0.0.1:{closed}", "interval": "20ms", "threshold": 2}],
    })
    await until(lambda: all(c.runs >= 2 for c in api.app[HEALTH].checks))
    body = await (await debug.get("/debug/health")).json()
    assert set(body) == {f"127.0.0.1:{closed}"}  # the file is absent: only tcp fails
    marker.write_text("down for maintenance")
    await until(lambda: api.app[HEALTH].checks[0].failing)
    resp = await debug.get("/debug/health")
    assert resp.status == 503
    assert (await resp.json())[str(marker)] == "file exists"
    marker.unlink()
    await until(lambda: not api.app[HEALTH].checks[0].failing)


async def test_vars_count_requests_bytes_caches_and_notifications(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    api, debug = await make_debug(aiohttp_client, tmp_path)(
        storage__cache__blobdescriptor="inmemory",
        notifications={"endpoints": [{"name": "n", "url": "http://127.0.0.1:9/x",
                                      "backoff": "1s"}],
                       "spool": {"directory": str(tmp_path / "spool")}},
    )
    _, manifest = await push_image(api, "vars", "v1", [b"L" * 1000])
    for _ in range(3):
        resp = await api.get("/v2/vars/manifests/v1", headers={"Accept": OCI_MANIFEST})
        assert await resp.read() == manifest
    data = await (await debug.get("/debug/vars")).json()
    assert data["requests"] == 2 + 1 + 3  # config and layer, manifest, three pulls
    assert data["requests_by_status"] == {"201": 3, "200": 3}
    assert data["bytes_out"] == 3 * len(manifest)
    assert data["bytes_in"] >= 1000 + len(manifest)
    assert data["uploads_in_flight"] == 0 and data["uptime_seconds"] >= 0
    assert data["cache"]["manifests"]["hits"] >= 3
    assert set(data["cache"]) == {"manifests", "blobdescriptor"}
    # 3 pushes + 3 pulls queued for the unreachable endpoint. An event on its way from the
    # memory queue to the spool (written on the spool's thread) is briefly in neither count.
    deadline = time.monotonic() + 10
    while True:
        endpoint = data["notifications"]["endpoints"]["n"]
        if endpoint["pending"] == 6 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
        data = await (await debug.get("/debug/vars")).json()
    assert endpoint["pending"] == 6 and endpoint["dropped"] == 0


async def test_uploads_in_flight(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    api, debug = await make_debug(aiohttp_client, tmp_path)()
    resp = await api.post("/v2/slow/blobs/uploads/")
    url = resp.headers["Location"]
    gate = asyncio.Event()

    async def body() -> Any:
        yield b"first"
        await gate.wait()
        yield b"second"

    patch = asyncio.create_task(api.patch(url, data=body()))
    deadline = time.monotonic() + 5
    while (await (await debug.get("/debug/vars")).json())["uploads_in_flight"] != 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    gate.set()
    assert (await patch).status == 202
    assert (await (await debug.get("/debug/vars")).json())["uploads_in_flight"] == 0


async def test_prometheus_metrics(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    api, debug = await make_debug(aiohttp_client, tmp_path)(
        http__debug={"prometheus": {"enabled": True, "path": "/custom"}},
        storage__cache__blobdescriptor="inmemory")
    digest = await push_blob(api, "prom", b"B" * 2048)
    assert (await api.get(f"/v2/prom/blobs/{digest}")).status == 200
    missing = await api.get("/v2/prom/blobs/" + sha256(b"missing"))
    assert missing.status == 404
    error_bytes = len(await missing.read())
    assert (await debug.get("/metrics")).status == 404
    resp = await debug.get("/custom")
    assert resp.status == 200 and resp.content_type == "text/plain"
    families = parse(await resp.text())
    requests = samples(families, "registry_http_requests_total")
    assert requests[(("code", "201"), ("handler", "blob_upload"), ("method", "post"))] == 1
    assert requests[(("code", "200"), ("handler", "blob"), ("method", "get"))] == 1
    assert requests[(("code", "404"), ("handler", "blob"), ("method", "get"))] == 1
    sent = samples(families, "registry_http_response_size_bytes_sum")
    assert sent[(("handler", "blob"),)] == 2048 + error_bytes
    received = samples(families, "registry_http_request_size_bytes_sum")
    assert received[(("handler", "blob_upload"),)] > 2048  # the body and the head
    count = samples(families, "registry_http_request_duration_seconds_count")
    assert count[(("handler", "blob"), ("method", "get"))] == 2
    buckets = samples(families, "registry_http_request_duration_seconds_bucket")
    assert buckets[(("handler", "blob"), ("le", "+Inf"), ("method", "get"))] == 2
    assert families["registry_storage_action_seconds"].type == "histogram"
    stats = samples(families, "registry_storage_action_seconds_count")
    assert stats[(("action", "Stat"), ("driver", "inmemory"))] >= 1
    assert stats[(("action", "Move"), ("driver", "inmemory"))] == 1  # the upload, published
    cache = samples(families, "registry_storage_cache_total")
    assert cache[(("type", "Request"),)] == cache[(("type", "Hit"),)] + cache[(("type", "Miss"),)]
    assert cache[(("type", "Request"),)] >= 1
    assert (("cache", "manifests"), ("result", "miss")) in samples(
        families, "fastreg_cache_requests_total")
    assert samples(families, "process_resident_memory_bytes")[()] > 0
    assert (await debug.get("/debug/vars")).status == 200


async def test_prometheus_disabled_by_default(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    _, debug = await make_debug(aiohttp_client, tmp_path)()
    assert (await debug.get("/metrics")).status == 404
    assert (await debug.get("/debug/health")).status == 200


async def test_two_apps_count_separately(make_client: MakeClient) -> None:
    first, second = await make_client(), await make_client()
    await first.get("/v2/")
    from fastreg.server.metrics import METRICS

    assert first.app[METRICS].totals()["requests"] == 1
    assert second.app[METRICS].totals()["requests"] == 0
    assert not first.app[METRICS].multiprocess  # one process: each app its own registry


async def test_upstream_reachability_is_reported_never_gating(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """A mirror's upstreams are checked (their `/v2/` answers 200 or 401) and shown in
    `/debug/health`'s body, but a down upstream neither closes `/v2/` nor fails the status: the
    mirror still serves what it has cached."""
    from tests.api.fakeupstream import running

    async with running() as upstream:
        api, debug = await make_debug(aiohttp_client, tmp_path)(proxy__remoteurl=upstream.url)
        (check,) = [c for c in api.app[HEALTH].checks if c.name.startswith("upstream ")]
        assert check.name == f"upstream 127.0.0.1:{upstream.port}" and not check.gates
        await check.run_once()
        resp = await debug.get("/debug/health")
        assert resp.status == 200 and await resp.json() == {}
        for mode, error in (("down", "503"), ("throttle", "429"), ("stopped", "ClientConnectorError")):
            if mode == "stopped":
                await upstream.stop()
            else:
                upstream.mode = mode
            await check.run_once()
            resp = await debug.get("/debug/health")
            body = await resp.json()
            assert resp.status == 200 and list(body) == [check.name], body
            assert error in body[check.name]
            assert (await api.get("/v2/")).status == 200  # never gating
            vars_ = await (await debug.get("/debug/vars")).json()
            assert vars_["health"][check.name]["failing"] is True
        upstream.mode = "up"
        await upstream.start()
        await check.run_once()
        assert await (await debug.get("/debug/health")).json() == {}
