"""What a hostile client sends (issue 12, findings 5, 7, 8, 9a): encoded bodies are stored as sent,
numbers and names of any length are a 4xx with the OCI body, a Location is only ever http(s),
and no response names the server's runtime. The raw-socket side is tests/integration/
test_hostile_input.py."""

from __future__ import annotations

import gzip
import zlib

import pytest

from tests.api.conftest import Client, MakeClient
from tests.api.helpers import (
    OCI_MANIFEST,
    expect_error,
    open_upload,
    push_blob,
    push_image,
    sha256,
)


@pytest.fixture
def driver_name() -> str:
    """The long `from=` reached the filesystem as a path: the driver where it broke."""
    return "filesystem"


# bodies as a client may label them; "not-deflate" does not inflate, br/zstd need extra modules
ENCODED = [
    pytest.param("gzip", gzip.compress(b"\0" * (1 << 20)), id="gzip-bomb"),
    pytest.param("deflate", zlib.compress(b"layer " * 1000), id="deflate"),
    pytest.param("deflate", b"not deflate at all", id="invalid-deflate"),
    pytest.param("br", b"\x1b\x03\x00\xf8\xa5\x82", id="br"),
    pytest.param("zstd", b"\x28\xb5\x2f\xfd\x00\x58\x01\x00\x00", id="zstd"),
]


@pytest.mark.parametrize(("encoding", "body"), ENCODED)
async def test_encoded_patch_body_is_stored_as_sent(
    client: Client, encoding: str, body: bytes
) -> None:
    upload = await open_upload(client, "enc")
    resp = await client.patch(upload, data=body, headers={"Content-Encoding": encoding})
    assert resp.status == 202, await resp.text()
    assert resp.headers["Range"] == f"0-{len(body) - 1}"
    resp = await client.put(upload, params={"digest": sha256(body)})
    assert resp.status == 201, await resp.text()
    resp = await client.get(f"/v2/enc/blobs/{sha256(body)}")
    assert await resp.read() == body


@pytest.mark.parametrize(("encoding", "body"), ENCODED[:3])
async def test_encoded_single_post_and_put_bodies_are_stored_as_sent(
    client: Client, encoding: str, body: bytes
) -> None:
    headers = {"Content-Encoding": encoding}
    resp = await client.post(
        "/v2/enc/blobs/uploads/", params={"digest": sha256(body)}, data=body, headers=headers
    )
    assert resp.status == 201, await resp.text()
    other = body + b"!"
    upload = await open_upload(client, "enc")
    resp = await client.put(upload, params={"digest": sha256(other)}, data=other, headers=headers)
    assert resp.status == 201, await resp.text()
    assert await (await client.get(f"/v2/enc/blobs/{sha256(other)}")).read() == other


async def test_encoded_manifest_is_taken_as_sent(client: Client) -> None:
    _, manifest = await push_image(client, "enc", None)
    headers = {"Content-Type": OCI_MANIFEST, "Content-Encoding": "gzip"}
    # gzip bytes are no manifest (Distribution: MANIFEST_INVALID), and are not inflated into one
    resp = await client.put("/v2/enc/manifests/gz", data=gzip.compress(manifest), headers=headers)
    await expect_error(resp, 400, "MANIFEST_INVALID")
    # a plain manifest under a false label is the manifest, its digest over the bytes sent
    headers["Content-Encoding"] = "deflate"
    resp = await client.put("/v2/enc/manifests/plain", data=manifest, headers=headers)
    assert resp.status == 201, await resp.text()
    assert resp.headers["Docker-Content-Digest"] == sha256(manifest)


HUGE = "9" * 5000


@pytest.mark.parametrize("n", [HUGE, "9" * 20, "\u00b2", "\u0661"])
async def test_huge_or_foreign_n_is_pagination_number_invalid(client: Client, n: str) -> None:
    await push_image(client, "repo", "t")
    for path in ("/v2/repo/tags/list", "/v2/_catalog"):
        resp = await client.get(path, params={"n": n})
        await expect_error(resp, 400, "PAGINATION_NUMBER_INVALID")


async def test_long_mount_from_opens_a_plain_upload(client: Client) -> None:
    digest = await push_blob(client, "src", b"mount me")
    for source in ("a" * 300, "a/" * 200 + "b", "A" * 5000):
        resp = await client.post(
            "/v2/dst/blobs/uploads/", params={"mount": digest, "from": source}
        )
        assert resp.status == 202, await resp.text()  # as Distribution with a malformed `from`
        assert resp.headers["Location"]


@pytest.mark.parametrize(
    ("method", "headers", "status", "code"),
    [
        ("PATCH", {"Content-Range": f"0-{HUGE[:4400]}"}, 416, "RANGE_INVALID"),
        ("PATCH", {"Content-Range": f"{'1' * 20}-{'2' * 20}"}, 416, "RANGE_INVALID"),
        ("PATCH", {"Content-Range": "0-\u0661"}, 416, "RANGE_INVALID"),
        ("PUT", {"Content-Range": f"0-{HUGE}"}, 416, "RANGE_INVALID"),
    ],
)
async def test_huge_upload_numbers_are_4xx(
    client: Client, method: str, headers: dict[str, str], status: int, code: str
) -> None:
    upload = await open_upload(client, "repo")
    params = {"digest": sha256(b"x")} if method == "PUT" else None
    resp = await client.request(method, upload, data=b"x", headers=headers, params=params)
    await expect_error(resp, status, code)


@pytest.mark.parametrize("value", [f"bytes=0-{HUGE}", f"bytes={HUGE}-", f"bytes=-{HUGE}",
                                   f"bytes=0-{'9' * 20}", "bytes=\u0661-"])
async def test_huge_range_is_416(client: Client, value: str) -> None:
    digest = await push_blob(client, "repo", b"0123456789")
    resp = await client.get(f"/v2/repo/blobs/{digest}", headers={"Range": value})
    await expect_error(resp, 416, "RANGE_INVALID")
    assert resp.headers["Content-Range"] == "bytes */10"


async def test_absurdly_long_digest_is_not_echoed(client: Client) -> None:
    resp = await client.get("/v2/repo/blobs/" + "a" * 5000 + ":" + "b" * 3000)
    body = await expect_error(resp, 400, "DIGEST_INVALID")
    assert len(str(body)) < 500


@pytest.mark.parametrize("proto", ["javascript", "data", "file", "ftp", "JAVASCRIPT"])
async def test_location_scheme_is_http_or_https_only(make_client: MakeClient, proto: str) -> None:
    client = await make_client(http__relativeurls=False)
    for headers in ({"X-Forwarded-Proto": proto}, {"Forwarded": f"proto={proto}"}):
        resp = await client.post("/v2/repo/blobs/uploads/", headers=headers)
        assert resp.status == 202
        assert resp.headers["Location"].startswith("http://"), resp.headers["Location"]


async def test_no_server_header(client: Client) -> None:
    for resp in (
        await client.get("/v2/"),
        await client.get("/v2/absent/tags/list"),
        await client.get("/v2"),
        await client.get("/elsewhere"),
    ):
        assert "Server" not in resp.headers, (resp.status, resp.headers["Server"])
