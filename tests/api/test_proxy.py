"""`proxy.remoteurl`: a read-only pull-through cache of an upstream (tests/api/fakeupstream.py).

Tags are checked upstream on every pull, digests and blobs come from storage once cached, the
upstream down serves what is cached (tags with a `Warning`) and refuses the rest (503, or 429
with Retry-After), a wrong or cut blob caches nothing, and concurrent cold pulls of one blob
make one upstream request.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from fastreg.api.context import REGISTRY
from fastreg.registry.digests import Digest
from fastreg.registry.proxy.upstream import Timeouts
from tests.api.conftest import Client, MakeClient
from tests.api.fakeupstream import FakeUpstream, running, sha256
from tests.api.helpers import DOCKER_LIST, DOCKER_MANIFEST, OCI_MANIFEST, expect_error

ACCEPT = {"Accept": OCI_MANIFEST}
LAYER = os.urandom(300_000)


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    async with running() as fake:
        yield fake


@pytest.fixture
async def mirror(make_client: MakeClient, upstream: FakeUpstream) -> Client:
    return await make_client(proxy__remoteurl=upstream.url)


def slow_blob(upstream: FakeUpstream, mib: int, pace: float) -> bytes:
    """A layer of ``mib`` MiB in `app:v1`, served with ``pace`` seconds between 64 KiB."""
    data = os.urandom(mib * 1024 * 1024)
    upstream.push("app", "v1", [data])
    upstream.pace = pace
    return data


async def pull(client: Client, name: str, tag: str) -> tuple[str, dict[str, bytes]]:
    """Manifest by tag, then every blob it names; (digest, {digest: bytes})."""
    resp = await client.get(f"/v2/{name}/manifests/{tag}", headers=ACCEPT)
    assert resp.status == 200, await resp.text()
    manifest = await resp.json(content_type=None)
    blobs = {}
    for d in [manifest["config"], *manifest["layers"]]:
        got = await client.get(f"/v2/{name}/blobs/{d['digest']}")
        assert got.status == 200, await got.text()
        blobs[d["digest"]] = await got.read()
    await client.app[REGISTRY].settled()  # the last blob committed, not only served
    return resp.headers["Docker-Content-Digest"], blobs


async def test_pull_through_is_byte_identical_and_cached(mirror: Client, upstream: FakeUpstream) -> None:
    digest, body = upstream.push("library/app", "v1", [LAYER, b"small layer"])
    got, blobs = await pull(mirror, "library/app", "v1")
    assert got == digest
    assert all(sha256(data) == d and upstream.blobs[d] == data for d, data in blobs.items())
    assert upstream.gets("blobs") == 3 and upstream.gets("manifests") == 1
    # again: the tag is HEADed upstream, nothing else is fetched
    heads = upstream.counts[("HEAD", "/v2/library/app/manifests/v1")]
    got, again = await pull(mirror, "library/app", "v1")
    assert got == digest and again == blobs
    assert upstream.gets("blobs") == 3 and upstream.gets("manifests") == 1
    assert upstream.counts[("HEAD", "/v2/library/app/manifests/v1")] == heads + 1
    resp = await mirror.get(f"/v2/library/app/manifests/{digest}", headers=ACCEPT)
    assert resp.status == 200 and await resp.read() == body
    assert upstream.gets("manifests") == 1  # by digest: from storage


async def test_a_moved_tag_is_followed(mirror: Client, upstream: FakeUpstream) -> None:
    upstream.push("app", "latest", [b"one"])
    first, _ = await pull(mirror, "app", "latest")
    second_digest, _ = upstream.push("app", "latest", [b"two"])
    second, blobs = await pull(mirror, "app", "latest")
    assert second == second_digest != first and b"two" in blobs.values()


async def test_head_of_a_cold_blob_fetches_nothing(mirror: Client, upstream: FakeUpstream) -> None:
    upstream.push("app", "v1", [LAYER])
    resp = await mirror.head(f"/v2/app/blobs/{sha256(LAYER)}")
    assert resp.status == 200 and resp.headers["Content-Length"] == str(len(LAYER))
    assert upstream.gets("blobs") == 0


async def test_unknown_names_are_the_upstreams_answer(mirror: Client, upstream: FakeUpstream) -> None:
    await expect_error(await mirror.get("/v2/app/manifests/nope", headers=ACCEPT), 404,
                       "MANIFEST_UNKNOWN")  # fmt: skip
    await expect_error(await mirror.get(f"/v2/app/blobs/{sha256(b'x')}"), 404, "BLOB_UNKNOWN")


async def test_writes_are_refused_as_distribution_does(mirror: Client, upstream: FakeUpstream) -> None:
    digest, _ = upstream.push("app", "v1", [b"l"])
    await pull(mirror, "app", "v1")
    for method, path in [
        ("POST", "/v2/app/blobs/uploads/"),
        ("PUT", "/v2/app/manifests/v2"),
        ("DELETE", f"/v2/app/manifests/{digest}"),
        ("DELETE", f"/v2/app/blobs/{sha256(b'l')}"),
    ]:
        body = await expect_error(await mirror.request(method, path), 405, "UNSUPPORTED")
        assert "pull-through cache" in body["errors"][0]["message"]


async def test_tags_list_comes_from_the_upstream(mirror: Client, upstream: FakeUpstream) -> None:
    upstream.push("app", "v1", [b"a"])
    upstream.push("app", "v2", [b"b"])
    resp = await mirror.get("/v2/app/tags/list")
    assert resp.status == 200 and (await resp.json())["tags"] == ["v1", "v2"]


@pytest.mark.parametrize("failure", ["stopped", "down", "throttle"])
async def test_upstream_failure_serves_the_cache(
    mirror: Client, upstream: FakeUpstream, failure: str
) -> None:
    digest, body = upstream.push("app", "v1", [LAYER])
    upstream.push("app", "v2", [b"never pulled"])
    await pull(mirror, "app", "v1")
    if failure == "stopped":
        await upstream.stop()
    else:
        upstream.mode = failure
    resp = await mirror.get("/v2/app/manifests/v1", headers=ACCEPT)
    assert resp.status == 200 and await resp.read() == body
    assert resp.headers["Warning"].startswith("110 ")
    resp = await mirror.get(f"/v2/app/manifests/{digest}", headers=ACCEPT)
    assert resp.status == 200 and "Warning" not in resp.headers
    resp = await mirror.get(f"/v2/app/blobs/{sha256(LAYER)}")
    assert resp.status == 200 and await resp.read() == LAYER
    resp = await mirror.get("/v2/app/tags/list")  # the cached tags
    assert resp.status == 200 and (await resp.json())["tags"] == ["v1"]
    uncached = [
        await mirror.get("/v2/app/manifests/v2", headers=ACCEPT),
        await mirror.get(f"/v2/app/blobs/{sha256(b'never pulled')}"),
        await mirror.head(f"/v2/app/blobs/{sha256(b'never pulled')}"),
    ]
    for resp in uncached:
        if failure == "throttle":
            assert resp.status == 429 and resp.headers["Retry-After"] == "7"
            if resp.method == "GET":
                await expect_error(resp, 429, "TOOMANYREQUESTS")
        else:
            assert resp.status == 503
            if resp.method == "GET":
                await expect_error(resp, 503, "UNAVAILABLE")
    if failure == "stopped":  # restarted: fresh tags are seen again
        await upstream.start()
        moved, _ = upstream.push("app", "v1", [b"fresh"])
        resp = await mirror.get("/v2/app/manifests/v1", headers=ACCEPT)
        assert resp.headers["Docker-Content-Digest"] == moved and "Warning" not in resp.headers


@pytest.mark.parametrize("fault", ["corrupt", "cut"])
async def test_a_bad_blob_caches_nothing(mirror: Client, upstream: FakeUpstream, fault: str) -> None:
    upstream.push("app", "v1", [LAYER])
    upstream.pace = 0.01  # 5 chunks: the four clients overlap
    digest = sha256(LAYER)
    if fault == "corrupt":
        upstream.corrupt[digest] = bytes(len(LAYER))  # right size, wrong bytes
    else:
        upstream.cut.add(digest)

    async def one() -> int:
        resp = await mirror.get(f"/v2/app/blobs/{digest}")
        assert resp.status == 200 and resp.content_length == len(LAYER)
        got = 0
        with pytest.raises(aiohttp.ClientPayloadError):  # cut short: the last byte waits
            async for chunk in resp.content.iter_any():  # for the digest check
                got += len(chunk)
        return got

    received = await asyncio.gather(*(one() for _ in range(4)))
    assert all(n < len(LAYER) for n in received)
    assert upstream.gets("blobs") == 1
    registry = mirror.app[REGISTRY]
    for _ in range(50):  # the fetch task ends after the client saw the failure
        if not registry.mirror._inflight:
            break
        await asyncio.sleep(0.02)
    assert not await registry.blobs.exists(Digest.parse(digest))
    upstream.corrupt.clear()
    upstream.cut.clear()
    resp = await mirror.get(f"/v2/app/blobs/{digest}")  # fetched again, now right
    assert resp.status == 200 and await resp.read() == LAYER
    assert upstream.gets("blobs") == 2


async def test_an_upstream_that_goes_silent_mid_blob_is_timed_out(
    mirror: Client, upstream: FakeUpstream
) -> None:
    """Half the body, then an open, silent connection: after the read timeout (here 0.5 s) the
    fetch fails, its client is cut, nothing is cached, and the next pull fetches again."""
    upstream.push("app", "v1", [LAYER])
    digest = sha256(LAYER)
    upstream.stall.add(digest)
    registry = mirror.app[REGISTRY]
    registry.mirror.client.timeouts = Timeouts(read=0.5)
    started = time.monotonic()
    resp = await mirror.get(f"/v2/app/blobs/{digest}")
    assert resp.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()
    assert time.monotonic() - started < 10  # not the upstream's 60 s
    await registry.settled()
    assert not await registry.blobs.exists(Digest.parse(digest))
    upstream.stall.clear()
    resp = await mirror.get(f"/v2/app/blobs/{digest}")
    assert resp.status == 200 and await resp.read() == LAYER
    assert upstream.gets("blobs") == 2


async def test_time_the_mirror_spends_elsewhere_is_not_an_upstream_timeout(
    mirror: Client, upstream: FakeUpstream
) -> None:
    """The watchdog counts only time spent waiting for the upstream: a reader of the body that
    pauses longer than the read timeout between chunks (its socket paused meanwhile, the
    buffer full) still gets every byte."""
    big = slow_blob(upstream, 16, 0.0)
    client = mirror.app[REGISTRY].mirror.client
    client.timeouts = Timeouts(read=0.3)
    resp = await client.open_blob("app", sha256(big))
    got = bytearray()
    try:
        async for chunk in client.body(resp):
            got += chunk
            await asyncio.sleep(0.4)  # longer than the timeout, each time
    finally:
        resp.release()
    assert bytes(got) == big


async def test_every_client_is_streamed_the_bytes_as_they_arrive(
    mirror: Client, upstream: FakeUpstream
) -> None:
    big = slow_blob(upstream, 4, 0.01)  # 64 chunks of 64 KiB: about 0.7 s
    first_bytes: list[float] = []

    async def one(delay: float) -> bytes:
        await asyncio.sleep(delay)  # the later ones join a fetch under way
        resp = await mirror.get(f"/v2/app/blobs/{sha256(big)}")
        assert resp.status == 200 and resp.content_length == len(big)
        first = await resp.content.readany()
        first_bytes.append(time.monotonic())
        return first + await resp.read()

    results = await asyncio.gather(*(one(0.04 * i) for i in range(8)))
    assert all(r == big for r in results)
    assert upstream.gets("blobs") == 1
    # every client had bytes before the upstream had sent its last one
    assert max(first_bytes) < upstream.finished[sha256(big)], (first_bytes, upstream.finished)


async def test_concurrent_cold_pulls_make_one_upstream_request(
    mirror: Client, upstream: FakeUpstream
) -> None:
    big = slow_blob(upstream, 4, 0.002)  # 64 chunks: about 130 ms, so the pulls overlap

    async def one() -> bytes:
        resp = await mirror.get(f"/v2/app/blobs/{sha256(big)}")
        assert resp.status == 200
        return await resp.read()

    results = await asyncio.gather(*(one() for _ in range(8)))
    assert all(r == big for r in results)
    assert upstream.gets("blobs") == 1


async def test_a_range_of_a_cold_blob(mirror: Client, upstream: FakeUpstream) -> None:
    upstream.push("app", "v1", [LAYER])
    resp = await mirror.get(f"/v2/app/blobs/{sha256(LAYER)}", headers={"Range": "bytes=70000-200001"})
    assert resp.status == 206 and await resp.read() == LAYER[70000:200002]
    resp = await mirror.get(f"/v2/app/blobs/{sha256(LAYER)}")  # committed meanwhile
    assert resp.status == 200 and await resp.read() == LAYER
    assert upstream.gets("blobs") == 1


async def test_the_first_client_leaving_does_not_stop_the_fetch(
    mirror: Client, upstream: FakeUpstream
) -> None:
    big = slow_blob(upstream, 2, 0.005)
    resp = await mirror.get(f"/v2/app/blobs/{sha256(big)}")
    await resp.content.read(65536)
    resp.close()
    registry = mirror.app[REGISTRY]
    for _ in range(200):
        if await registry.blobs.exists(Digest.parse(sha256(big))):
            break
        await asyncio.sleep(0.05)
    resp = await mirror.get(f"/v2/app/blobs/{sha256(big)}")
    assert await resp.read() == big and upstream.gets("blobs") == 1


@pytest.mark.parametrize("auth", ["basic", "bearer"])
async def test_upstream_authentication(make_client: MakeClient, upstream: FakeUpstream, auth: str) -> None:
    upstream.auth = auth
    upstream.push("org/app", "v1", [b"private"])
    mirror = await make_client(
        proxy__remoteurl=upstream.url, proxy__username="alice", proxy__password="secret"
    )
    _, blobs = await pull(mirror, "org/app", "v1")
    _, again = await pull(mirror, "org/app", "v1")
    assert blobs == again and upstream.blobs[sha256(b"private")] in blobs.values()
    if auth == "bearer":  # one token for the scope, kept until it expires
        assert upstream.counts[("GET", "/token")] == 1


async def test_wrong_upstream_credentials_are_unavailable(
    make_client: MakeClient, upstream: FakeUpstream
) -> None:
    upstream.auth = "bearer"
    upstream.push("app", "v1", [b"x"])
    mirror = await make_client(
        proxy__remoteurl=upstream.url, proxy__username="alice", proxy__password="wrong"
    )
    await expect_error(await mirror.get("/v2/app/manifests/v1", headers=ACCEPT), 503, "UNAVAILABLE")


async def test_a_list_for_a_client_without_lists_fetches_the_child(
    mirror: Client, upstream: FakeUpstream
) -> None:
    """Content negotiation on the mirror's side: the list is stored, its linux/amd64 child is
    fetched by digest when a client that accepts no list pulls the tag."""
    _, body = upstream.push("app", None, [b"amd64 layer"])
    docker_child = body.replace(OCI_MANIFEST.encode(), DOCKER_MANIFEST.encode())
    upstream.manifests[("app", sha256(docker_child))] = (DOCKER_MANIFEST, docker_child)
    index = orjson.dumps({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [{
        "mediaType": DOCKER_MANIFEST, "digest": sha256(docker_child), "size": len(docker_child),
        "platform": {"architecture": "amd64", "os": "linux"}}]})  # fmt: skip
    upstream.manifests[("app", "multi")] = upstream.manifests[("app", sha256(index))] = (
        DOCKER_LIST, index)
    resp = await mirror.get("/v2/app/manifests/multi", headers={"Accept": DOCKER_MANIFEST})
    assert resp.status == 200, await resp.text()
    assert await resp.read() == docker_child
    resp = await mirror.get("/v2/app/manifests/multi", headers={"Accept": DOCKER_LIST})
    assert resp.status == 200 and await resp.read() == index
    assert upstream.gets("manifests") == 2  # the list once, the child once


async def test_proxy_metrics_as_distribution_counts_them(
    mirror: Client, upstream: FakeUpstream
) -> None:
    from fastreg.server.metrics import METRICS
    from tests.metrics import parse, samples

    _, body = upstream.push("app", "v1", [LAYER])
    await pull(mirror, "app", "v1")  # cold: config and layer pulled, the manifest too
    await pull(mirror, "app", "v1")  # warm: all three hits
    upstream.mode = "down"
    assert (await mirror.get("/v2/app/manifests/v1", headers=ACCEPT)).status == 200  # stale
    families = parse(mirror.app[METRICS].render().decode())

    def by_type(name: str) -> dict[str, float]:
        return {dict(k)["type"]: v for k, v in samples(families, name).items()}

    blob_bytes = len(LAYER) + len(upstream.blobs[next(
        d for d in upstream.blobs if upstream.blobs[d] != LAYER)])
    assert by_type("registry_proxy_requests_total") == {"blob": 4, "manifest": 3}
    assert by_type("registry_proxy_hits_total") == {"blob": 2, "manifest": 2}
    assert by_type("registry_proxy_misses_total") == {"blob": 2, "manifest": 1}
    assert by_type("registry_proxy_pulled_bytes_total") == {"blob": blob_bytes,
                                                            "manifest": len(body)}
    assert by_type("registry_proxy_pushed_bytes_total") == {"blob": 2 * blob_bytes,
                                                            "manifest": 3 * len(body)}
    host = upstream.url.split("//", 1)[1].rstrip("/")  # 127.0.0.1:port
    assert samples(families, "fastreg_proxy_upstream_errors_total") == {(("upstream", host),): 1}
    hits = samples(families, "fastreg_proxy_hits_total")
    assert hits == {(("type", "blob"), ("upstream", host)): 2,
                    (("type", "manifest"), ("upstream", host)): 2}
