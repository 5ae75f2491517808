"""Azure specifics the shared suite cannot see: blob names (Distribution 2.8's and 3's), blocks
staged while a writer streams, and nothing visible of a session that was not committed."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import pytest

from fastreg.storage.factory import create_driver
from tests.azurite import Azurite

pytestmark = pytest.mark.azure
CHUNK = 64 * 1024


@pytest.mark.parametrize(
    ("extra", "name"),
    [
        ({}, "/docker/registry/v2/x"),  # Distribution 2.8: the path itself
        ({"legacyrootprefix": False}, "docker/registry/v2/x"),  # Distribution 3
        ({"rootdirectory": "/reg/", "trimlegacyrootprefix": True}, "reg/docker/registry/v2/x"),
    ],
)
async def test_blob_names(azurite: Azurite, azure_container: str, extra: dict[str, object],
                          name: str) -> None:  # fmt: skip
    d = create_driver("azure", azurite.parameters(azure_container, **extra))
    try:
        await d.put_content("/docker/registry/v2/x", b"1")
        assert azurite.blob_names(azure_container) == [name]
        assert await d.list("/docker/registry/v2") == ["x"]
    finally:
        await d.close()


async def test_writer_stages_blocks_and_commits_only_on_commit(
    azurite: Azurite, azure_container: str
) -> None:
    d = create_driver("azure", azurite.parameters(azure_container, chunksize=CHUNK))
    other = create_driver("azure", azurite.parameters(azure_container, chunksize=CHUNK))
    try:
        first = os.urandom(3 * CHUNK + 5)
        w = await d.writer("/up/data", append=False)
        await w.write(first)
        await w.commit()
        await w.close()
        w = await other.writer("/up/data", append=True)  # another worker continues
        await w.write(os.urandom(2 * CHUNK))
        resp = await other.objects.call("blocks", "/up/data", "GET", other.key("/up/data"),
                                        query={"comp": "blocklist", "blocklisttype": "all"})  # fmt: skip
        root = ET.fromstring(await resp.read())
        assert len(root.findall("./CommittedBlocks/Block")) == 4
        assert len(root.findall("./UncommittedBlocks/Block")) >= 1  # streamed, not buffered
        await w.close()  # no commit: the blob is what the first session left
        assert await d.get_content("/up/data") == first
        w = await other.writer("/up/data", append=True)
        await w.write(b"tail")
        await w.commit()
        await w.close()
        assert await d.get_content("/up/data") == first + b"tail"
    finally:
        await d.close()
        await other.close()
