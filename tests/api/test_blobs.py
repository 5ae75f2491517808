"""end-2 / end-10: `HEAD|GET|DELETE /v2/<name>/blobs/<digest>`, with ranges."""

from __future__ import annotations

import pytest

from tests.api.conftest import Client, MakeClient
from tests.api.helpers import UNKNOWN_DIGEST, expect_error, push_blob, sha256, sha512

DATA = b"0123456789abcdefghij"  # 20 bytes


async def test_head_blob(client: Client) -> None:
    digest = await push_blob(client, "repo", DATA)
    resp = await client.head(f"/v2/repo/blobs/{digest}")
    assert resp.status == 200
    assert resp.headers["Content-Length"] == str(len(DATA))
    assert resp.headers["Docker-Content-Digest"] == digest
    assert await resp.read() == b""


async def test_get_blob(client: Client) -> None:
    digest = await push_blob(client, "repo", DATA)
    resp = await client.get(f"/v2/repo/blobs/{digest}")
    assert resp.status == 200
    assert await resp.read() == DATA
    assert resp.headers["Docker-Content-Digest"] == digest
    assert resp.headers["Content-Length"] == str(len(DATA))
    assert resp.headers["ETag"] == f'"{digest}"'


async def test_get_empty_blob(client: Client) -> None:
    digest = await push_blob(client, "repo", b"")
    resp = await client.get(f"/v2/repo/blobs/{digest}")
    assert resp.status == 200
    assert await resp.read() == b""


async def test_get_blob_if_none_match(client: Client) -> None:
    digest = await push_blob(client, "repo", DATA)
    resp = await client.get(f"/v2/repo/blobs/{digest}", headers={"If-None-Match": f'"{digest}"'})
    assert resp.status == 304
    assert await resp.read() == b""


# (Range header, expected Content-Range, expected bytes)
RANGES = [
    ("bytes=0-4", "bytes 0-4/20", DATA[0:5]),
    ("bytes=5-9", "bytes 5-9/20", DATA[5:10]),
    ("bytes=19-19", "bytes 19-19/20", DATA[19:]),
    ("bytes=15-", "bytes 15-19/20", DATA[15:]),  # open-ended
    ("bytes=0-", "bytes 0-19/20", DATA),
    ("bytes=-3", "bytes 17-19/20", DATA[-3:]),  # suffix
    ("bytes=-100", "bytes 0-19/20", DATA),  # suffix longer than the blob
    ("bytes=10-1000", "bytes 10-19/20", DATA[10:]),  # end clamped (RFC 9110 14.1.1)
]


@pytest.mark.parametrize(("range_", "content_range", "expected"), RANGES)
async def test_get_blob_range(
    client: Client, range_: str, content_range: str, expected: bytes
) -> None:
    digest = await push_blob(client, "repo", DATA)
    resp = await client.get(f"/v2/repo/blobs/{digest}", headers={"Range": range_})
    assert resp.status == 206
    assert resp.headers["Content-Range"] == content_range
    assert resp.headers["Content-Length"] == str(len(expected))
    assert await resp.read() == expected


@pytest.mark.parametrize("range_", ["bytes=20-", "bytes=25-30", "bytes=9-3", "bytes=-0", "bytes=x-y"])
async def test_get_blob_unsatisfiable_range(client: Client, range_: str) -> None:
    digest = await push_blob(client, "repo", DATA)
    resp = await client.get(f"/v2/repo/blobs/{digest}", headers={"Range": range_})
    await expect_error(resp, 416, "RANGE_INVALID")


async def test_unsatisfiable_range_names_the_size(client: Client) -> None:
    # RFC 9110 15.5.17: a 416 to a byte-range request SHOULD carry `Content-Range: bytes */<len>`;
    # Distribution 2.8 (http.ServeContent) always sends it, and clients use it to resync.
    digest = await push_blob(client, "repo", DATA)
    resp = await client.get(f"/v2/repo/blobs/{digest}", headers={"Range": "bytes=25-30"})
    assert resp.status == 416
    assert resp.headers.get("Content-Range") == "bytes */20"


