"""Routing on a mirror of many upstreams (registry/proxy/routing.py), the write policy it feeds,
the upstream client's bounded token cache, and the expiry bookkeeping (registry/proxy/expiry.py)
over the in-memory driver."""

from __future__ import annotations

import asyncio

import pytest

from fastreg.registry.blobs import BlobStore
from fastreg.registry.digests import Digest
from fastreg.registry.errors import ErrorCode, RegistryError
from fastreg.registry.manifeststore import ManifestStore
from fastreg.registry.policy import Policy, RegistrySettings
from fastreg.registry.proxy.expiry import Expiry, marker
from fastreg.registry.proxy.routing import Route, Router
from fastreg.registry.proxy.settings import ProxySettings, Upstream
from fastreg.registry.proxy.upstream import TOKEN_CACHE_SIZE, UpstreamClient
from fastreg.registry.tags import TagStore
from fastreg.storage.base import PathNotFound
from fastreg.storage.inmemory import InMemoryDriver
from tests.api.helpers import OCI_MANIFEST

HUB = Upstream("https://registry-1.docker.io", namespace="docker.io", ttl=10.0)
GHCR = Upstream("https://ghcr.io", namespace="ghcr.io")
LOCAL_PORT = Upstream("http://10.0.0.7:5000", namespace="registry.local:5000")
DEFAULT = Upstream("https://mirror.example")
MANY = Router(ProxySettings(upstreams=(HUB, GHCR, LOCAL_PORT)))


@pytest.mark.parametrize(
    ("name", "ns", "local", "upstream", "remote"),
    [
        # containerd's `ns` parameter: the name is the upstream's
        ("library/alpine", "docker.io", "docker.io/library/alpine", HUB, "library/alpine"),
        ("org/app", "GHCR.io", "ghcr.io/org/app", GHCR, "org/app"),
        ("team/app", "registry.local:5000", "registry.local_5000/team/app", LOCAL_PORT, "team/app"),
        # the first component, as podman and docker users type it
        ("ghcr.io/org/app", None, "ghcr.io/org/app", GHCR, "org/app"),
        ("docker.io/library/alpine", None, "docker.io/library/alpine", HUB, "library/alpine"),
        ("registry.local_5000/team/app", None, "registry.local_5000/team/app", LOCAL_PORT,
         "team/app"),
        # Docker Hub's official images: `library/` added on docker.io, by prefix or by ns
        ("docker.io/alpine", None, "docker.io/library/alpine", HUB, "library/alpine"),
        ("alpine", "docker.io", "docker.io/library/alpine", HUB, "library/alpine"),
        ("ghcr.io/app", None, "ghcr.io/app", GHCR, "app"),  # not on other upstreams
        # names outside every namespace are local repositories
        ("library/alpine", None, "library/alpine", None, "library/alpine"),
        ("team/app", None, "team/app", None, "team/app"),
        ("ghcr.io", None, "ghcr.io", None, "ghcr.io"),  # only the namespace: not routed
        ("quay.io/org/app", None, "quay.io/org/app", None, "quay.io/org/app"),
    ],
)
def test_routes(name: str, ns: str | None, local: str, upstream: Upstream | None, remote: str) -> None:
    route = MANY.route(name, ns)
    assert route == Route(local, upstream, remote)
    assert MANY.route(route.local) == route  # the stored name routes the same way again
    assert MANY.remote_name(route.local) == remote


def test_an_unknown_ns_is_not_a_local_repository() -> None:
    with pytest.raises(RegistryError) as err:
        MANY.route("org/app", "quay.io")
    assert err.value.code is ErrorCode.NAME_UNKNOWN and "quay.io" in err.value.message


def test_the_default_upstream_takes_every_other_name_unchanged() -> None:
    """Distribution's behaviour for `proxy.remoteurl`: the name goes through as asked (docker
    clients already send `library/x`), whatever `ns` says; namespaces still win."""
    router = Router(ProxySettings(default=DEFAULT, upstreams=(GHCR,)))
    assert router.route("alpine") == Route("alpine", DEFAULT, "alpine")
    assert router.route("library/alpine", "docker.io") == Route("library/alpine", DEFAULT,
                                                                "library/alpine")  # fmt: skip
    assert router.route("ghcr.io/org/app").upstream == GHCR
    assert router.route("org/app", "ghcr.io").local == "ghcr.io/org/app"


