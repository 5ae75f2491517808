"""end-4a/4b/5/6/11/13 and cancel: the blob upload protocol, step by step and failure by failure."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fastreg.storage.base import PathNotFound
from tests.api.conftest import Client, MakeClient, driver_of
from tests.api.helpers import (
    ROOT,
    UNKNOWN_DIGEST,
    UNKNOWN_UUID,
    expect_error,
    location,
    open_upload,
    push_blob,
    sha256,
    sha512,
    start_upload,
)

BLOB = b"The quick brown fox jumps over the lazy dog"  # 43 bytes
CHUNK1, CHUNK2, CHUNK3 = BLOB[:10], BLOB[10:25], BLOB[25:]


def upload_id(loc: str) -> str:
    return loc.split("?")[0].rstrip("/").rsplit("/", 1)[1]


async def exists(client: Client, path: str) -> bool:
    try:
        await driver_of(client).stat(path)
    except PathNotFound:
        return False
    return True


def blob_dir(digest: str) -> str:
    algorithm, hex_ = digest.split(":")
    return f"/{ROOT}/blobs/{algorithm}/{hex_[:2]}/{hex_}"


async def assert_blob(client: Client, name: str, digest: str, data: bytes) -> None:
    resp = await client.get(f"/v2/{name}/blobs/{digest}")
    assert resp.status == 200, await resp.text()
    assert resp.headers["Docker-Content-Digest"] == digest
    assert await resp.read() == data


def assert_created(resp: object, name: str, digest: str) -> None:
    assert resp.status == 201  # type: ignore[attr-defined]
    assert location(resp) == f"/v2/{name}/blobs/{digest}"
    assert resp.headers["Docker-Content-Digest"] == digest  # type: ignore[attr-defined]


# --- starting an upload -------------------------------------------------------------------------


async def test_post_opens_a_session(client: Client) -> None:
    resp = await start_upload(client, "repo")
    assert resp.status == 202
    loc = location(resp)
    assert loc.startswith("/v2/repo/blobs/uploads/")
    uuid = resp.headers["Docker-Upload-UUID"]
    assert uuid and uuid == upload_id(loc)
    assert resp.headers["Range"] == "0-0"
    assert resp.headers.get("Content-Length", "0") == "0"
    assert await resp.read() == b""


async def test_post_nested_name(client: Client) -> None:
    resp = await start_upload(client, "a/b/c")
    assert resp.status == 202
    assert location(resp).startswith("/v2/a/b/c/blobs/uploads/")


async def test_post_without_trailing_slash(client: Client) -> None:
    resp = await client.post("/v2/repo/blobs/uploads")
    assert resp.status == 202


async def test_locations_are_absolute_unless_relativeurls(make_client: MakeClient) -> None:
    client = await make_client(http__relativeurls=False)
    resp = await start_upload(client, "repo")
    assert resp.status == 202
    host = f"{client.server.host}:{client.server.port}"
    assert resp.headers["Location"].startswith(f"http://{host}/v2/repo/blobs/uploads/")
    resp = await client.put(location(resp), params={"digest": sha256(BLOB)}, data=BLOB)
    assert resp.status == 201
    assert resp.headers["Location"] == f"http://{host}/v2/repo/blobs/{sha256(BLOB)}"


async def test_locations_honour_forwarded_headers(make_client: MakeClient) -> None:
    client = await make_client(http__relativeurls=False)
    resp = await client.post(
        "/v2/repo/blobs/uploads/",
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "registry.example.com"},
    )
    assert resp.status == 202
    assert resp.headers["Location"].startswith("https://registry.example.com/v2/repo/blobs/uploads/")


# --- monolithic ---------------------------------------------------------------------------------


async def test_monolithic_post_then_put(client: Client) -> None:
    loc = await open_upload(client, "repo")
    resp = await client.put(loc, params={"digest": sha256(BLOB)}, data=BLOB)
    assert_created(resp, "repo", sha256(BLOB))
    await assert_blob(client, "repo", sha256(BLOB), BLOB)
    # the session is over
    await expect_error(await client.get(loc), 404, "BLOB_UPLOAD_UNKNOWN")


async def test_single_post_with_digest(client: Client) -> None:
    resp = await client.post("/v2/repo/blobs/uploads/", params={"digest": sha256(BLOB)}, data=BLOB)
    assert_created(resp, "repo", sha256(BLOB))
    await assert_blob(client, "repo", sha256(BLOB), BLOB)


async def test_single_post_empty_blob(client: Client) -> None:
    resp = await client.post("/v2/repo/blobs/uploads/", params={"digest": sha256(b"")})
    assert_created(resp, "repo", sha256(b""))
    await assert_blob(client, "repo", sha256(b""), b"")


async def test_single_post_wrong_digest(client: Client) -> None:
    resp = await client.post("/v2/repo/blobs/uploads/", params={"digest": UNKNOWN_DIGEST}, data=BLOB)
    await expect_error(resp, 400, "DIGEST_INVALID")
    for digest in (UNKNOWN_DIGEST, sha256(BLOB)):
        await expect_error(await client.get(f"/v2/repo/blobs/{digest}"), 404, "BLOB_UNKNOWN")
        assert not await exists(client, blob_dir(digest))
    assert not await exists(client, f"/{ROOT}/repositories/repo/_uploads") or not await driver_of(
        client
    ).list(f"/{ROOT}/repositories/repo/_uploads")


async def test_put_of_content_already_stored(client: Client) -> None:
    await push_blob(client, "one", BLOB)
    loc = await open_upload(client, "two")
    resp = await client.put(loc, params={"digest": sha256(BLOB)}, data=BLOB)
    assert_created(resp, "two", sha256(BLOB))
    await assert_blob(client, "two", sha256(BLOB), BLOB)
    await assert_blob(client, "one", sha256(BLOB), BLOB)


# --- chunked ------------------------------------------------------------------------------------


async def test_chunked_upload_with_content_range(client: Client) -> None:
    loc = await open_upload(client, "repo")
    offset = 0
    for chunk in (CHUNK1, CHUNK2):
        end = offset + len(chunk) - 1
        resp = await client.patch(
            loc,
            data=chunk,
            headers={"Content-Range": f"{offset}-{end}", "Content-Type": "application/octet-stream"},
        )
        assert resp.status == 202, await resp.text()
        assert resp.headers["Range"] == f"0-{end}"
        assert resp.headers["Docker-Upload-UUID"] == upload_id(loc)
        assert resp.headers.get("Content-Length", "0") == "0"
        loc = location(resp)
        offset = end + 1
    resp = await client.put(
        loc,
        params={"digest": sha256(BLOB)},
        data=CHUNK3,
        headers={"Content-Range": f"{offset}-{len(BLOB) - 1}"},
    )
    assert_created(resp, "repo", sha256(BLOB))
    await assert_blob(client, "repo", sha256(BLOB), BLOB)


async def test_chunked_upload_then_put_without_body(client: Client) -> None:
    loc = await open_upload(client, "repo")
    resp = await client.patch(loc, data=BLOB, headers={"Content-Range": f"0-{len(BLOB) - 1}"})
    assert resp.status == 202
    resp = await client.put(location(resp), params={"digest": sha256(BLOB)})
    assert_created(resp, "repo", sha256(BLOB))
    await assert_blob(client, "repo", sha256(BLOB), BLOB)


async def test_streamed_patches_without_content_range(client: Client) -> None:
    loc = await open_upload(client, "repo")
    resp = await client.patch(loc, data=CHUNK1)
    assert resp.status == 202
    assert resp.headers["Range"] == f"0-{len(CHUNK1) - 1}"

    async def stream() -> object:
        yield CHUNK2
        yield CHUNK3

    resp = await client.patch(location(resp), data=stream())  # chunked transfer encoding
    assert resp.status == 202, await resp.text()
    assert resp.headers["Range"] == f"0-{len(BLOB) - 1}"
    resp = await client.put(location(resp), params={"digest": sha256(BLOB)})
    assert_created(resp, "repo", sha256(BLOB))
    await assert_blob(client, "repo", sha256(BLOB), BLOB)


# (Content-Range of the second chunk after 10 bytes are held) -> 416
OUT_OF_ORDER = [
    pytest.param("11-25", id="gap"),
    pytest.param("20-34", id="far-gap"),
    pytest.param("5-19", id="overlap"),
    pytest.param("0-14", id="restart"),
    pytest.param("9-23", id="overlap-by-one"),
]


@pytest.mark.parametrize("content_range", OUT_OF_ORDER)
async def test_out_of_order_chunk_is_416_and_upload_survives(
    client: Client, content_range: str
) -> None:
    loc = await open_upload(client, "repo")
    resp = await client.patch(loc, data=CHUNK1, headers={"Content-Range": "0-9"})
    assert resp.status == 202
    loc = location(resp)
    resp = await client.patch(loc, data=CHUNK2, headers={"Content-Range": content_range})
    await expect_error(resp, 416, "RANGE_INVALID")
    # nothing was appended: the session still holds the first chunk and carries on
    resp = await client.get(loc)
    assert resp.status == 204
    assert resp.headers["Range"] == "0-9"
    resp = await client.patch(loc, data=CHUNK2, headers={"Content-Range": "10-24"})
    assert resp.status == 202
    assert resp.headers["Range"] == "0-24"
    resp = await client.put(
        location(resp), params={"digest": sha256(BLOB)}, data=CHUNK3,
        headers={"Content-Range": f"25-{len(BLOB) - 1}"},
    )
    assert_created(resp, "repo", sha256(BLOB))
    await assert_blob(client, "repo", sha256(BLOB), BLOB)


async def test_first_chunk_not_at_zero_is_416(client: Client) -> None:
    loc = await open_upload(client, "repo")
    resp = await client.patch(loc, data=CHUNK2, headers={"Content-Range": "10-24"})
    await expect_error(resp, 416, "RANGE_INVALID")


async def test_final_put_chunk_out_of_order_is_416(client: Client) -> None:
    loc = await open_upload(client, "repo")
    resp = await client.patch(loc, data=CHUNK1, headers={"Content-Range": "0-9"})
    resp = await client.put(
        location(resp), params={"digest": sha256(BLOB)}, data=CHUNK3,
        headers={"Content-Range": f"25-{len(BLOB) - 1}"},
    )
    await expect_error(resp, 416, "RANGE_INVALID")


async def test_content_range_disagrees_with_content_length(client: Client) -> None:
    loc = await open_upload(client, "repo")
    resp = await client.patch(loc, data=CHUNK1, headers={"Content-Range": "0-19"})
    await expect_error(resp, 400, "SIZE_INVALID")


# --- status and cancel --------------------------------------------------------------------------


async def test_status_of_a_fresh_and_a_filled_session(client: Client) -> None:
    loc = await open_upload(client, "repo")
    resp = await client.get(loc)
    assert resp.status == 204
    assert resp.headers["Range"] == "0-0"
    assert resp.headers["Docker-Upload-UUID"] == upload_id(loc)
    assert location(resp).startswith("/v2/repo/blobs/uploads/")
    assert await resp.read() == b""
    resp = await client.patch(loc, data=BLOB)
    resp = await client.get(location(resp))
    assert resp.status == 204
    assert resp.headers["Range"] == f"0-{len(BLOB) - 1}"


async def test_cancel(client: Client) -> None:
    loc = await open_upload(client, "repo")
    await client.patch(loc, data=CHUNK1)
    resp = await client.delete(loc)
    assert resp.status == 204
    await expect_error(await client.get(loc), 404, "BLOB_UPLOAD_UNKNOWN")
    await expect_error(await client.patch(loc, data=CHUNK2), 404, "BLOB_UPLOAD_UNKNOWN")
    await expect_error(
        await client.put(loc, params={"digest": sha256(CHUNK1)}), 404, "BLOB_UPLOAD_UNKNOWN"
    )
    await expect_error(await client.delete(loc), 404, "BLOB_UPLOAD_UNKNOWN")
    assert not await exists(client, f"/{ROOT}/repositories/repo/_uploads/{upload_id(loc)}")


UNKNOWN_SESSIONS = [
    pytest.param(UNKNOWN_UUID, id="well-formed-unknown"),
    pytest.param("not-a-uuid", id="garbage"),
    pytest.param("x" * 300, id="long"),
]


@pytest.mark.parametrize("uuid", UNKNOWN_SESSIONS)
@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
async def test_unknown_session(client: Client, method: str, uuid: str) -> None:
    await push_blob(client, "repo", b"x")
    params = {"digest": sha256(b"")} if method == "PUT" else None
    resp = await client.request(method, f"/v2/repo/blobs/uploads/{uuid}", params=params)
    await expect_error(resp, 404, "BLOB_UPLOAD_UNKNOWN")


async def test_session_of_another_repository(client: Client) -> None:
    loc = await open_upload(client, "one")
    other = loc.replace("/v2/one/", "/v2/two/")
    await expect_error(await client.get(other), 404, "BLOB_UPLOAD_UNKNOWN")
    await expect_error(await client.patch(other, data=BLOB), 404, "BLOB_UPLOAD_UNKNOWN")
    assert (await client.get(loc)).status == 204


# --- completing: digest checks ------------------------------------------------------------------


async def test_put_without_digest_is_400_and_session_survives(client: Client) -> None:
    loc = await open_upload(client, "repo")
    resp = await client.patch(loc, data=BLOB)
    loc = location(resp)
    await expect_error(await client.put(loc), 400, "DIGEST_INVALID")
    await expect_error(await client.put(loc, params={"digest": ""}), 400, "DIGEST_INVALID")
    resp = await client.put(loc, params={"digest": sha256(BLOB)})
    assert_created(resp, "repo", sha256(BLOB))


@pytest.mark.parametrize("digest", ["sha256:abc", "sha256:" + "Z" * 64, "md5:" + "0" * 32])
async def test_put_with_malformed_digest(client: Client, digest: str) -> None:
    loc = await open_upload(client, "repo")
    resp = await client.put(loc, params={"digest": digest}, data=BLOB)
    await expect_error(resp, 400, "DIGEST_INVALID")


async def test_wrong_digest_stores_nothing(
    client: Client, driver_name: str, storage_root: Path
) -> None:
    loc = await open_upload(client, "repo")
    resp = await client.patch(loc, data=CHUNK1)
    resp = await client.put(location(resp), params={"digest": UNKNOWN_DIGEST}, data=CHUNK2)
    await expect_error(resp, 400, "DIGEST_INVALID")
    content = CHUNK1 + CHUNK2
    for digest in (UNKNOWN_DIGEST, sha256(content)):
        await expect_error(await client.get(f"/v2/repo/blobs/{digest}"), 404, "BLOB_UNKNOWN")
        assert not await exists(client, blob_dir(digest))
        assert not await exists(client, f"/{ROOT}/repositories/repo/_layers/sha256/{digest[7:]}")
    # the session is gone (Distribution cancels it on a failed commit)
    assert not await exists(client, f"/{ROOT}/repositories/repo/_uploads/{upload_id(loc)}")
    await expect_error(await client.get(loc), 404, "BLOB_UPLOAD_UNKNOWN")
    if driver_name == "filesystem":
        blobs = storage_root / ROOT / "blobs"
        for digest in (UNKNOWN_DIGEST, sha256(content)):
            hex_ = digest.split(":")[1]
            assert not (blobs / "sha256" / hex_[:2] / hex_).exists()
        assert not (storage_root / ROOT / "repositories/repo/_uploads" / upload_id(loc)).exists()


# --- sha512 -------------------------------------------------------------------------------------


async def test_sha512_with_digest_algorithm(client: Client) -> None:
    loc = await open_upload(client, "repo", **{"digest-algorithm": "sha512"})
    resp = await client.patch(loc, data=CHUNK1, headers={"Content-Range": "0-9"})
    assert resp.status == 202
    resp = await client.put(
        location(resp), params={"digest": sha512(BLOB)}, data=BLOB[10:],
        headers={"Content-Range": f"10-{len(BLOB) - 1}"},
    )
    assert_created(resp, "repo", sha512(BLOB))
    await assert_blob(client, "repo", sha512(BLOB), BLOB)


async def test_sha512_digest_on_a_default_session(client: Client) -> None:
    loc = await open_upload(client, "repo")
    resp = await client.patch(loc, data=CHUNK1)
    resp = await client.put(location(resp), params={"digest": sha512(BLOB)}, data=BLOB[10:])
    assert_created(resp, "repo", sha512(BLOB))
    await assert_blob(client, "repo", sha512(BLOB), BLOB)


async def test_sha256_digest_on_a_sha512_session(client: Client) -> None:
    loc = await open_upload(client, "repo", **{"digest-algorithm": "sha512"})
    resp = await client.put(loc, params={"digest": sha256(BLOB)}, data=BLOB)
    assert_created(resp, "repo", sha256(BLOB))
    await assert_blob(client, "repo", sha256(BLOB), BLOB)


async def test_sha512_single_post(client: Client) -> None:
    resp = await client.post("/v2/repo/blobs/uploads/", params={"digest": sha512(BLOB)}, data=BLOB)
    assert_created(resp, "repo", sha512(BLOB))
    await assert_blob(client, "repo", sha512(BLOB), BLOB)


async def test_sha512_wrong_digest(client: Client) -> None:
    loc = await open_upload(client, "repo", **{"digest-algorithm": "sha512"})
    resp = await client.put(loc, params={"digest": sha512(b"other")}, data=BLOB)
    await expect_error(resp, 400, "DIGEST_INVALID")
    assert not await exists(client, blob_dir(sha512(BLOB)))


# --- cross-repository mount ---------------------------------------------------------------------


async def test_mount_from_another_repository(client: Client) -> None:
    digest = await push_blob(client, "source", BLOB)
    resp = await start_upload(client, "target", mount=digest, **{"from": "source"})
    assert_created(resp, "target", digest)
    await assert_blob(client, "target", digest, BLOB)
    await assert_blob(client, "source", digest, BLOB)


async def test_mount_into_a_repository_that_has_the_blob(client: Client) -> None:
    digest = await push_blob(client, "source", BLOB)
    await push_blob(client, "target", BLOB)
    resp = await start_upload(client, "target", mount=digest, **{"from": "source"})
    assert_created(resp, "target", digest)


async def test_mount_sha512(client: Client) -> None:
    digest = sha512(BLOB)
    resp = await client.post("/v2/source/blobs/uploads/", params={"digest": digest}, data=BLOB)
    assert resp.status == 201
    resp = await start_upload(client, "target", mount=digest, **{"from": "source"})
    assert_created(resp, "target", digest)


async def test_mount_nested_names(client: Client) -> None:
    digest = await push_blob(client, "a/b/source", BLOB)
    resp = await start_upload(client, "c/d/target", mount=digest, **{"from": "a/b/source"})
    assert_created(resp, "c/d/target", digest)


async def test_mount_unknown_blob_opens_an_upload(client: Client) -> None:
    await push_blob(client, "source", b"something")
    resp = await start_upload(client, "target", mount=UNKNOWN_DIGEST, **{"from": "source"})
    assert resp.status == 202
    assert resp.headers["Range"] == "0-0"
    assert resp.headers["Docker-Upload-UUID"]
    resp = await client.put(location(resp), params={"digest": sha256(BLOB)}, data=BLOB)
    assert_created(resp, "target", sha256(BLOB))


async def test_mount_from_repository_without_the_blob_opens_an_upload(client: Client) -> None:
    digest = await push_blob(client, "holder", BLOB)
    await push_blob(client, "source", b"other")
    resp = await start_upload(client, "target", mount=digest, **{"from": "source"})
    assert resp.status == 202
    assert location(resp).startswith("/v2/target/blobs/uploads/")
    await expect_error(await client.get(f"/v2/target/blobs/{digest}"), 404, "BLOB_UNKNOWN")


async def test_mount_from_unknown_repository_opens_an_upload(client: Client) -> None:
    digest = await push_blob(client, "holder", BLOB)
    resp = await start_upload(client, "target", mount=digest, **{"from": "nowhere"})
    assert resp.status == 202


async def test_mount_from_malformed_name_opens_an_upload(client: Client) -> None:
    # spec "Mounting a blob from another repository": a registry unable to mount SHOULD answer
    # 202 with a new session; Distribution 2.8 ignores a `from` that does not parse.
    digest = await push_blob(client, "holder", BLOB)
    resp = await start_upload(client, "target", mount=digest, **{"from": "Not/Valid"})
    assert resp.status == 202


async def test_mount_without_from_is_automatic(client: Client) -> None:
    digest = await push_blob(client, "holder", BLOB)
    resp = await start_upload(client, "target", mount=digest)
    assert_created(resp, "target", digest)
    await assert_blob(client, "target", digest, BLOB)


async def test_mount_without_from_of_unknown_blob_opens_an_upload(client: Client) -> None:
    resp = await start_upload(client, "target", mount=UNKNOWN_DIGEST)
    assert resp.status == 202


# --- concurrency --------------------------------------------------------------------------------


async def test_concurrent_uploads_of_the_same_blob(
    client: Client, driver_name: str, storage_root: Path
) -> None:
    data = BLOB * 5000
    digest = sha256(data)
    names = ["one", "two", "three/nested"]
    locs = [await open_upload(client, name) for name in names]
    for loc in locs:
        resp = await client.patch(loc, data=data[:1000])
        assert resp.status == 202
    results = await asyncio.gather(
        *(client.put(loc, params={"digest": digest}, data=data[1000:]) for loc in locs)
    )
    for name, resp in zip(names, results, strict=True):
        assert_created(resp, name, digest)
    for name in names:
        await assert_blob(client, name, digest, data)
    assert await driver_of(client).list(blob_dir(digest)) == ["data"]
    if driver_name == "filesystem":
        hex_ = digest.split(":")[1]
        stored = list((storage_root / ROOT / "blobs").rglob("data"))
        assert [p.parent.name for p in stored] == [hex_]
        for name in names:
            uploads = storage_root / ROOT / "repositories" / name / "_uploads"
            assert not uploads.exists() or not any(uploads.iterdir())