async def test_blob_of_another_repository_is_unknown(client: Client) -> None:
    digest = await push_blob(client, "one", DATA)
    for method in ("GET", "HEAD"):
        resp = await client.request(method, f"/v2/two/blobs/{digest}")
        assert resp.status == 404
    await expect_error(await client.get(f"/v2/two/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    await push_blob(client, "two", b"something else")  # the repository exists; still unknown
    await expect_error(await client.get(f"/v2/two/blobs/{digest}"), 404, "BLOB_UNKNOWN")


async def test_unknown_blob(client: Client) -> None:
    await expect_error(await client.get(f"/v2/repo/blobs/{UNKNOWN_DIGEST}"), 404, "BLOB_UNKNOWN")
    resp = await client.head(f"/v2/repo/blobs/{UNKNOWN_DIGEST}")
    assert resp.status == 404
    assert await resp.read() == b""


MALFORMED_DIGESTS = [
    "sha256:abc",  # too short
    "sha256:" + "A" * 64,  # uppercase hex
    "sha256:" + "g" * 64,  # not hex
    "sha256" + "0" * 64,  # no colon -> not a digest at all
    "md5:" + "0" * 32,  # unsupported algorithm
    "sha512:" + "0" * 64,  # wrong length for the algorithm
    ":" + "0" * 64,
]


@pytest.mark.parametrize("digest", MALFORMED_DIGESTS)
@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_malformed_digest(client: Client, method: str, digest: str) -> None:
    resp = await client.request(method, f"/v2/repo/blobs/{digest}")
    await expect_error(resp, 400, "DIGEST_INVALID")


@pytest.mark.parametrize("digest", MALFORMED_DIGESTS)
async def test_malformed_digest_head(client: Client, digest: str) -> None:
    resp = await client.head(f"/v2/repo/blobs/{digest}")
    assert resp.status == 400


async def test_sha512_blob(client: Client) -> None:
    digest = sha512(DATA)
    resp = await client.post("/v2/repo/blobs/uploads/", params={"digest": digest}, data=DATA)
    assert resp.status == 201, await resp.text()
    resp = await client.get(f"/v2/repo/blobs/{digest}")
    assert resp.status == 200
    assert resp.headers["Docker-Content-Digest"] == digest
    assert await resp.read() == DATA
    # the same bytes under sha256 are a different, unknown, blob
    await expect_error(await client.get(f"/v2/repo/blobs/{sha256(DATA)}"), 404, "BLOB_UNKNOWN")


async def test_delete_blob(client: Client) -> None:
    digest = await push_blob(client, "repo", DATA)
    other = await push_blob(client, "other", DATA)
    resp = await client.delete(f"/v2/repo/blobs/{digest}")
    assert resp.status == 202
    await expect_error(await client.get(f"/v2/repo/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert (await client.head(f"/v2/repo/blobs/{digest}")).status == 404
    # only unlinked from that repository
    resp = await client.get(f"/v2/other/blobs/{other}")
    assert resp.status == 200
    assert await resp.read() == DATA
    # a second delete: unknown
    await expect_error(await client.delete(f"/v2/repo/blobs/{digest}"), 404, "BLOB_UNKNOWN")


async def test_delete_unknown_blob(client: Client) -> None:
    await push_blob(client, "repo", DATA)
    resp = await client.delete(f"/v2/repo/blobs/{UNKNOWN_DIGEST}")
    await expect_error(resp, 404, "BLOB_UNKNOWN")


async def test_delete_blob_disabled(make_client: MakeClient) -> None:
    client = await make_client(storage__delete__enabled=False)
    digest = await push_blob(client, "repo", DATA)
    await expect_error(await client.delete(f"/v2/repo/blobs/{digest}"), 405, "UNSUPPORTED")
    assert (await client.get(f"/v2/repo/blobs/{digest}")).status == 200
