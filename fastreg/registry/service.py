"""The registry as the HTTP layer sees it: one object holding the stores over one driver.

The operations a setting may refuse (deletes, mounts, redirects) go through here, so that
`policy.Policy` decides them whichever handler asks; so do the pulls a mirror answers
differently (`proxy/mirror.py`: manifests, blobs, tags lists); the other operations are the
stores'.

A pull-through cache has one `Mirror` (and one upstream client: its auth, its tokens) per
upstream, the default one (`proxy.remoteurl`) and one per `proxy.upstreams` namespace; which one
answers a name is `proxy/routing.py`'s rule. The API turns the name a client asked for (and
containerd's `ns`) into the stored name once, with `route`; every method here takes stored names.
"""

from __future__ import annotations

from fastreg.registry.blobs import BlobInfo, BlobReader, BlobStore, DescriptorCache
from fastreg.registry.catalog import Catalog
from fastreg.registry.digests import Digest
from fastreg.registry.grants import UploadGrants
from fastreg.registry.leases import RedisCommands
from fastreg.registry.manifests import Manifest
from fastreg.registry.manifeststore import ManifestStore
from fastreg.registry.names import lookup_reference
from fastreg.registry.policy import Caller, Policy, RegistrySettings
from fastreg.registry.proxy.expiry import Expiry
from fastreg.registry.proxy.mirror import Mirror, Resolved
from fastreg.registry.proxy.routing import Route, Router
from fastreg.registry.proxy.settings import ProxySettings
from fastreg.registry.proxy.upstream import UpstreamClient
from fastreg.registry.tags import TagListCache, TagStore
from fastreg.registry.uploads import UploadService
from fastreg.storage.base import StorageDriver

__all__ = ["Registry", "RegistrySettings"]


class Registry:
    def __init__(
        self,
        driver: StorageDriver,
        settings: RegistrySettings,
        cache: DescriptorCache | None = None,
        tag_cache: TagListCache | None = None,
        lease_redis: RedisCommands | None = None,
        proxy: ProxySettings | None = None,
        fetch_redis: RedisCommands | None = None,
    ) -> None:
        """``proxy``: the upstreams the registry is a pull-through cache of (`proxy`);
        ``fetch_redis``: where its lock of a blob being fetched lives (proxy/flight.py)."""
        self.driver = driver
        self.settings = settings
        self.policy = Policy(settings)
        self.blobs = BlobStore(driver, cache)
        self.tags = TagStore(driver, tag_cache)
        self.catalog = Catalog(driver, tag_cache)
        self.uploads = UploadService(driver, self.blobs, lease_redis)
        self.upload_grants = UploadGrants(driver)
        # closed here unless it is the descriptor cache's client, which closes with the cache
        shared = lease_redis is None or id(lease_redis) == id(cache)
        self._lease_redis = None if shared else lease_redis
        own = fetch_redis is not None and id(fetch_redis) not in (id(cache), id(lease_redis))
        self._fetch_redis = fetch_redis if own else None
        self.manifests = ManifestStore(driver, self.blobs, self.tags, self.catalog, settings)
        self.router = Router(proxy or ProxySettings())
        self.mirrors: dict[str, Mirror] = {  # by namespace; "" is the default upstream
            u.namespace: Mirror(
                UpstreamClient(u, remote=self.router.remote_name),
                self.manifests,
                self.uploads,
                fetch_redis,
            )
            for u in (self.router.default, *self.router.upstreams)
            if u is not None
        }
        self.expiry = Expiry(driver, self.manifests, self.router)

    @property
    def mirror(self) -> Mirror | None:
        """The default upstream's mirror (Distribution's only one), if configured."""
        return self.mirrors.get("")

    def route(self, name: str, ns: str | None = None) -> Route:
        """Where a name a client asked for is stored, and which upstream (if any) has it."""
        return self.router.route(name, ns)

    def _mirror_of(self, name: str) -> Mirror | None:
        upstream = self.router.route(name).upstream
        return None if upstream is None else self.mirrors[upstream.namespace]

    async def resolve_manifest(self, name: str, reference: str | Digest) -> Resolved:
        """The digest a manifest reference names (on a mirror: checked against the upstream)."""
        mirror = self._mirror_of(name)
        if mirror is None:
            return Resolved(await self.manifests.resolve(name, reference))
        resolved = await mirror.resolve(name, reference)
        await self.expiry.used(name, resolved.digest, mirror.client.upstream.ttl)
        return resolved

    async def manifest(self, name: str, reference: str | Digest) -> Manifest:
        return await self.manifests.load_resolved(
            (await self.resolve_manifest(name, reference)).digest
        )

    async def blob_info(self, name: str, digest: Digest) -> BlobInfo:
        mirror = self._mirror_of(name)
        if mirror is not None:
            return await mirror.blob_info(name, digest)
        return await self.blobs.stat_in(name, digest)

    async def blob_source(self, name: str, digest: Digest) -> BlobReader:
        """Where a pull reads a blob; the caller `release`s it when done."""
        mirror = self._mirror_of(name)
        if mirror is not None:
            return await mirror.blob_source(name, digest)
        return await self.blobs.source(name, digest)

    async def tags_list(self, name: str) -> list[str]:
        mirror = self._mirror_of(name)
        if mirror is not None:
            return await mirror.tags_list(name)
        return await self.tags.all(name)

    async def delete_manifest(self, name: str, reference: str) -> None:
        """Delete a manifest by digest, or only the tag when ``reference`` is a tag."""
        self.policy.check_delete()  # first: without deletes, any delete is 405, whatever it names
        parsed = lookup_reference(reference)  # an invalid tag: 404, as in Distribution
        if isinstance(parsed, Digest):
            await self.manifests.delete(name, parsed)
        else:
            await self.tags.untag(name, parsed)

    async def delete_blob(self, name: str, digest: str) -> Digest:
        """Unlink a blob from ``name`` (its bytes stay for garbage collection)."""
        self.policy.check_delete()
        parsed = Digest.parse(digest)
        await self.blobs.unlink(name, parsed)
        return parsed

    async def mount(
        self, name: str, digest: Digest, source: str | None, caller: Caller | None
    ) -> BlobInfo | None:
        """Link ``digest`` from ``source`` into ``name``; None when it cannot be mounted (the
        caller then opens a normal upload)."""
        if not self.policy.may_mount(source, caller):
            return None
        return await self.blobs.mount(name, digest, source or None)

    async def redirect_url(self, source: BlobReader, method: str) -> str | None:
        """Where to send a pull instead of serving it, when redirects are on: the storage
        middleware's URL (`middleware.storage`), else the driver's presigned one, if any."""
        if not self.policy.redirects:
            return None
        return await source.redirect_url(method, self.settings.redirector)

    async def repositories(self) -> list[str]:
        return await self.catalog.all()

    async def settled(self) -> None:
        """Every mirror's fetches in flight ended (`Mirror.settled`)."""
        for mirror in self.mirrors.values():
            await mirror.settled()

    async def close(self) -> None:
        for mirror in self.mirrors.values():
            await mirror.close()
        await self.blobs.cache.close()
        if self.tags.cache is not None:
            await self.tags.cache.close()
        if self._lease_redis is not None:
            await self._lease_redis.close()
        if self._fetch_redis is not None:
            await self._fetch_redis.close()
        await self.driver.close()
