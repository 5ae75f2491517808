"""The driver contract, bytes in and out (cf. Distribution's testsuites: TestWriteRead*,
TestWriteReadStreams*, TestWriteReadLargeStreams, TestReaderWithOffset, TestContinueStreamAppend*,
TestConcurrentStreamReads, TestConcurrentFileStreams, TestURLFor), plus what upload sessions
need: concurrent small writes to one path, and a tree deleted while a writer writes in it."""

from __future__ import annotations

import asyncio
import hashlib
import random

import aiohttp
import pytest

from fastreg.storage.base import InvalidOffset, PathNotFound, StorageDriver, StorageError
from tests.drivers.contract import MIB, contents, random_path, read_all, write_stream

#: what Distribution writes and reads back: one byte, UTF-8, a short random string, 1 MiB,
#: bytes that are not UTF-8; and nothing at all
CONTENTS = {
    "one-byte": b"a",
    "utf8": "\u00df".encode(),
    "small": contents(32),
    "one-mib": contents(MIB),
    "non-utf8": b"\x80\x80\x80\x80",
    "empty": b"",
}
#: a few tens of MiB, in writes of an odd size: parts, blocks and segments all cross them
LARGE = 24 * MIB + 13
LARGE_WRITE = 1024 * 1024 - 7


@pytest.mark.parametrize("name", CONTENTS)
async def test_write_read_content(driver: StorageDriver, name: str) -> None:
    path, data = random_path(), CONTENTS[name]
    await driver.put_content(path, data)
    assert await driver.get_content(path) == data
    assert await read_all(driver, path) == data
    info = await driver.stat(path)
    assert (info.path, info.size, info.is_dir) == (path, len(data), False)


@pytest.mark.parametrize("name", CONTENTS)
async def test_write_read_streams(driver: StorageDriver, name: str) -> None:
    path, data = random_path(), CONTENTS[name]
    chunk = 7 if len(data) < 100 else 64 * 1024  # small contents in several writes too
    assert await write_stream(driver, path, data, chunk=chunk) == len(data)
    assert await read_all(driver, path) == data
    assert await driver.get_content(path) == data
    assert (await driver.stat(path)).size == len(data)


async def test_put_content_truncates(driver: StorageDriver) -> None:
    path = random_path()
    await driver.put_content(path, contents(MIB))
    smaller = contents(1024)
    await driver.put_content(path, smaller)
    assert await driver.get_content(path) == smaller
    assert (await driver.stat(path)).size == 1024


async def test_read_missing_stream(driver: StorageDriver) -> None:
    for offset in (0, 64):
        with pytest.raises(PathNotFound):
            await read_all(driver, "/missing/file", offset)


async def test_write_read_large_stream(driver: StorageDriver) -> None:
    path, data = random_path(), contents(LARGE)
    assert await write_stream(driver, path, data, chunk=LARGE_WRITE) == LARGE
    assert (await driver.stat(path)).size == LARGE
    digest = hashlib.sha256()
    async for chunk in driver.reader(path):
        digest.update(chunk)
    assert digest.digest() == hashlib.sha256(data).digest()
    # ranges across the write, part and block boundaries
    for offset, length in ((5 * MIB - 1, 2), (LARGE_WRITE - 3, 6), (16 * MIB - 5, MIB + 10)):
        assert await read_all(driver, path, offset, length) == data[offset : offset + length]


async def test_reader_at_and_past_the_end(driver: StorageDriver) -> None:
    path = random_path()
    chunks = [contents(32) for _ in range(3)]
    await driver.put_content(path, b"".join(chunks))
    assert await read_all(driver, path) == b"".join(chunks)
    assert await read_all(driver, path, 32) == chunks[1] + chunks[2]
    assert await read_all(driver, path, 64) == chunks[2]
    assert await read_all(driver, path, 95) == chunks[2][-1:]  # the N-1 boundary: one byte
    assert await read_all(driver, path, 96) == b""  # at the end: nothing, no error
    assert await read_all(driver, path, 90, 100) == chunks[2][-6:]  # a length past the end
    assert await read_all(driver, path, 10, 0) == b""
    with pytest.raises(InvalidOffset):  # past the end: fastreg's contract (Distribution: EOF)
        await read_all(driver, path, 97)
    await driver.put_content(path, b"")
    assert await read_all(driver, path, 0) == b""
    with pytest.raises(InvalidOffset):
        await read_all(driver, path, 1)


@pytest.mark.parametrize("chunk", [32, 5 * MIB + 1], ids=["small", "large"])
async def test_continue_stream_append(driver: StorageDriver, chunk: int) -> None:
    """Sessions that append one after another, each a writer of its own (as PATCHes are), with
    pieces below and above the object stores' smallest part."""
    path = random_path()
    pieces = [contents(chunk) for _ in range(3)]
    assert await write_stream(driver, path, pieces[0], chunk=MIB) == chunk
    for i, piece in enumerate(pieces[1:], 2):
        w = await driver.writer(path, append=True)
        assert w.size == (i - 1) * chunk
        await w.write(piece)
        assert w.size == i * chunk
        await w.commit()
        await w.close()
        assert (await driver.stat(path)).size == i * chunk
    assert await driver.get_content(path) == b"".join(pieces)
    assert await read_all(driver, path, chunk - 1, 2) == pieces[0][-1:] + pieces[1][:1]


