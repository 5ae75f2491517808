"""Blob descriptor caches (`storage.cache.blobdescriptor`): what HEADs and manifest checks ask
storage most often, kept in memory.

Blobs are content-addressed, so a descriptor (digest -> size) never changes while the blob exists;
only "this repository has this blob" can become false, through a blob delete, which goes through
`forget_link`. Only positive answers are cached: a blob pushed by another worker is found on
storage at once. Like Distribution's `inmemory` cache, a per-process cache learns of a delete made
by another process only when its entry is evicted; the `redis` cache (shared) does not have that
limit.
"""

from __future__ import annotations

from fastreg.lru import LRU
from fastreg.registry.blobs import BlobInfo
from fastreg.registry.digests import Digest


class InMemoryDescriptorCache:
    def __init__(self, size: int = 10000) -> None:
        self._blobs: LRU[Digest, BlobInfo] = LRU(size)
        self._links: LRU[tuple[str, Digest], bool] = LRU(size)

    @property
    def hits(self) -> int:
        return self._blobs.hits + self._links.hits

    @property
    def misses(self) -> int:
        return self._blobs.misses + self._links.misses

    async def get(self, digest: Digest) -> BlobInfo | None:
        return self._blobs.get(digest)

    async def put(self, info: BlobInfo) -> None:
        self._blobs.put(info.digest, info)

    async def is_linked(self, name: str, digest: Digest) -> bool:
        return self._links.get((name, digest)) is not None

    async def put_link(self, name: str, digest: Digest) -> None:
        self._links.put((name, digest), True)

    async def forget_link(self, name: str, digest: Digest) -> None:
        self._links.pop((name, digest))

    async def forget(self, digest: Digest) -> None:
        self._blobs.pop(digest)
