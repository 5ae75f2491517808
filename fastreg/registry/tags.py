"""Tags: `_manifests/tags/<tag>/current/link` names the digest; `index/` keeps every digest the tag
has had (Distribution's layout, which its garbage collector reads)."""

from __future__ import annotations

from fastreg.registry import layout
from fastreg.registry.blobs import read_link
from fastreg.registry.digests import Digest
from fastreg.registry.errors import ErrorCode, RegistryError
from fastreg.storage.base import PathNotFound, StorageDriver


class TagStore:
    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver

    async def get(self, name: str, tag: str) -> Digest:
        digest = await read_link(self.driver, layout.tag_current_link(name, tag))
        if digest is None:
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"tag": tag})
        return digest

    async def tag(self, name: str, tag: str, digest: Digest) -> None:
        # index first: a crash between the two writes leaves the old tag intact, never a dangling one
        content = layout.link_content(digest)
        await self.driver.put_content(layout.tag_index_link(name, tag, digest), content)
        await self.driver.put_content(layout.tag_current_link(name, tag), content)

    async def untag(self, name: str, tag: str) -> None:
        try:
            await self.driver.stat(layout.tag_current_link(name, tag))
            await self.driver.delete(layout.tag_dir(name, tag))
        except PathNotFound:
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"tag": tag}) from None

    async def all(self, name: str) -> list[str]:
        """Every tag of the repository, in ASCII order. NAME_UNKNOWN when the repo has none."""
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
