"""Upload sessions: resume on another process, digest verification, atomic commit."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fastreg.registry import layout
from fastreg.registry.blobs import BlobStore
from fastreg.registry.digests import Digest
from fastreg.registry.errors import ErrorCode, RegistryError
from fastreg.registry.hashlane import HashLane
from fastreg.registry.uploads import UploadService, batched
from fastreg.storage.base import PathNotFound
from fastreg.storage.filesystem import FilesystemDriver


async def body(*chunks: bytes) -> AsyncIterator[bytes]:
    for c in chunks:
        yield c


def service(root: Path) -> UploadService:
    driver = FilesystemDriver(str(root))
    return UploadService(driver, BlobStore(driver))


async def test_chunks_hashed_once_and_committed(tmp_path: Path) -> None:
    s = service(tmp_path)
    data = os.urandom(3 * 1024 * 1024 + 5)
    st = await s.start("repo")
    st = await s.append("repo", st.upload_id, body(data[:1000]), start=0)
    st = await s.append("repo", st.upload_id, body(data[1000:]), start=1000)
    assert st.offset == len(data)
    digest = Digest.from_bytes(data)
    info = await s.finish("repo", st.upload_id, digest)
    assert info.size == len(data)
    assert (tmp_path / layout.blob_data(digest).lstrip("/")).read_bytes() == data
    link = tmp_path / layout.layer_link("repo", digest).lstrip("/")
    assert link.read_bytes() == str(digest).encode()
    assert not (tmp_path / layout.upload_dir("repo", st.upload_id).lstrip("/")).exists()


async def test_resume_on_another_process_rehashes(tmp_path: Path) -> None:
    """A PATCH that lands on a worker that never saw the upload still yields the right digest."""
    data = os.urandom(2 * 1024 * 1024)
    first = service(tmp_path)
    st = await first.start("repo")
    await first.append("repo", st.upload_id, body(data[:777]))
    second = service(tmp_path)  # no live hasher: another worker, or after a restart
    st2 = await second.append("repo", st.upload_id, body(data[777:]), start=777)
    assert st2.offset == len(data)
    info = await first.finish("repo", st.upload_id, Digest.from_bytes(data))  # stale hasher
    assert info.digest == Digest.from_bytes(data)


async def test_out_of_order_chunk_is_range_invalid(tmp_path: Path) -> None:
    s = service(tmp_path)
    st = await s.start("repo")
    await s.append("repo", st.upload_id, body(b"abc"), start=0)
    for start in (0, 2, 4):
        with pytest.raises(RegistryError) as err:
            await s.append("repo", st.upload_id, body(b"d"), start=start)
        assert err.value.code is ErrorCode.RANGE_INVALID
    assert (await s.status("repo", st.upload_id)).offset == 3


async def test_wrong_digest_leaves_nothing(tmp_path: Path) -> None:
    s = service(tmp_path)
    st = await s.start("repo")
    wrong = Digest.from_bytes(b"something else")
    with pytest.raises(RegistryError) as err:
        await s.finish("repo", st.upload_id, wrong, body(b"payload"))
    assert err.value.code is ErrorCode.DIGEST_INVALID
    assert not (tmp_path / layout.blob_dir(wrong).lstrip("/")).exists()
    right = Digest.from_bytes(b"payload")
    assert not (tmp_path / layout.blob_dir(right).lstrip("/")).exists()
    with pytest.raises(RegistryError) as err:
        await s.status("repo", st.upload_id)
    assert err.value.code is ErrorCode.BLOB_UPLOAD_UNKNOWN


async def test_sha512_upload(tmp_path: Path) -> None:
    s = service(tmp_path)
    st = await s.start("repo", "sha512")
    digest = Digest("sha512", hashlib.sha512(b"x" * 100).hexdigest())
    info = await s.finish("repo", st.upload_id, digest, body(b"x" * 100))
    assert info.digest == digest
    assert (tmp_path / layout.blob_data(digest).lstrip("/")).exists()


async def test_unknown_algorithm_rejected(tmp_path: Path) -> None:
    with pytest.raises(RegistryError) as err:
        await service(tmp_path).start("repo", "md5")
    assert err.value.code is ErrorCode.DIGEST_INVALID


async def test_same_blob_in_many_repositories_concurrently(tmp_path: Path) -> None:
    s = service(tmp_path)
    data = os.urandom(512 * 1024)
    digest = Digest.from_bytes(data)

    async def push(repo: str) -> None:
        st = await s.start(repo)
        await s.finish(repo, st.upload_id, digest, body(data[:1000], data[1000:]))

    await asyncio.gather(*(push(f"r{i}") for i in range(8)))
    blobs = list((tmp_path / layout.BLOBS.lstrip("/")).rglob("data"))
    assert len(blobs) == 1 and blobs[0].read_bytes() == data
    for i in range(8):
        assert await s.blobs.is_linked(f"r{i}", digest)
    assert not list((tmp_path / layout.REPOSITORIES.lstrip("/")).rglob("_uploads/*"))


async def test_cancel(tmp_path: Path) -> None:
    s = service(tmp_path)
    st = await s.start("repo")
    await s.append("repo", st.upload_id, body(b"abc"))
    await s.cancel("repo", st.upload_id)
    with pytest.raises(PathNotFound):
        await s.driver.stat(layout.upload_dir("repo", st.upload_id))


@pytest.mark.parametrize("bad", ["x", "../../etc", "7e975b3d-4b60-4a9a-b155-7b9675a2048G"])
async def test_malformed_upload_id(tmp_path: Path, bad: str) -> None:
    with pytest.raises(RegistryError) as err:
        await service(tmp_path).status("repo", bad)
    assert err.value.code is ErrorCode.BLOB_UPLOAD_UNKNOWN


async def test_batched_regroups() -> None:
    out = [b async for b in batched(body(b"a" * 10, b"", b"b" * 10, b"c" * 5), size=16)]
    assert out == [b"a" * 10 + b"b" * 10, b"c" * 5]


async def test_no_per_upload_state_is_left_behind(tmp_path: Path) -> None:
    s = service(tmp_path)
    for _ in range(20):
        st = await s.start("repo")
        await s.append("repo", st.upload_id, body(b"abc"))
        await s.finish("repo", st.upload_id, Digest.from_bytes(b"abc"))
    cancelled = await s.start("repo")
    await s.cancel("repo", cancelled.upload_id)
    assert s.leases._holds == {}
    assert cancelled.upload_id not in s._live


class SlowWriter:
    """A writer slower than hashing (so its lane is full when the body ends), optionally failing."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.data = bytearray()
        self.fail_at = fail_at

    @property
    def size(self) -> int:
        return len(self.data)

    async def write(self, data: bytes) -> None:
        await asyncio.sleep(0.01)
        if self.fail_at is not None and len(self.data) >= self.fail_at:
            raise OSError("disk full")
        self.data += data


async def test_ingest_with_a_slow_writer_delivers_everything() -> None:
    from fastreg.registry.uploads import _ingest

    payload = os.urandom(12 * 1024 * 1024 + 3)
    writer = SlowWriter()
    lane = HashLane(hashlib.sha256(), 2)
    chunks = [payload[i : i + 65536] for i in range(0, len(payload), 65536)]
    await asyncio.wait_for(_ingest(writer, lane, body(*chunks)), 30)  # type: ignore[arg-type]
    assert bytes(writer.data) == payload
    assert (await lane.settle()).hexdigest() == hashlib.sha256(payload).hexdigest()


async def test_ingest_raises_a_write_failure_instead_of_hanging() -> None:
    from fastreg.registry.uploads import _ingest

    payload = os.urandom(12 * 1024 * 1024)
    chunks = [payload[i : i + 65536] for i in range(0, len(payload), 65536)]
    with pytest.raises(OSError, match="disk full"):
        await asyncio.wait_for(
            _ingest(
                SlowWriter(fail_at=3 * 1024 * 1024),  # type: ignore[arg-type]
                HashLane(hashlib.sha256(), 2),
                body(*chunks),
            ),
            30,
        )
