"""The registry as the HTTP layer sees it: one object holding the stores over one driver."""

from __future__ import annotations

from dataclasses import dataclass

from fastreg.registry.blobs import BlobStore, DescriptorCache
from fastreg.registry.catalog import Catalog
from fastreg.registry.leases import RedisCommands
from fastreg.registry.manifeststore import ManifestStore
from fastreg.registry.tags import TagListCache, TagStore
from fastreg.registry.uploads import UploadService
from fastreg.storage.base import StorageDriver


@dataclass(frozen=True, slots=True)
class RegistrySettings:
    delete_enabled: bool = False
    readonly: bool = False
    schema1_enabled: bool = False
    redirect_disable: bool = False
    # Mounting a blob without `from` (OCI 1.1 "automatic content discovery") would let a caller link
    # any blob whose digest it knows; it is on only when no access control is configured.
    automount: bool = True


class Registry:
    def __init__(
        self,
        driver: StorageDriver,
        settings: RegistrySettings,
        cache: DescriptorCache | None = None,
        tag_cache: TagListCache | None = None,
        lease_redis: RedisCommands | None = None,
    ) -> None:
        self.driver = driver
        self.settings = settings
        self.blobs = BlobStore(driver, cache)
        self.tags = TagStore(driver, tag_cache)
        self.catalog = Catalog(driver, tag_cache)
        self.uploads = UploadService(driver, self.blobs, lease_redis)
        # closed here unless it is the descriptor cache's client, which closes with the cache
        shared = lease_redis is None or id(lease_redis) == id(cache)
        self._lease_redis = None if shared else lease_redis
        self.manifests = ManifestStore(
            driver, self.blobs, self.tags, self.catalog, schema1_enabled=settings.schema1_enabled
        )

    async def repositories(self) -> list[str]:
        return await self.catalog.all()

    async def close(self) -> None:
        await self.blobs.cache.close()
        if self.tags.cache is not None:
            await self.tags.cache.close()
        if self._lease_redis is not None:
            await self._lease_redis.close()
        await self.driver.close()
