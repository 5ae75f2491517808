"""The catalog and tag links: the catalog found by listing directories only; both cached in the
tag-list cache, forgotten by manifest writes and deletes so a change shows at once."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fastreg.registry import layout
from fastreg.registry.cache.caches import InMemoryDescriptorCache, InMemoryTagCache
from fastreg.registry.catalog import CATALOG_KEY
from fastreg.registry.digests import Digest
from fastreg.registry.errors import RegistryError
from fastreg.registry.service import Registry, RegistrySettings
from fastreg.storage.inmemory import InMemoryDriver

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class CountingDriver(InMemoryDriver):
    def __init__(self) -> None:
        super().__init__()
        self.lists = 0
        self.stats = 0
        self.reads = 0

    async def get_content(self, path: str, limit: int | None = None) -> bytes:
        self.reads += 1
        return await super().get_content(path, limit)

    async def list(self, path: str) -> list[str]:
        self.lists += 1
        return await super().list(path)

    async def stat(self, path: str) -> Any:
        self.stats += 1
        return await super().stat(path)


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def push(reg: Registry, name: str, tag: str, arch: str = "amd64") -> Digest:
    config = b'{"architecture":"%s"}' % arch.encode()
    status = await reg.uploads.start(name)
    await reg.uploads.finish(name, status.upload_id, Digest.from_bytes(config), _body(config))
    raw = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": str(Digest.from_bytes(config)), "size": len(config)},
        "layers": [],
    }).encode()
    return (await reg.manifests.put(name, tag, OCI_MANIFEST, raw)).digest


@pytest.fixture
def registry() -> Registry:
    return Registry(CountingDriver(), RegistrySettings(delete_enabled=True),
                    InMemoryDescriptorCache(), InMemoryTagCache(ttl=600))


async def test_walk_lists_directories_without_a_stat_per_child(registry: Registry) -> None:
    driver = registry.driver
    assert isinstance(driver, CountingDriver)
    for name in ("a/b", "a/c/d", "e"):
        await push(registry, name, "v1")
    await driver.put_content(layout.REPOSITORIES + "/a/stray-file", b"x")  # not a repository
    driver.lists = driver.stats = 0
    assert await registry.repositories() == ["a/b", "a/c/d", "e"]
    assert driver.stats == 0
    assert 0 < driver.lists


async def test_catalog_is_served_from_the_cache_until_a_manifest_changes_it(
    registry: Registry,
) -> None:
    driver = registry.driver
    assert isinstance(driver, CountingDriver)
    await push(registry, "one", "v1")
    assert await registry.repositories() == ["one"]
    driver.lists = 0
    assert await registry.repositories() == ["one"]
    assert driver.lists == 0  # a cache hit
    digest = await push(registry, "two", "v1")  # a new repository is seen at once
    assert await registry.repositories() == ["one", "two"]
    assert registry.tags.cache is not None
    assert await registry.tags.cache.get(CATALOG_KEY) == ["one", "two"]
    await registry.manifests.delete("two", digest)
    assert await registry.tags.cache.get(CATALOG_KEY) is None  # forgotten by the delete


async def test_tag_resolution_is_cached_and_a_moved_tag_is_seen_at_once(registry: Registry) -> None:
    driver = registry.driver
    assert isinstance(driver, CountingDriver)
    first = await push(registry, "app", "latest")
    assert await registry.manifests.resolve("app", "latest") == first
    reads = driver.reads
    assert await registry.manifests.resolve("app", "latest") == first
    assert driver.reads == reads  # served by the cache: no storage read
    second = await push(registry, "app", "latest", arch="arm64")
    assert second != first
    assert await registry.manifests.resolve("app", "latest") == second
    await registry.tags.untag("app", "latest")
    with pytest.raises(RegistryError):
        await registry.manifests.resolve("app", "latest")
