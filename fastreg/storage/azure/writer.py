"""Appending to a block blob: blocks staged as they fill, committed with Put Block List.

Bytes are buffered up to `chunksize` and staged with Put Block, one block in flight while the
next fills, so memory stays near two blocks per writer. Staged blocks are invisible until
``commit`` sends Put Block List: the blob's committed blocks (Get Block List) followed by the new
ones. Every writer session thus ends with a whole, readable blob that any process can stat, read
and append to; a session that ends without ``commit`` leaves the blob as it was (Azure drops the
uncommitted blocks). Block ids are 48-character base64 strings of random bytes: one length for
every block of a blob, as Azure requires, and unique without coordination between workers.
"""

from __future__ import annotations

import base64
import os
import xml.etree.ElementTree as ET

from fastreg.storage.azure.objects import AzureObjects
from fastreg.storage.base import StorageError
from fastreg.storage.chunked import FixedChunkWriter
from fastreg.storage.objectstore import read_all

MAX_BLOCKS = 50_000


def new_block_id() -> str:
    return base64.b64encode(os.urandom(36)).decode()


class AzureWriter(FixedChunkWriter):
    def __init__(self, objects: AzureObjects, path: str, base: int, exists: bool) -> None:
        super().__init__(path, base, objects.params.chunksize)
        self._objects = objects
        self._name = objects.key(path)
        self._exists = exists
        self._committed: list[str] | None = None  # fetched when the first block is staged
        self._staged: list[str] = []

    @classmethod
    async def open(cls, objects: AzureObjects, path: str, append: bool) -> AzureWriter:
        name = objects.key(path)
        if not append:  # truncate now, as O_TRUNC does: the empty file is visible at once
            await objects.put(path, name, b"")
            return cls(objects, path, 0, True)
        head = await objects.head(path, name)
        if head is None:
            return cls(objects, path, 0, False)
        kind = head.meta.get("x-ms-blob-type", "BlockBlob")
        if kind != "BlockBlob":
            raise StorageError(
                f"azure: {path} is a {kind}, not a block blob: it cannot be "
                "appended to (an upload started by Distribution 2.8 must be finished there)"
            )
        return cls(objects, path, head.size, True)

    async def _commit(self) -> None:
        if self._buf:
            await self._ship(self._take_rest())
        await self._drain()
        if not self._staged:
            if not self._exists:  # an append on a missing file still creates it
                await self._objects.put(self._path, self._name, b"")
                self._exists = True
            return
        committed = self._committed or []
        root = ET.Element("BlockList")
        for block_id in committed:
            ET.SubElement(root, "Committed").text = block_id
        for block_id in self._staged:
            ET.SubElement(root, "Uncommitted").text = block_id
        body = ET.tostring(root, encoding="utf-8", xml_declaration=True)
        headers = {"x-ms-blob-content-type": "application/octet-stream",
                   "Content-Type": "application/xml", "Content-Length": str(len(body))}  # fmt: skip
        await self._objects.call(
            "put block list", self._path, "PUT", self._name, query={"comp": "blocklist"},
            headers=headers, body=body, expect=(201,),
        )  # fmt: skip
        self._committed = committed + self._staged
        self._staged = []
        self._base, self._written, self._exists = self.size, 0, True

    async def _remove(self) -> None:
        await self._objects.delete(self._path, self._name)

    async def _ship(self, block: bytes) -> None:
        """Hand one block to Put Block, after the block before it has landed."""
        if self._committed is None:
            self._committed = await self._committed_blocks()
        await self._drain()
        if len(self._committed) + len(self._staged) >= MAX_BLOCKS:
            raise StorageError(f"azure: {self._path} would exceed {MAX_BLOCKS} blocks")
        block_id = new_block_id()
        self._staged.append(block_id)
        await self._send(lambda: self._put_block(block_id, block))

    async def _put_block(self, block_id: str, block: bytes) -> None:
        await self._objects.call(
            "put block", self._path, "PUT", self._name,
            query={"comp": "block", "blockid": block_id},
            headers={"Content-Length": str(len(block))}, body=block, expect=(201,),
        )  # fmt: skip

    async def _committed_blocks(self) -> list[str]:
        """The ids of the blob's blocks, which must add up to the bytes this writer appends to."""
        if not self._exists or self._base == 0:
            return []
        resp = await self._objects.call(
            "get block list", self._path, "GET", self._name,
            query={"comp": "blocklist", "blocklisttype": "committed"},
        )  # fmt: skip
        root = ET.fromstring(await resp.read())
        blocks = root.findall("./CommittedBlocks/Block")
        ids = [b.findtext("Name") or "" for b in blocks]
        total = sum(int(b.findtext("Size") or 0) for b in blocks)
        if total == 0 and self._base <= self._objects.params.chunksize:
            # written whole with Put Blob (put_content, a copy): its bytes become the first block
            data = await read_all(self._objects, self._path, self._name, None)
            if len(data) == self._base:
                block_id = new_block_id()
                await self._put_block(block_id, data)
                self._staged.append(block_id)
                return []
        if total != self._base:
            # a large blob without blocks, or changed by another writer
            raise StorageError(
                f"azure: {self._path} has {self._base} bytes but blocks for {total}: "
                "cannot append to it"
            )
        if ids and any(len(i) != len(ids[0]) for i in ids) or (ids and len(ids[0]) != 48):
            raise StorageError(f"azure: {self._path} has block ids of another length")
        return ids
