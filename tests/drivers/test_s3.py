"""What only the S3 driver has: Distribution's key layout, multipart streaming and resumption,
multipart copy, presigned URLs, credentials and outage errors. Against a real SeaweedFS."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from fastreg.config import ConfigError
from fastreg.storage import factory
from fastreg.storage.base import PathNotFound, StorageError
from fastreg.storage.factory import create_driver
from fastreg.storage.s3 import S3Driver, S3Params
from fastreg.storage.s3 import objects as s3_objects
from fastreg.storage.s3 import writer as s3_writer
from fastreg.storage.s3.params import MAX_PART, MIN_PART, split
from tests.seaweed import SeaweedFS

pytestmark = pytest.mark.s3
MIB = 1024 * 1024


@pytest.fixture
async def make(seaweedfs: SeaweedFS, s3_bucket: str) -> AsyncIterator[Any]:
    """``make(**params)``: drivers on the test's bucket, closed at the end."""
    drivers: list[S3Driver] = []

    def build(**extra: Any) -> S3Driver:
        d = create_driver("s3", seaweedfs.s3_parameters(s3_bucket, **extra))
        drivers.append(d)
        return d

    yield build
    for d in drivers:
        await d.close()


async def read_all(d: S3Driver, path: str) -> bytes:
    return b"".join([c async for c in d.reader(path)])


