"""The storage driver contract (cf. Distribution's `storage/driver/testsuites`)."""

from __future__ import annotations

import os

import pytest

from fastreg.storage.base import PathNotFound, StorageDriver, StorageError
from tests.drivers.contract import read_all


async def test_put_get_roundtrip(driver: StorageDriver) -> None:
    await driver.put_content("/a/b/c", b"content")
    assert await driver.get_content("/a/b/c") == b"content"
    await driver.put_content("/a/b/c", b"new")
    assert await driver.get_content("/a/b/c") == b"new"


async def test_get_missing_is_path_not_found(driver: StorageDriver) -> None:
    with pytest.raises(PathNotFound):
        await driver.get_content("/missing")
    with pytest.raises(PathNotFound):
        await driver.stat("/missing")
    with pytest.raises(PathNotFound):
        await driver.list("/missing")
    with pytest.raises(PathNotFound):
        await driver.delete("/missing")
    with pytest.raises(PathNotFound):
        await read_all(driver, "/missing")


async def test_get_content_limit(driver: StorageDriver) -> None:
    await driver.put_content("/big", b"x" * 100)
    assert await driver.get_content("/big", limit=100) == b"x" * 100
    with pytest.raises(StorageError):
        await driver.get_content("/big", limit=99)


async def test_stat_file_and_directory(driver: StorageDriver) -> None:
    await driver.put_content("/dir/file", b"12345")
    info = await driver.stat("/dir/file")
    assert (info.size, info.is_dir) == (5, False)
    assert (await driver.stat("/dir")).is_dir


async def test_list_direct_children(driver: StorageDriver) -> None:
    for path in ("/r/a/x", "/r/a/y", "/r/b", "/r/c/d/e"):
        await driver.put_content(path, b"1")
    assert sorted(await driver.list("/r")) == ["a", "b", "c"]
    assert sorted(await driver.list("/r/a")) == ["x", "y"]


async def test_writer_appends_and_resumes(driver: StorageDriver) -> None:
    w = await driver.writer("/up/data", append=False)
    await w.write(b"hello ")
    assert w.size == 6
    await w.commit()
    await w.close()
    w = await driver.writer("/up/data", append=True)
    assert w.size == 6
    await w.write(b"world")
    await w.commit()
    await w.close()
    await w.close()  # safe twice
    assert await driver.get_content("/up/data") == b"hello world"
    w = await driver.writer("/up/data", append=False)
    assert w.size == 0
    await w.close()
    assert await driver.get_content("/up/data") == b""


async def test_writer_cancel_removes(driver: StorageDriver) -> None:
    w = await driver.writer("/up/data", append=False)
    await w.write(b"partial")
    await w.cancel()
    with pytest.raises(PathNotFound):
        await driver.stat("/up/data")
    with pytest.raises(StorageError):
        await w.write(b"more")


async def test_reader_offsets_and_lengths(driver: StorageDriver) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    w = await driver.writer("/blob", append=False)
    await w.write(data)
    await w.commit()
    await w.close()
    assert await read_all(driver, "/blob") == data
    assert await read_all(driver, "/blob", 1000) == data[1000:]
    assert await read_all(driver, "/blob", 1000, 5) == data[1000:1005]
    assert await read_all(driver, "/blob", len(data)) == b""
    with pytest.raises(StorageError):
        await read_all(driver, "/blob", len(data) + 1)


async def test_move_replaces_destination(driver: StorageDriver) -> None:
    await driver.put_content("/src/data", b"new")
    await driver.put_content("/dst/data", b"old")
    await driver.move("/src/data", "/dst/data")
    assert await driver.get_content("/dst/data") == b"new"
    with pytest.raises(PathNotFound):
        await driver.stat("/src/data")
    with pytest.raises(PathNotFound):
        await driver.move("/src/data", "/elsewhere")


async def test_publish_never_replaces_the_destination(driver: StorageDriver) -> None:
    await driver.put_content("/blobs/b/data", b"stored")
    w = await driver.writer("/up/data", append=False)
    await w.write(b"upload" * 1000)
    await w.commit()
    await w.close()
    assert await driver.publish("/up/data", "/blobs/b/data") is False
    assert await driver.get_content("/blobs/b/data") == b"stored"
    assert await driver.get_content("/up/data") == b"upload" * 1000  # left for the caller
    assert await driver.publish("/up/data", "/blobs/c/data") is True
    assert await driver.get_content("/blobs/c/data") == b"upload" * 1000
    with pytest.raises(PathNotFound):
        await driver.stat("/up/data")
    with pytest.raises(PathNotFound):
        await driver.publish("/up/data", "/blobs/d/data")


async def test_lease_is_exclusive_until_released(driver: StorageDriver) -> None:
    await driver.put_content("/up/startedat", b"now")
    first = await driver.lease("/up/startedat")
    assert first is not None
    assert await driver.lease("/up/startedat") is None
    other = await driver.lease("/up2/startedat") if driver.name != "filesystem" else None
    await first.release()
    await first.release()  # twice is harmless
    again = await driver.lease("/up/startedat")
    assert again is not None
    await again.release()
    if other is not None:
        await other.release()
    if driver.name == "filesystem":  # locks in storage: a missing file has no lease
        with pytest.raises(PathNotFound):
            await driver.lease("/missing/startedat")


@pytest.mark.parametrize("away", ["publish", "delete"])
async def test_a_writer_never_writes_into_a_file_moved_or_deleted_under_it(
    driver: StorageDriver, away: str
) -> None:
    if driver.name not in ("filesystem", "inmemory"):
        pytest.skip("object-store writers write objects of their own, never into a blob")
    await driver.put_content("/up/data", b"abc")
    w = await driver.writer("/up/data", append=True)
    if away == "publish":
        assert await driver.publish("/up/data", "/blobs/x/data")
    else:
        await driver.delete("/up")
    with pytest.raises(PathNotFound):
        await w.write(b"late")
    await w.close()
    if away == "publish":
        assert await driver.get_content("/blobs/x/data") == b"abc"
    with pytest.raises(PathNotFound):  # an append never recreates the file
        await driver.writer("/up/data", append=True)
    with pytest.raises(PathNotFound):
        await driver.stat("/up/data")


async def test_delete_tree(driver: StorageDriver) -> None:
    for path in ("/t/a/1", "/t/a/2", "/t/b"):
        await driver.put_content(path, b"1")
    await driver.delete("/t/a")
    assert await driver.list("/t") == ["b"]
    await driver.delete("/t/b")
    with pytest.raises(PathNotFound):
        await driver.stat("/t/b")


async def test_healthy(driver: StorageDriver) -> None:
    await driver.healthy()
