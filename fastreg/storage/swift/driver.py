"""The Swift driver: Distribution's `swift` driver layout in one container.

Directories are name prefixes, listed with `delimiter=/`. Files written by a writer are Dynamic
Large Objects (`objects.py`, `writer.py`); small files (`put_content`) are plain objects. What
differs from the object-store driver is what large objects need: a move re-points a manifest (or
copies a plain object server-side) and drops the segments of the file it replaced; a delete
drops the segments of every manifest it deletes.
"""

from __future__ import annotations

import builtins

from fastreg.storage.base import PathNotFound
from fastreg.storage.objectstore import ObjectStoreDriver, prefix_of
from fastreg.storage.swift.objects import SwiftObjects
from fastreg.storage.swift.params import SwiftParams
from fastreg.storage.swift.writer import SwiftWriter


class SwiftDriver(ObjectStoreDriver[SwiftObjects]):
    name = "swift"

    @classmethod
    def from_settings(cls, settings: SwiftParams) -> SwiftDriver:
        return cls(SwiftObjects(settings), SwiftWriter.open)

    # -- move and delete ----------------------------------------------------------------------

    async def move(self, source: str, dest: str) -> None:
        replaced = self.objects.segments_of(await self.objects.head(dest, self.file_key(dest)))
        await self._move(source, dest, replaced)

    async def publish(self, source: str, dest: str) -> bool:
        """The HEAD of the destination a move makes anyway decides: no request more."""
        if await self.objects.head(dest, self.file_key(dest)) is not None:
            return False
        await self._move(source, dest, None)
        return True

    async def _move(self, source: str, dest: str, replaced: str | None) -> None:
        """Move ``source`` over ``dest``, whose DLO segments were ``replaced`` (None: none)."""
        o = self.objects
        src, dst = self.file_key(source), self.file_key(dest)
        info = await o.head(source, src)
        if info is None:
            raise PathNotFound(source)
        segments = o.segments_of(info)
        if segments is not None:
            await o.put_manifest(dest, dst, segments)
        else:
            await o.copy(source, src, dst)
        await o.delete(source, src)
        if replaced is not None and replaced != segments:
            await o.delete_segments(dest, replaced)

    async def delete(self, path: str) -> None:
        o = self.objects
        key = self.key(path)
        names: builtins.list[str] = []
        manifests: builtins.list[str] = []
        info = await o.head(path, key)
        if info is not None:
            names.append(key)
            manifests += filter(None, [o.segments_of(info)])
        for name, size in await o.entries(path, prefix_of(key)):
            names.append(name)
            if size == 0:  # a DLO manifest lists as an empty object
                manifests += filter(None, [o.segments_of(await o.head(path, name))])
        if not names:
            raise PathNotFound(path)
        # manifests first: a reader never sees a file whose segments are half gone
        await self.delete_keys(path, names)
        for segments in manifests:
            await o.delete_segments(path, segments)