async def test_keys_follow_distribution_layout(
    make: Any, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    # Distribution's s3Path: rootdirectory + path with leading (and the root's trailing) "/" removed
    await make(rootdirectory="/reg/").put_content("/docker/registry/v2/x", b"1")
    await make().put_content("/docker/registry/v2/y", b"2")
    assert sorted(seaweedfs.keys(s3_bucket)) == ["docker/registry/v2/y", "reg/docker/registry/v2/x"]
    assert await make(rootdirectory="reg").list("/docker/registry/v2") == ["x"]
    assert factory.create_driver("s3aws", seaweedfs.s3_parameters(s3_bucket)).name == "s3"


async def test_streamed_upload_resumes_in_another_driver(
    make: Any, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    # PATCHes of odd sizes, each one in a new driver (another worker, or after a restart)
    data = os.urandom(23 * MIB + 12345)
    cuts = [0, 1, 3 * MIB, 3 * MIB + 7, 14 * MIB, len(data)]
    for start, end in itertools.pairwise(cuts):
        d = make(chunksize=5 * MIB)
        w = await d.writer("/up/data", append=start > 0)
        assert w.size == start
        for i in range(start, end, MIB):  # the API hands over ~1 MiB batches
            await w.write(data[i : min(end, i + MIB)])
        assert w.size == end
        await w.commit()
        await w.close()
        assert (await d.stat("/up/data")).size == end
    d = make()
    assert hashlib.sha256(await read_all(d, "/up/data")).digest() == hashlib.sha256(data).digest()
    # the head took the small PATCHes (rewritten while under 5 MiB); the last one is a segment
    assert seaweedfs.keys(s3_bucket) == ["up/data", f"up/data~/{14 * MIB:020d}"]
    assert await d.list("/up") == ["data"]  # segments are no files of their own
    across = b"".join([c async for c in d.reader("/up/data", 14 * MIB - 5, 10)])
    assert across == data[14 * MIB - 5 : 14 * MIB + 5]
    tail = b"".join([c async for c in d.reader("/up/data", 20 * MIB)])
    assert tail == data[20 * MIB :]
    assert not seaweedfs.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads")
    await d.move("/up/data", "/blobs/b")  # the pieces composed into one object
    assert seaweedfs.keys(s3_bucket) == ["blobs/b"]
    assert await read_all(d, "/blobs/b") == data
    head = seaweedfs.client().head_object(Bucket=s3_bucket, Key="blobs/b")
    assert not head.get("Metadata")  # the blob is a plain object, as Distribution writes them


def piece_etags(seaweedfs: SeaweedFS, bucket: str, prefix: str) -> dict[str, str]:
    client = seaweedfs.client()
    return {
        k: client.head_object(Bucket=bucket, Key=k)["ETag"] for k in seaweedfs.keys(bucket, prefix)
    }


async def append(d: S3Driver, path: str, data: bytes) -> None:
    """One PATCH: a writer session that appends ``data`` in 1 MiB batches and commits."""
    w = await d.writer(path, append=True)
    for i in range(0, len(data), MIB):
        await w.write(data[i : i + MIB])
    await w.commit()
    await w.close()


async def test_appends_never_copy_what_is_stored(
    make: Any, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    """A train of PATCHes costs each byte one write: every PATCH adds an object and leaves the
    earlier ones as they are (before, each PATCH copied the whole file into a new upload)."""
    d = make(chunksize=5 * MIB)
    await d.put_content("/up/data", b"")
    patches = [os.urandom(6 * MIB + i) for i in range(5)]
    seen: dict[str, str] = {}
    for n, patch in enumerate(patches, start=1):
        await append(d, "/up/data", patch)
        etags = piece_etags(seaweedfs, s3_bucket, "up/")
        assert len(etags) == n
        assert all(etags[k] == v for k, v in seen.items())  # no earlier piece was rewritten
        seen = etags
    assert await read_all(make(), "/up/data") == b"".join(patches)
    assert (await d.stat("/up/data")).size == sum(map(len, patches))


async def test_small_appends_grow_the_last_piece_to_a_part(
    make: Any, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    """Pieces but the last are >= 5 MiB (each must be able to be a part of the composed blob):
    1 MiB PATCHes rewrite the last piece until it reaches 5 MiB, then start a new one."""
    d = make(chunksize=5 * MIB)
    await d.put_content("/up/data", b"")
    patches = [os.urandom(MIB + 3) for _ in range(12)]
    for patch in patches:
        await append(make(chunksize=5 * MIB), "/up/data", patch)
    layout = await d.objects.layout("/up/data")
    assert layout is not None and len(layout.pieces) == 3
    assert all(p.size >= MIN_PART for p in layout.pieces[:-1])
    assert await read_all(d, "/up/data") == b"".join(patches)
    await d.move("/up/data", "/blob")
    assert await read_all(d, "/blob") == b"".join(patches)


async def test_many_segments_merge_into_the_head(
    make: Any, monkeypatch: pytest.MonkeyPatch, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    monkeypatch.setattr(s3_writer, "MAX_SEGMENTS", 2)
    d = make(chunksize=5 * MIB, multipartcopychunksize=5 * MIB)
    patches = [os.urandom(5 * MIB + i) for i in range(5)]
    await d.put_content("/up/data", patches[0])
    for patch in patches[1:]:
        await append(d, "/up/data", patch)
    # head + 2 segments were merged before the fourth PATCH: head, then the last two
    keys = seaweedfs.keys(s3_bucket)
    assert len(keys) == 3 and keys[0] == "up/data"
    assert await read_all(make(), "/up/data") == b"".join(patches)


async def test_a_merge_cut_short_leaves_the_file_whole(
    make: Any, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    """A merge composes the head first and deletes the segments after: a crash between the two
    leaves segments the head already holds, which are ignored, not read twice."""
    d = make(chunksize=5 * MIB, multipartcopychunksize=5 * MIB)
    data = os.urandom(11 * MIB)
    await d.put_content("/up/data", data[: 5 * MIB])
    await append(d, "/up/data", data[5 * MIB :])
    layout = await d.objects.layout("/up/data")
    assert layout is not None
    await d.objects.compose("/up/data", layout.pieces, layout.head.key, marked=True)  # no delete after
    assert len(seaweedfs.keys(s3_bucket)) == 2
    assert (await d.stat("/up/data")).size == len(data)
    assert await read_all(d, "/up/data") == data
    more = os.urandom(MIB)
    await append(d, "/up/data", more)
    assert await read_all(make(), "/up/data") == data + more


async def test_truncate_and_delete_drop_segments(
    make: Any, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    d = make(chunksize=5 * MIB)
    await d.put_content("/up/data", os.urandom(5 * MIB))
    await append(d, "/up/data", os.urandom(5 * MIB))
    w = await d.writer("/up/data", append=False)  # truncated: the old segment must not return
    await w.close()
    fresh = os.urandom(5 * MIB)
    await append(d, "/up/data", fresh)
    await append(d, "/up/data", b"x")  # marks the head again
    assert await read_all(d, "/up/data") == fresh + b"x"
    await d.delete("/up/data")
    assert seaweedfs.keys(s3_bucket) == []
    with pytest.raises(PathNotFound):
        await d.stat("/up/data")


async def test_a_gap_between_segments_is_an_error_not_wrong_bytes(
    make: Any, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    d = make(chunksize=5 * MIB)
    await d.put_content("/up/data", os.urandom(5 * MIB))
    await append(d, "/up/data", os.urandom(5 * MIB))
    seaweedfs.client().put_object(Bucket=s3_bucket, Key=f"up/data~/{20 * MIB:020d}", Body=b"z")
    with pytest.raises(StorageError, match="segment at"):
        await d.stat("/up/data")


async def test_uncommitted_write_leaves_the_file_as_it_was(
    make: Any, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    d = make(chunksize=5 * MIB)
    await d.put_content("/up/data", b"before")
    w = await d.writer("/up/data", append=True)
    await w.write(os.urandom(11 * MIB))  # two parts went out
    await w.close()  # the client went away: no commit
    assert await d.get_content("/up/data") == b"before"
    assert not seaweedfs.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads")


async def test_write_overlaps_part_upload_and_holds_one_part(make: Any) -> None:
    """A part is sent while the client goes on, but the next write waits for it: an upload
    holds one part and one batch, never two parts (memory per upload at many at once)."""
    d = make(chunksize=5 * MIB)
    w = await d.writer("/up/data", append=False)
    batches = [os.urandom(MIB) for _ in range(16)]
    peak = 0
    overlapped = 0
    for batch in batches:
        await w.write(batch)
        inflight = w._inflight is not None and not w._inflight.done()
        overlapped += inflight
        peak = max(peak, w._pending.size + (5 * MIB if inflight else 0))
    assert overlapped  # write returned while a part upload was still running
    assert peak <= 5 * MIB + MIB
    await w.commit()
    await w.close()
    assert await read_all(d, "/up/data") == b"".join(batches)


async def test_parts_in_memory_are_bounded_per_process(make: Any) -> None:
    """With maxbufferedparts=1 a second upload waits while the first holds the slot, and goes
    on once the first commits; a slot never leaks (the third writer gets it at once)."""
    d = make(chunksize=5 * MIB, maxbufferedparts=1)
    first = await d.writer("/up/a", append=False)
    second = await d.writer("/up/b", append=False)
    await first.write(os.urandom(MIB))  # first takes the slot
    blocked = asyncio.ensure_future(second.write(os.urandom(MIB)))
    await asyncio.sleep(0.3)
    assert not blocked.done()
    await first.commit()
    await first.close()
    await asyncio.wait_for(blocked, 5)
    await second.commit()
    await second.close()
    assert (await d.stat("/up/a")).size == MIB and (await d.stat("/up/b")).size == MIB
    third = await d.writer("/up/c", append=False)
    await asyncio.wait_for(third.write(b"x"), 1)
    await third.close()  # closed without commit: the slot comes back too
    fourth = await d.writer("/up/d", append=False)
    await asyncio.wait_for(fourth.write(b"y"), 1)
    await fourth.close()


async def test_an_upload_waits_for_a_slot_only_so_long(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slow clients holding every slot do not starve the others: past SLOT_WAIT an upload goes
    on without a slot."""
    from fastreg.storage.s3 import writer as s3_writer

    monkeypatch.setattr(s3_writer, "SLOT_WAIT", 0.2)
    d = make(chunksize=5 * MIB, maxbufferedparts=1)
    slow = await d.writer("/up/slow", append=False)
    await slow.write(b"a")  # holds the only slot, and sends nothing more
    other = await d.writer("/up/other", append=False)
    data = os.urandom(6 * MIB)
    await asyncio.wait_for(other.write(data), 5)
    await other.commit()
    await other.close()
    assert await read_all(d, "/up/other") == data
    await slow.close()


def test_part_size_grows_so_ten_thousand_parts_reach_five_tib() -> None:
    params = S3Params(bucket="b", chunksize=10 * MIB)
    d = S3Driver(params)
    from fastreg.storage.s3.writer import S3Writer

    w = S3Writer(d, "/x", None)
    sizes = [w.part_size(n) for n in range(1, 10_001)]
    assert sizes[0] == 10 * MIB and sizes[999] == 10 * MIB and sizes[1000] == 20 * MIB
    assert max(sizes) == MAX_PART
    assert sum(sizes) >= 5 * 1024**4  # S3's largest object
    assert split(MAX_PART + 1, MAX_PART, last_min=MIN_PART)[-1][1] == MAX_PART
    assert all(e - s + 1 >= MIN_PART for s, e in split(12 * MIB, 5 * MIB, last_min=MIN_PART))


async def test_move_uses_multipart_copy_above_threshold(
    make: Any, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    d = make(multipartcopythresholdsize=0, multipartcopychunksize=5 * MIB)
    data = os.urandom(12 * MIB + 1)
    await d.put_content("/_uploads/u/data", data)
    await d.move("/_uploads/u/data", "/blobs/b/data")
    assert await read_all(d, "/blobs/b/data") == data
    head = seaweedfs.client().head_object(Bucket=s3_bucket, Key="blobs/b/data")
    assert head["ETag"].strip('"').endswith("-3")  # three UploadPartCopy parts
    with pytest.raises(PathNotFound):
        await d.stat("/_uploads/u/data")
    await d.put_content("/small", b"s")  # below the threshold: CopyObject
    await make().move("/small", "/moved")
    assert await d.get_content("/moved") == b"s"


async def test_list_and_delete_paginate(
    make: Any, monkeypatch: pytest.MonkeyPatch, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    monkeypatch.setattr(s3_objects, "LIST_MAX", 2)  # pages of two keys (and delete batches of two)
    d = make()
    for i in range(5):
        await d.put_content(f"/t/d{i}/f", b"1")
        await d.put_content(f"/t/f{i}", b"1")
    assert sorted(await d.list("/t")) == sorted(
        [f"d{i}" for i in range(5)] + [f"f{i}" for i in range(5)]
    )
    await d.delete("/t")
    assert seaweedfs.keys(s3_bucket) == []
    with pytest.raises(PathNotFound):
        await d.list("/t")


async def test_delete_aborts_orphaned_multipart_uploads(
    make: Any, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    d = make(chunksize=5 * MIB)
    await d.put_content("/_uploads/u/startedat", b"now")
    w = await d.writer("/_uploads/u/data", append=False)
    await w.write(os.urandom(6 * MIB))  # a part is out: a process dying now leaves an upload
    await w._drain()
    assert seaweedfs.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads")
    await d.delete("/_uploads/u")
    assert not seaweedfs.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads")


async def test_presigned_url_serves_ranges_from_the_endpoint(
    make: Any, seaweedfs: SeaweedFS
) -> None:
    d = make(presignexpiry="90s")
    await d.put_content("/blob", b"0123456789")
    url = await d.url_for("/blob")
    assert url is not None and url.startswith(seaweedfs.endpoint + "/")
    assert "X-Amz-Expires=90" in url
    async with (
        aiohttp.ClientSession() as http,
        http.get(url, headers={"Range": "bytes=2-4"}) as resp,
    ):
        assert (resp.status, await resp.read()) == (206, b"234")
    assert await d.url_for("/blob", "PUT") is None
    assert d.local_file("/blob") is None


async def test_wrong_secret_key_fails_health_check_clearly(
    seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    d = create_driver("s3", seaweedfs.s3_parameters(s3_bucket, secretkey="wrong"))
    try:
        with pytest.raises(StorageError, match="secret key does not match"):
            await d.healthy()
    finally:
        await d.close()
    bad = create_driver("s3", 
        seaweedfs.s3_parameters(s3_bucket, secretkey="wrong", v4auth=False)
    )
    try:
        with pytest.raises(StorageError, match="secret key does not match"):
            await bad.healthy()
    finally:
        await bad.close()


async def test_unreachable_endpoint_fails_fast() -> None:
    port = _closed_port()
    d = create_driver("s3", 
        {
            "bucket": "b",
            "regionendpoint": f"http://127.0.0.1:{port}",
            "accesskey": "a",
            "secretkey": "s",
            "maxretries": 2,
        }
    )
    started = time.monotonic()
    try:
        with pytest.raises(StorageError):
            await d.stat("/x")
        with pytest.raises(StorageError):
            await d.healthy()
    finally:
        await d.close()
    assert time.monotonic() - started < 15


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "bucket: required"),
        ({"bucket": "b"}, "region: required"),
        ({"bucket": "b", "region": "r", "chunksize": 1024}, "chunksize: 1024 is not between"),
        ({"bucket": "b", "region": "r", "secure": "maybe"}, "secure: expected a boolean"),
        ({"bucket": "b", "region": "r", "v4auth": False}, "v4auth"),
        ({"bucket": "b", "region": "r", "storageclass": "GOLD"}, "storageclass"),
    ],
)
def test_bad_parameters_name_the_key(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        S3Params.parse(params)


def test_distribution_parameters_parse() -> None:
    p = S3Params.parse(
        {
            "bucket": "b",
            "region": "eu-west-1",
            "regionendpoint": "minio:9000",
            "secure": "false",
            "chunksize": "5242880",
            "encrypt": True,
            "keyid": "k",
            "storageclass": "NONE",
            "maxrequestspersecond": 50,
            "rootdirectory": "/a/b/",
        }
    )
    assert p.endpoint_url == "http://minio:9000" and p.forcepathstyle  # 2.8: path style
    assert (p.chunksize, p.rootdirectory, p.storageclass) == (5 * MIB, "a/b", None)
    d = S3Driver(p)
    assert d.objects.put_args() == {
        "ContentType": "application/octet-stream",
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": "k",
    }
    assert d.key("/docker/registry/v2/x") == "a/b/docker/registry/v2/x"


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_rate_limit_spaces_requests(make: Any) -> None:
    d = make(maxrequestspersecond=20)
    started = asyncio.get_running_loop().time()
    await asyncio.gather(*(d.put_content(f"/r/{i}", b"x") for i in range(10)))
    assert asyncio.get_running_loop().time() - started >= 9 / 20 - 0.01


async def test_signature_version_2_store(make: Any, seaweedfs: SeaweedFS) -> None:
    """``v4auth: false``: every operation the driver uses, signed with version 2."""
    d = make(v4auth=False, chunksize=5 * MIB)
    data = os.urandom(6 * MIB + 1)
    await d.put_content("/up/data", b"")
    await append(d, "/up/data", data[: 5 * MIB])
    await append(d, "/up/data", data[5 * MIB :])  # a segment after the marked head
    assert await d.list("/up") == ["data"]
    await d.move("/up/data", "/blobs/b")
    assert await read_all(d, "/blobs/b") == data
    url = await d.url_for("/blobs/b")
    assert url is not None and "Signature=" in url
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert (resp.status, len(await resp.read())) == (200, len(data))
    await d.delete("/blobs")
    with pytest.raises(PathNotFound):
        await d.stat("/blobs/b")


class FaultProxy:
    """Forwards requests to the real SeaweedFS, answering the first matching ones with a fault
    instead: what a loaded or failing S3 does (503 SlowDown, 500s, an error inside a 200)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.faults: list[tuple[str, str, int, bytes]] = []  # method, query word, status, body
        self.seen: list[str] = []
        self.url = ""

    def fail(self, method: str, query: str, status: int, code: str, times: int = 1) -> None:
        body = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
        self.faults += [(method, query, status, body)] * times

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(f"{request.method} {request.query_string}")
        for i, (method, query, status, payload) in enumerate(self.faults):
            if method == request.method and query in request.query_string:
                del self.faults[i]
                return web.Response(status=status, body=payload, content_type="application/xml")
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        async with (
            aiohttp.ClientSession(auto_decompress=False) as http,
            http.request(
                request.method,
                URL(self.target + request.raw_path, encoded=True),
                headers=headers,
                data=body or None,
                skip_auto_headers=("Content-Type",),
            ) as resp,
        ):
            data = await resp.read()
            keep = {k: v for k, v in resp.headers.items()
                    if k.lower() not in ("content-length", "transfer-encoding", "connection",
                                         "content-encoding", "date", "server")}  # fmt: skip
            if request.method == "HEAD":
                keep["Content-Length"] = resp.headers.get("Content-Length", "0")
                return web.Response(status=resp.status, headers=keep)
            return web.Response(status=resp.status, body=data, headers=keep)


@pytest.fixture
async def proxy(seaweedfs: SeaweedFS) -> AsyncIterator[FaultProxy]:
    fp = FaultProxy(seaweedfs.endpoint)
    app = web.Application(client_max_size=64 * MIB)
    app.router.add_route("*", "/{tail:.*}", fp.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fp.url = f"http://127.0.0.1:{port}"
    yield fp
    await runner.cleanup()


async def test_transient_errors_are_retried(
    proxy: FaultProxy, make: Any, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    d = make(regionendpoint=proxy.url, chunksize=5 * MIB, maxretries=3)
    proxy.fail("PUT", "", 503, "SlowDown", times=2)
    await d.put_content("/f", b"hello")
    assert [s.split()[0] for s in proxy.seen] == ["PUT", "PUT", "PUT"]
    assert await d.get_content("/f") == b"hello"
    # CompleteMultipartUpload may answer 200 with the error in its body: retried as well
    proxy.fail("POST", "uploadId", 200, "InternalError")
    data = os.urandom(6 * MIB)
    w = await d.writer("/big", append=False)
    await w.write(data)
    await w.commit()
    await w.close()
    assert sum("uploadId" in s and s.startswith("POST") for s in proxy.seen) == 2
    assert await read_all(d, "/big") == data


async def test_lasting_or_final_errors_are_not_hidden(proxy: FaultProxy, make: Any) -> None:
    d = make(regionendpoint=proxy.url, maxretries=1)
    proxy.fail("PUT", "", 503, "SlowDown", times=2)
    with pytest.raises(StorageError, match="SlowDown"):
        await d.put_content("/f", b"x")
    assert len(proxy.seen) == 2  # one try and one retry, as configured
    proxy.seen.clear()
    proxy.fail("GET", "list-type", 403, "AccessDenied")
    with pytest.raises(StorageError, match="access denied"):
        await d.list("/")
    assert len(proxy.seen) == 1  # a refusal is final: no retry
