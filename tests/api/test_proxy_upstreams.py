"""`proxy.upstreams`: one mirror for two upstreams (tests/api/fakeupstream.py), by containerd's
`ns` parameter and by the name's first component, with local read-write repositories beside
the mirrored namespaces, and cached content removed once unused for its `ttl`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fastreg.api.context import REGISTRY
from fastreg.registry.digests import Digest
from tests.api.conftest import Client, MakeClient
from tests.api.fakeupstream import FakeUpstream, running, sha256
from tests.api.helpers import OCI_MANIFEST, expect_error, push_blob, push_image

ACCEPT = {"Accept": OCI_MANIFEST}


@pytest.fixture
async def hub() -> AsyncIterator[FakeUpstream]:
    async with running() as fake:
        yield fake


@pytest.fixture
async def ghcr() -> AsyncIterator[FakeUpstream]:
    async with running(auth="bearer") as fake:
        yield fake


def upstreams(hub: FakeUpstream, ghcr: FakeUpstream, **extra: Any) -> list[dict[str, Any]]:
    return [
        {"namespace": "docker.io", "remoteurl": hub.url, **extra},
        {"namespace": "ghcr.io", "remoteurl": ghcr.url, "username": "alice",
         "password": "secret", **extra},
    ]  # fmt: skip


@pytest.fixture
async def mirror(make_client: MakeClient, hub: FakeUpstream, ghcr: FakeUpstream) -> Client:
    return await make_client(proxy__upstreams=upstreams(hub, ghcr))


async def pull(client: Client, name: str, tag: str, ns: str | None = None) -> tuple[str, dict[str, bytes]]:
    """Manifest by tag, then every blob it names (with containerd's `ns` when given)."""
    query = {"ns": ns} if ns else {}
    resp = await client.get(f"/v2/{name}/manifests/{tag}", headers=ACCEPT, params=query)
    assert resp.status == 200, await resp.text()
    manifest = await resp.json(content_type=None)
    blobs = {}
    for d in [manifest["config"], *manifest["layers"]]:
        got = await client.get(f"/v2/{name}/blobs/{d['digest']}", params=query)
        assert got.status == 200, await got.text()
        blobs[d["digest"]] = await got.read()
    await client.app[REGISTRY].settled()  # the last blob committed, not only served
    return resp.headers["Docker-Content-Digest"], blobs


async def test_ns_and_first_component_share_one_cache(mirror: Client, hub: FakeUpstream) -> None:
    digest, _ = hub.push("library/alpine", "3", [b"alpine layer"])
    got, blobs = await pull(mirror, "library/alpine", "3", ns="docker.io")  # containerd
    assert got == digest and hub.blobs[sha256(b"alpine layer")] in blobs.values()
    assert hub.gets("manifests") == 1 and hub.gets("blobs") == 2
    # the same image as a podman user types it, and Docker Hub's short form: from the cache
    for name in ("docker.io/library/alpine", "docker.io/alpine"):
        again, cached = await pull(mirror, name, "3")
        assert again == digest and cached == blobs
    assert hub.gets("manifests") == 1 and hub.gets("blobs") == 2
    assert hub.counts[("HEAD", "/v2/library/alpine/manifests/3")] == 3  # a HEAD per pull
    resp = await mirror.get("/v2/_catalog")
    assert (await resp.json())["repositories"] == ["docker.io/library/alpine"]
    resp = await mirror.get("/v2/docker.io/alpine/tags/list")
    assert (await resp.json())["tags"] == ["3"]


async def test_two_upstreams_in_one_mirror(mirror: Client, hub: FakeUpstream, ghcr: FakeUpstream) -> None:
    hub_digest, _ = hub.push("org/app", "v1", [b"from the hub"])
    ghcr_digest, _ = ghcr.push("org/app", "v1", [b"from ghcr"])
    got, blobs = await pull(mirror, "ghcr.io/org/app", "v1")
    assert got == ghcr_digest and b"from ghcr" in blobs.values()
    got, blobs = await pull(mirror, "org/app", "v1", ns="docker.io")
    assert got == hub_digest and b"from the hub" in blobs.values()
    assert ghcr.gets("manifests") == 1 and hub.gets("manifests") == 1
    assert ghcr.counts[("GET", "/token")] == 1  # ghcr's own credentials and token
    assert hub.counts[("GET", "/token")] == 0
    resp = await mirror.get("/v2/_catalog")
    assert (await resp.json())["repositories"] == ["docker.io/org/app", "ghcr.io/org/app"]


async def test_local_repositories_beside_mirrored_ones(mirror: Client, hub: FakeUpstream) -> None:
    # `library/alpine` without ns is a local name: pushed, pulled, deleted as on any registry
    local, _ = await push_image(mirror, "library/alpine", "3", [b"my own alpine"])
    hub_digest, _ = hub.push("library/alpine", "3", [b"docker hub's alpine"])
    got, blobs = await pull(mirror, "library/alpine", "3")
    assert got == local and b"my own alpine" in blobs.values()
    got, _ = await pull(mirror, "library/alpine", "3", ns="docker.io")  # containerd: the hub's
    assert got == hub_digest
    resp = await mirror.delete(f"/v2/library/alpine/manifests/{local}")
    assert resp.status == 202
    # mirrored names, however they are asked for, are read-only
    for method, path, query in [
        ("POST", "/v2/docker.io/library/alpine/blobs/uploads/", {}),
        ("POST", "/v2/library/alpine/blobs/uploads/", {"ns": "docker.io"}),
        ("PUT", "/v2/ghcr.io/org/app/manifests/v1", {}),
        ("DELETE", f"/v2/docker.io/library/alpine/manifests/{hub_digest}", {}),
        ("DELETE", f"/v2/docker.io/library/alpine/blobs/{sha256(b'x')}", {}),
    ]:
        resp = await mirror.request(method, path, params=query)
        body = await expect_error(resp, 405, "UNSUPPORTED")
        assert "pull-through cache of" in body["errors"][0]["message"]
    assert hub.gets("manifests") == 1  # the refusals asked the upstream nothing
    await push_blob(mirror, "team/tools", b"a local blob")  # another local name: writable


async def test_an_ns_without_upstream_is_unknown(mirror: Client) -> None:
    await push_image(mirror, "org/app", "v1")
    resp = await mirror.get("/v2/org/app/manifests/v1", headers=ACCEPT, params={"ns": "quay.io"})
    await expect_error(resp, 404, "NAME_UNKNOWN")
    resp = await mirror.get("/v2/org/app/manifests/v1", headers=ACCEPT)  # no ns: the local one
    assert resp.status == 200


async def test_a_default_upstream_beside_namespaces(
    make_client: MakeClient, hub: FakeUpstream, ghcr: FakeUpstream
) -> None:
    """Distribution's `remoteurl` keeps every name outside the namespaces, unchanged."""
    mirror = await make_client(proxy__remoteurl=hub.url,
                               proxy__upstreams=upstreams(hub, ghcr)[1:])  # fmt: skip
    hub_digest, _ = hub.push("library/alpine", "3", [b"hub"])
    ghcr_digest, _ = ghcr.push("org/app", "v1", [b"ghcr"])
    assert (await pull(mirror, "library/alpine", "3", ns="docker.io"))[0] == hub_digest
    assert (await pull(mirror, "ghcr.io/org/app", "v1"))[0] == ghcr_digest
    resp = await mirror.get("/v2/_catalog")
    assert (await resp.json())["repositories"] == ["ghcr.io/org/app", "library/alpine"]
    await expect_error(await mirror.post("/v2/team/app/blobs/uploads/"), 405, "UNSUPPORTED")


@pytest.mark.parametrize("form", ["upstreams", "remoteurl"])
async def test_unused_content_expires_and_is_fetched_again(
    make_client: MakeClient, hub: FakeUpstream, ghcr: FakeUpstream, form: str
) -> None:
    """ttl 1s: the sweep runs every second, removes the manifest, the collection after it the
    blobs (delay 0s); a local image beside it stays; the next pull fetches everything again.
    Distribution's form (`proxy.remoteurl`, `proxy.ttl`) expires the same way."""
    if form == "remoteurl":
        mirror = await make_client(proxy__remoteurl=hub.url, proxy__ttl="1s",
                                   storage__maintenance__gc__delay="0s")  # fmt: skip
        name = "library/alpine"
    else:
        mirror = await make_client(proxy__upstreams=upstreams(hub, ghcr, ttl="1s"),
                                   storage__maintenance__gc__delay="0s")  # fmt: skip
        name = "docker.io/library/alpine"
        local, _ = await push_image(mirror, "team/app", "v1", [b"local layer"])
    registry = mirror.app[REGISTRY]
    digest, _ = hub.push("library/alpine", "3", [b"cached for a second"])
    await pull(mirror, "library/alpine", "3", ns="docker.io")
    layer = Digest.parse(sha256(b"cached for a second"))
    assert await registry.blobs.exists(layer)
    for _ in range(100):
        if not await registry.blobs.exists(layer):
            break
        await asyncio.sleep(0.1)
    assert not await registry.manifests.exists(name, Digest.parse(digest))
    assert not await registry.blobs.exists(layer)
    assert hub.gets("manifests") == 1 and hub.gets("blobs") == 2
    got, blobs = await pull(mirror, name, "3")
    assert got == digest and b"cached for a second" in blobs.values()
    # the manifest is fetched again; its blobs are too, unless this pull came during a
    # collection that had parked them (not visible) and whose re-scan restores them instead
    assert hub.gets("manifests") == 2 and hub.gets("blobs") in (2, 3, 4)
    if form == "upstreams":  # a local image beside the mirrored ones is kept
        assert await registry.manifests.exists("team/app", Digest.parse(local))
        _, local_blobs = await pull(mirror, "team/app", "v1")
        assert b"local layer" in local_blobs.values()


async def test_content_in_use_does_not_expire(
    make_client: MakeClient, hub: FakeUpstream, ghcr: FakeUpstream
) -> None:
    mirror = await make_client(proxy__upstreams=upstreams(hub, ghcr, ttl="2s"),
                               storage__maintenance__gc__delay="0s")  # fmt: skip
    hub.push("library/alpine", "3", [b"pulled all the time"])
    for _ in range(12):  # 3 s of pulls every 0.25 s, past the ttl and several sweeps
        await pull(mirror, "docker.io/alpine", "3")
        await asyncio.sleep(0.25)
    assert hub.gets("manifests") == 1 and hub.gets("blobs") == 2
