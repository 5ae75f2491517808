"""Tags: `_manifests/tags/<tag>/current/link` names the digest; `index/` keeps every digest the tag
has had (Distribution's layout, which its garbage collector reads).

Listing the tags of a repository is one directory listing, which on object storage is a slow LIST
request, and resolving a tag is one read; an optional tag-list cache serves repeated lists and
tag -> digest lookups. Writes through this store forget the repository's cached lists and links at
once (for every worker when the cache is shared, in Redis); a tag written by another server on the
same storage (Distribution) shows within the cache's time to live.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from fastreg.registry import layout
from fastreg.registry.blobs import read_link
from fastreg.registry.digests import Digest
from fastreg.registry.errors import ErrorCode, RegistryError
from fastreg.storage.base import PathNotFound, StorageDriver


class TagListCache(Protocol):
    """Tag lists by repository. ``put`` stores a list only if no ``forget`` happened since the
    ``generation`` read before listing storage (else a stale list would replace the cleared one)."""

    async def get(self, name: str) -> list[str] | None: ...
    async def generation(self, name: str) -> str: ...
    async def put(self, name: str, tags: list[str], generation: str) -> None: ...
    async def get_tag(self, name: str, tag: str) -> tuple[str | None, str]:
        """The cached digest of a tag (None on a miss) and the generation it was looked up at."""
        ...
    async def put_tag(self, name: str, tag: str, digest: str, generation: str) -> None: ...
    async def forget(self, name: str) -> None: ...
    async def close(self) -> None: ...


async def cached_list(
    cache: TagListCache | None, key: str, fill: Callable[[], Awaitable[list[str]]]
) -> list[str]:
    """The list cached under ``key``, else ``fill()`` stored there. The generation is read
    before storage is listed, so a list that a concurrent write made stale is not stored."""
    if cache is None:
        return await fill()
    cached = await cache.get(key)
    if cached is not None:
        return cached
    generation = await cache.generation(key)
    names = await fill()
    await cache.put(key, names, generation)
    return names


class TagStore:
    def __init__(self, driver: StorageDriver, cache: TagListCache | None = None) -> None:
        self.driver = driver
        self.cache = cache

    async def get(self, name: str, tag: str) -> Digest:
        """The digest a tag names: from the cache when one is configured (a pull by tag then
        costs no storage request), else its `current/link`."""
        generation = ""
        if self.cache is not None:
            cached, generation = await self.cache.get_tag(name, tag)
            if cached is not None:
                return Digest.parse(cached)
        digest = await read_link(self.driver, layout.tag_current_link(name, tag))
        if digest is None:
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"tag": tag})
        if self.cache is not None:
            await self.cache.put_tag(name, tag, str(digest), generation)
        return digest

    async def tag(self, name: str, tag: str, digest: Digest) -> None:
        # index first: a crash between the two writes leaves the old tag intact, never a dangling one
        content = layout.link_content(digest)
        await self.driver.put_content(layout.tag_index_link(name, tag, digest), content)
        await self.driver.put_content(layout.tag_current_link(name, tag), content)
        if self.cache is not None:
            await self.cache.forget(name)

    async def untag(self, name: str, tag: str) -> None:
        try:
            await self.driver.stat(layout.tag_current_link(name, tag))
            await self.driver.delete(layout.tag_dir(name, tag))
        except PathNotFound:
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"tag": tag}) from None
        finally:
            if self.cache is not None:
                await self.cache.forget(name)

    async def all(self, name: str) -> list[str]:
        """Every tag of the repository, in ASCII order. NAME_UNKNOWN when the repo has none."""
        return await cached_list(self.cache, name, lambda: self._list(name))

    async def _list(self, name: str) -> list[str]:
        try:
            names = await self.driver.list(layout.tags(name))
        except PathNotFound:
            if await self.repository_exists(name):
                return []
            raise RegistryError(ErrorCode.NAME_UNKNOWN, detail={"name": name}) from None
        return sorted(n for n in names if not n.startswith("."))

    async def lookup(self, name: str, digest: Digest) -> list[str]:
        """The tags whose current link names ``digest``."""
        try:
            names = await self.all(name)
        except RegistryError:
            return []
        return [t for t in names if await read_link(self.driver, layout.tag_current_link(name, t)) == digest]

    async def repository_exists(self, name: str) -> bool:
        try:
            await self.driver.stat(layout.manifests(name))
        except PathNotFound:
            return False
        return True
