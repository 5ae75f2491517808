"""The API on S3 where it differs from local disks: redirects to presigned URLs, proxied ranges,
chunked uploads across registry instances, S3 outages and credentials checked at start."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from fastreg.api.context import REGISTRY
from fastreg.config import parse_config
from fastreg.server.app import create_app
from fastreg.storage.base import StorageError
from tests.api.conftest import Client, MakeClient, config_text
from tests.api.helpers import location, push_blob, sha256
from tests.seaweed import SeaweedFS

pytestmark = pytest.mark.s3
MIB = 1024 * 1024


@pytest.fixture
def driver_name() -> str:
    return "s3"


async def test_blob_get_redirects_to_a_presigned_url(
    make_client: MakeClient, seaweedfs: SeaweedFS
) -> None:
    client = await make_client(storage__redirect__disable=False)
    data = os.urandom(100_000)
    digest = await push_blob(client, "repo", data)
    resp = await client.get(f"/v2/repo/blobs/{digest}", allow_redirects=False)
    assert resp.status == 307
    assert resp.headers["Docker-Content-Digest"] == digest
    url = resp.headers["Location"]
    assert url.startswith(seaweedfs.endpoint + "/")
    async with aiohttp.ClientSession() as http:  # the client fetches from S3 itself, Range included
        async with http.get(url) as got:
            assert (got.status, await got.read()) == (200, data)
        async with http.get(url, headers={"Range": "bytes=10-19"}) as got:
            assert (got.status, await got.read()) == (206, data[10:20])


async def test_redirect_disabled_proxies_ranges(client: Client) -> None:
    data = os.urandom(3 * MIB + 5)
    digest = await push_blob(client, "repo", data)
    resp = await client.get(f"/v2/repo/blobs/{digest}", allow_redirects=False)
    assert (resp.status, await resp.read()) == (200, data)
    resp = await client.get(f"/v2/repo/blobs/{digest}", headers={"Range": f"bytes={MIB}-"})
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes {MIB}-{len(data) - 1}/{len(data)}"
    assert await resp.read() == data[MIB:]


async def test_chunked_upload_across_two_registries_on_one_bucket(make_client: MakeClient) -> None:
    # two workers sharing the bucket: each PATCH lands on the other one, chunks of odd sizes
    a, b = await make_client(), await make_client()
    data = os.urandom(12 * MIB + 3)
    resp = await a.post("/v2/repo/blobs/uploads/")
    url = location(resp)
    offset = 0
    for i, size in enumerate([1, 5 * MIB, 7, 6 * MIB, MIB - 8]):
        chunk = data[offset : offset + size]
        worker = (a, b)[i % 2]
        headers = {
            "Content-Range": f"{offset}-{offset + size - 1}",
            "Content-Type": "application/octet-stream",
        }
        resp = await worker.patch(url, data=chunk, headers=headers)
        assert resp.status == 202, await resp.text()
        offset += size
        assert resp.headers["Range"] == f"0-{offset - 1}"
        url = location(resp)
    assert offset + 3 == len(data)
    digest = sha256(data)
    resp = await a.put(url, params={"digest": digest}, data=data[offset:])
    assert resp.status == 201, await resp.text()
    resp = await b.get(f"/v2/repo/blobs/{digest}")
    assert await resp.read() == data


async def test_wrong_secret_key_stops_the_start_with_a_clear_error(
    seaweedfs: SeaweedFS, s3_shared_bucket: str, tmp_path: Path
) -> None:
    params = seaweedfs.s3_parameters(s3_shared_bucket, secretkey="not-the-secret")
    app = create_app(parse_config(config_text(tmp_path, "s3", storage__s3=params)))
    runner = web.AppRunner(app)
    try:
        with pytest.raises(StorageError, match="secret key does not match"):
            await runner.setup()  # the cleanup context runs the storage health check
    finally:
        await runner.cleanup()
        await app[REGISTRY].driver.close()  # the app never started, so it closes nothing


# -- S3 goes away in the middle of an upload ---------------------------------------------------


@pytest.fixture
def own_seaweedfs() -> Iterator[SeaweedFS]:
    """A SeaweedFS of this test's own, to stop and start again (same ports, same data)."""
    server = SeaweedFS(Path(tempfile.mkdtemp(prefix="fastreg-weed-fault-")))
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


async def test_s3_outage_during_upload_gives_503_then_resumes(
    make_client: MakeClient, own_seaweedfs: SeaweedFS
) -> None:
    weed = own_seaweedfs
    bucket = weed.new_bucket()
    client = await make_client(storage__s3=weed.s3_parameters(bucket, maxretries=1))
    data = os.urandom(11 * MIB)
    resp = await client.post("/v2/repo/blobs/uploads/")
    url = location(resp)
    resp = await client.patch(url, data=data[: 6 * MIB])
    assert resp.status == 202

    weed.kill()
    started = time.monotonic()
    resp = await client.patch(url, data=data[6 * MIB :])
    body: dict[str, Any] = await resp.json()
    assert resp.status == 503, body
    assert body["errors"][0]["code"] == "UNAVAILABLE"
    assert time.monotonic() - started < 20
    resp = await client.get(url)
    assert resp.status == 503

    weed.start()  # same data directory: the first chunk is still there
    resp = await client.get(url)
    assert (resp.status, resp.headers["Range"]) == (204, f"0-{6 * MIB - 1}")
    digest = sha256(data)
    resp = await client.head(f"/v2/repo/blobs/{digest}")
    assert resp.status == 404  # nothing half-written became visible
    resp = await client.put(url, params={"digest": digest}, data=data[6 * MIB :])
    assert resp.status == 201, await resp.text()
    resp = await client.get(f"/v2/repo/blobs/{digest}")
    assert await resp.read() == data
    assert not weed.client().list_multipart_uploads(Bucket=bucket).get("Uploads")


async def test_s3_killed_in_the_middle_of_a_patch(
    make_client: MakeClient, own_seaweedfs: SeaweedFS
) -> None:
    weed = own_seaweedfs
    bucket = weed.new_bucket()
    client = await make_client(storage__s3=weed.s3_parameters(bucket, maxretries=1))
    first = os.urandom(2 * MIB)
    url = location(await client.post("/v2/repo/blobs/uploads/"))
    resp = await client.patch(url, data=first)
    assert resp.status == 202

    async def body() -> Any:  # S3 dies after 12 MiB of a 40 MiB chunk: parts are in flight
        for i in range(40):
            if i == 12:
                weed.kill()
            yield os.urandom(MIB)

    started = time.monotonic()
    resp = await client.patch(url, data=body())
    assert resp.status == 503
    assert (await resp.json())["errors"][0]["code"] == "UNAVAILABLE"
    assert time.monotonic() - started < 30

    weed.start()
    resp = await client.get(url)  # the failed PATCH left nothing: the upload is as it was
    assert (resp.status, resp.headers["Range"]) == (204, f"0-{len(first) - 1}")
    last = os.urandom(3 * MIB)
    resp = await client.put(url, params={"digest": sha256(first + last)}, data=last)
    assert resp.status == 201, await resp.text()
    assert not weed.client().list_multipart_uploads(Bucket=bucket).get("Uploads")
    assert [k for k in weed.keys(bucket) if "/_uploads/" in k] == []
