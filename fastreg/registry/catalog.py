"""The catalog: every repository, found as a directory holding `_manifests` (Distribution's rule).

Directories whose name starts with `_` are never descended into, so upload and layer folders of a
repository are not mistaken for nested repositories. Each directory costs one listing; a child is
tried as a directory by listing it (a file lists as nothing), not by a stat first, which on object
storage would be one or two more requests per child.

On object storage the walk is a chain of LIST requests, so `Catalog` keeps the result in the
tag-list cache (`storage.cache.tags`), under a key no repository can be named (`_catalog`).
Manifest writes and deletes through this server forget it (a repository appears with its first
manifest and, on object storage, disappears with its last); a repository created by another server
on the same storage (Distribution) shows within the cache's time to live.
"""

from __future__ import annotations

from fastreg.registry import layout
from fastreg.registry.tags import TagListCache, cached_list
from fastreg.storage.base import PathNotFound, StorageDriver

#: The cache key of the catalog: a repository name component never starts with "_".
CATALOG_KEY = "_catalog"


async def list_repositories(driver: StorageDriver, under: str = "") -> list[str]:
    """Every repository (``under``: only those named ``under/...``, or ``under`` itself)."""
    found: list[str] = []
    pending = [under]
    while pending:
        prefix = pending.pop()
        base = layout.REPOSITORIES + ("/" + prefix if prefix else "")
        try:
            children = await driver.list(base)
        except PathNotFound:
            continue  # a file, or gone meanwhile
        if "_manifests" in children and prefix:
            found.append(prefix)
        for child in children:
            if not child.startswith((".", "_")):
                pending.append(f"{prefix}/{child}" if prefix else child)
    return sorted(found)


class Catalog:
    """The repository list, through the tag-list cache when one is configured."""

    def __init__(self, driver: StorageDriver, cache: TagListCache | None = None) -> None:
        self.driver = driver
        self.cache = cache

    async def all(self) -> list[str]:
        return await cached_list(self.cache, CATALOG_KEY, lambda: list_repositories(self.driver))

    async def changed(self) -> None:
        """A repository may have appeared or gone: list storage again next time."""
        if self.cache is not None:
            await self.cache.forget(CATALOG_KEY)