async def test_append_to_an_empty_file(driver: StorageDriver) -> None:
    path = random_path()
    await driver.put_content(path, b"")  # an upload's data file before its first PATCH
    w = await driver.writer(path, append=True)
    assert w.size == 0
    await w.write(b"first")
    await w.commit()
    await w.close()
    assert await driver.get_content(path) == b"first"


async def test_concurrent_stream_reads(driver: StorageDriver) -> None:
    path, data = random_path(), contents(10 * MIB)
    await write_stream(driver, path, data, chunk=MIB)
    offsets = [random.randrange(len(data)) for _ in range(10)]
    reads = await asyncio.gather(*(read_all(driver, path, offset) for offset in offsets))
    for offset, read in zip(offsets, reads, strict=True):
        assert read == data[offset:]


async def test_concurrent_writers(driver: StorageDriver) -> None:
    """Eight streams to eight files of one directory at once, each of a size of its own."""
    parent = random_path(2)
    files = {f"{parent}/stream-{i}": contents(MIB + 4099 * i) for i in range(8)}
    sizes = await asyncio.gather(
        *(write_stream(driver, path, data, chunk=256 * 1024) for path, data in files.items())
    )
    assert sizes == [len(data) for data in files.values()]
    assert sorted(await driver.list(parent)) == sorted(p.rsplit("/", 1)[1] for p in files)
    for path, data in files.items():
        assert await read_all(driver, path) == data


async def test_concurrent_put_content_to_one_path(driver: StorageDriver) -> None:
    """put_content is atomic: after racing writers, and for readers between them, the file holds
    one writer's bytes whole (links and `startedat` files are written so, by many workers)."""
    path = random_path()
    versions = [bytes([i]) * (1000 + i) for i in range(10)]
    await driver.put_content(path, versions[0])

    async def read_whole() -> None:
        for _ in range(5):
            try:
                assert await driver.get_content(path) in versions
            except PathNotFound:
                # Swift's object server can answer 404 to a GET racing an overwrite (it removes
                # the older .data file the GET found); never a part of a version
                assert driver.name == "swift"
            await asyncio.sleep(0)

    await asyncio.gather(*(driver.put_content(path, v) for v in versions), read_whole())
    assert await driver.get_content(path) in versions


async def test_url_for(driver: StorageDriver) -> None:
    """A URL the client can fetch the bytes from, or None: the driver has none."""
    path, data = random_path(), contents(32)
    await driver.put_content(path, data)
    url = await driver.url_for(path)
    if url is None:
        assert driver.name in ("filesystem", "inmemory"), "an object store that cannot redirect"
        assert await driver.url_for(path, "HEAD") is None
        return
    async with aiohttp.ClientSession(trust_env=False) as http:
        async with http.get(url) as resp:
            assert (resp.status, await resp.read()) == (200, data)
        head = await driver.url_for(path, "HEAD")
        assert head is not None
        async with http.head(head) as resp:
            assert (resp.status, resp.content_length) == (200, 32)
    assert await driver.url_for(path, "DELETE") is None  # never a URL that changes storage


@pytest.mark.parametrize("after", ["write", "commit", "close"])
async def test_delete_of_a_tree_while_a_writer_writes_in_it(
    driver: StorageDriver, after: str
) -> None:
    """An upload cancelled while a PATCH streams into it: the delete succeeds at once, and what
    the writer does afterwards (it may fail) never leaves anything below the deleted tree once
    the registry has deleted the tree again (uploads.py `_check_alive`)."""
    upload = f"{random_path(2)}/_uploads/{random_path(1)[1:]}"
    await driver.put_content(f"{upload}/startedat", b"now")
    await write_stream(driver, f"{upload}/data", contents(3 * MIB))
    w = await driver.writer(f"{upload}/data", append=True)
    await w.write(contents(6 * MIB))  # past the smallest part: an object store's upload runs
    await driver.delete(upload)
    with pytest.raises(PathNotFound):
        await driver.stat(f"{upload}/startedat")
    try:
        if after in ("write", "commit"):
            await w.write(contents(MIB))
        if after == "commit":
            await w.commit()
    except StorageError:
        pass  # the file went away under the writer: failing is right
    finally:
        await w.close()
    try:
        await driver.delete(upload)
    except PathNotFound:
        pass
    with pytest.raises(PathNotFound):
        await driver.stat(f"{upload}/data")
    with pytest.raises(PathNotFound):
        await driver.list(upload)
    parent = upload.rsplit("/", 1)[0]
    try:
        assert upload.rsplit("/", 1)[1] not in await driver.list(parent)
    except PathNotFound:
        pass
