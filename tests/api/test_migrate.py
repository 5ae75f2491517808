"""`fastreg migrate`: verified, resumable, incremental copies between drivers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from fastreg.cli.main import main
from fastreg.registry import layout
from fastreg.registry.digests import Digest
from fastreg.registry.migrate import MigrateError, migrate
from fastreg.storage.base import PathNotFound, StorageDriver
from fastreg.storage.filesystem import FilesystemDriver
from fastreg.storage.inmemory import InMemoryDriver
from tests.api.conftest import Client, MakeClient, driver_of
from tests.api.helpers import OCI_INDEX, OCI_MANIFEST, image_index, push_image, put_manifest
from tests.api.test_gc import pulls, referrer


async def fill(client: Client) -> list[tuple[str, str]]:
    """Images, an index and a referrer; returns (repository, reference) pairs to pull back."""
    a, a_body = await push_image(client, "lib/app", "v1", [b"layer-1", b"layer-2" * 5000])
    _, b_body = await push_image(client, "lib/app", None, [b"arm-layer"])
    index = image_index([(OCI_MANIFEST, a_body), (OCI_MANIFEST, b_body)])
    assert (await put_manifest(client, "lib/app", "multi", index, OCI_INDEX)).status == 201
    sig = await referrer(client, "lib/app", a, a_body)
    await push_image(client, "other", "latest", [b"other-layer"])
    return [("lib/app", "v1"), ("lib/app", "multi"), ("lib/app", sig), ("other", "latest")]


class FailingDriver(InMemoryDriver):
    """A destination that dies after a number of blob moves (an interrupted migration)."""

    def __init__(self, moves: int) -> None:
        super().__init__()
        self.moves = moves

    async def move(self, source: str, dest: str) -> None:
        if self.moves <= 0:
            raise OSError("interrupted")
        self.moves -= 1
        await super().move(source, dest)


async def test_interrupted_migration_resumes_and_second_run_copies_only_changes(
    make_client: MakeClient,
) -> None:
    src_client = await make_client()
    refs = await fill(src_client)
    src = driver_of(src_client)
    dst = FailingDriver(moves=3)
    with pytest.raises(OSError):
        await migrate(src, dst)
    dst.moves = 10**6
    first = await migrate(src, dst)
    assert first.blobs_present == 3 and first.blobs_copied > 0
    dst_client = await make_client(driver=dst)
    for name, ref in refs:
        assert await pulls(dst_client, name, ref), (name, ref)
    referrers = await (await dst_client.get(f"/v2/lib/app/referrers/{refs[2][1]}")).json()
    assert referrers["manifests"] == []  # the signature is a referrer, not a subject
    # the source keeps serving: a new push, then a second run copies just that
    await push_image(src_client, "lib/app", "v2", [b"layer-3"])
    second = await migrate(src, dst)
    assert second.blobs_copied == 3 and second.links_written == 5, (
        second
    )  # 2 layer links, revision, tag
    assert await pulls(dst_client, "lib/app", "v2")
    third = await migrate(src, dst)
    assert third.blobs_copied == 0 and third.links_written == 0


async def test_corrupt_source_blob_is_not_copied(make_client: MakeClient) -> None:
    client = await make_client()
    await push_image(client, "app", "v1", [b"good-layer"])
    src = driver_of(client)
    d = Digest("sha256", hashlib.sha256(b"good-layer").hexdigest())
    await src.put_content(layout.blob_data(d), b"evil-layer")
    dst: StorageDriver = InMemoryDriver()
    with pytest.raises(MigrateError):
        await migrate(src, dst)
    with pytest.raises(PathNotFound):
        await dst.stat(layout.blob_data(d))


def test_cli_filesystem_to_filesystem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    src_root, dst_root = tmp_path / "src", tmp_path / "dst"
    src = FilesystemDriver(str(src_root))
    asyncio.run(src.put_content(layout.blob_data(Digest.from_bytes(b"x")), b"x"))
    asyncio.run(src.close())
    for name, root in (("src.yml", src_root), ("dst.yml", dst_root)):
        (tmp_path / name).write_text(
            f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\n"
        )
    assert main(["migrate", str(tmp_path / "src.yml"), str(tmp_path / "dst.yml")]) == 0
    assert "copied 1 blobs" in capsys.readouterr().out
    assert (dst_root / layout.blob_data(Digest.from_bytes(b"x")).lstrip("/")).read_bytes() == b"x"