def test_without_a_proxy_every_name_is_local_and_ns_is_ignored() -> None:
    router = Router(ProxySettings())
    assert router.route("docker.io/alpine", "docker.io") == Route("docker.io/alpine", None,
                                                                  "docker.io/alpine")  # fmt: skip
    assert not router.enabled


def test_only_mirrored_names_are_read_only() -> None:
    policy = Policy(RegistrySettings())
    policy.check_writable(MANY.route("team/app"))
    for route in (MANY.route("ghcr.io/org/app"), MANY.route("alpine", "docker.io")):
        with pytest.raises(RegistryError) as err:
            policy.check_writable(route)
        assert err.value.code is ErrorCode.UNSUPPORTED
        assert "pull-through cache of" in err.value.message
    with pytest.raises(RegistryError):  # read-only mode still refuses local names
        Policy(RegistrySettings(readonly=True)).check_writable(MANY.route("team/app"))


async def test_the_token_cache_is_bounded() -> None:
    client = UpstreamClient(GHCR, remote=MANY.remote_name)
    for i in range(TOKEN_CACHE_SIZE + 50):
        client._tokens.put(f"repository:r{i}:pull", ("t", 1e12))
    assert len(client._tokens) == TOKEN_CACHE_SIZE
    assert client._tokens.get("repository:r0:pull") is None  # the oldest went first
    assert client.remote("ghcr.io/org/app") == "org/app"


def _store(driver: InMemoryDriver) -> ManifestStore:
    return ManifestStore(driver, BlobStore(driver), TagStore(driver))


MANIFEST = (b'{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.oci.'
            b'image.config.v1+json","digest":"sha256:%s","size":2},"layers":[]}'
            % (OCI_MANIFEST.encode(), b"4" * 64))  # fmt: skip


async def test_last_use_is_written_at_most_once_per_interval() -> None:
    driver = InMemoryDriver()
    expiry = Expiry(driver, _store(driver), MANY)
    d = Digest.parse("sha256:" + "a" * 64)
    await expiry.used("docker.io/library/alpine", d, HUB.ttl)
    first = (await driver.stat(marker("docker.io/library/alpine", d))).modtime
    await asyncio.sleep(0.01)
    await expiry.used("docker.io/library/alpine", d, HUB.ttl)  # within ttl/4: not written again
    assert (await driver.stat(marker("docker.io/library/alpine", d))).modtime == first
    await expiry.used("docker.io/library/x", d, 0.0)  # ttl 0: content never expires
    with pytest.raises(PathNotFound):
        await driver.stat(marker("docker.io/library/x", d))
    assert expiry.interval == 1.0  # a tenth of the shortest ttl (10 s), at least 1 s


async def test_sweep_removes_what_was_unused_for_the_ttl_and_keeps_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    driver = InMemoryDriver()
    store = _store(driver)
    hub = Upstream("https://registry-1.docker.io", namespace="docker.io", ttl=0.5)
    router = Router(ProxySettings(upstreams=(hub, GHCR)))
    expiry = Expiry(driver, store, router)
    for name in ("docker.io/library/old", "docker.io/library/used", "ghcr.io/org/app", "team/app"):
        await store.put(name, "v1", OCI_MANIFEST, MANIFEST, verify_references=False)
    digest = (await store.tags.get("team/app", "v1"))
    await asyncio.sleep(0.6)
    await expiry.used("docker.io/library/used", digest, hub.ttl)
    report = await expiry.sweep()
    assert report is not None and report.expired == 1 and report.repositories == 3
    assert not await store.exists("docker.io/library/old", digest)
    with pytest.raises(RegistryError):
        await store.tags.get("docker.io/library/old", "v1")
    assert await store.exists("docker.io/library/used", digest)  # used within the ttl
    assert await store.exists("ghcr.io/org/app", digest)  # its upstream keeps a week
    assert await store.exists("team/app", digest)  # a local repository never expires
    assert await expiry.sweep() is None  # swept under half an interval ago (by any worker)
