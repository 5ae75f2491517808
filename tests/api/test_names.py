"""Repository names and tags per the spec grammar: 400 NAME_INVALID / TAG_INVALID, never 500,
never a path on disk. Requests go out byte-exact (no client-side URL normalisation)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.api.conftest import Client
from tests.api.helpers import (
    API_VERSION,
    OCI_MANIFEST,
    UNKNOWN_DIGEST,
    push_blob,
    push_image,
    put_manifest,
    raw_request,
    sha256,
)

LONG_255 = "/".join(["a" * 63] * 4)  # 4*63 + 3 = 255
assert len(LONG_255) == 255

VALID_NAMES = [
    "a", "0", "repo", "a/b/c", "library/ubuntu", "a.b", "a_b", "a__b", "a-b", "a---b",
    "a-b/c.d_e/f__g", "x1/2y/3", LONG_255,
]

# raw name as it appears in the request target
INVALID_NAMES = [
    pytest.param("UPPER", id="uppercase"),
    pytest.param("Repo/lower", id="uppercase-component"),
    pytest.param("a..b", id="double-dot"),
    pytest.param("..", id="dotdot"),
    pytest.param("a/../b", id="dotdot-component"),
    pytest.param("a/./b", id="dot-component"),
    pytest.param("../../etc", id="traversal"),
    pytest.param("/a", id="leading-slash"),
    pytest.param("-a", id="leading-dash"),
    pytest.param("_a", id="leading-underscore"),
    pytest.param(".a", id="leading-dot"),
    pytest.param("a-", id="trailing-dash"),
    pytest.param("a//b", id="double-slash"),
    pytest.param("a/", id="trailing-slash"),
    pytest.param("a___b", id="triple-underscore"),
    pytest.param("a%2Fb", id="percent-encoded-slash"),
    pytest.param("a%2fb", id="percent-encoded-slash-lower"),
    pytest.param("a%20b", id="space"),
    pytest.param("a%00b", id="nul"),
    pytest.param("a" * 256, id="256-chars"),
    pytest.param(LONG_255 + "b", id="256-chars-nested"),
    pytest.param("%2e%2e/x", id="encoded-dotdot"),
]

# (method, path template with {name})
ENDPOINTS = [
    ("GET", "/v2/{name}/tags/list"),
    ("GET", "/v2/{name}/manifests/latest"),
    ("HEAD", "/v2/{name}/manifests/latest"),
    ("PUT", "/v2/{name}/manifests/latest"),
    ("DELETE", "/v2/{name}/manifests/latest"),
    ("GET", f"/v2/{{name}}/blobs/{UNKNOWN_DIGEST}"),
    ("DELETE", f"/v2/{{name}}/blobs/{UNKNOWN_DIGEST}"),
    ("POST", "/v2/{name}/blobs/uploads/"),
    ("GET", "/v2/{name}/blobs/uploads/3f2a6c1e-0000-4000-8000-000000000000"),
    ("GET", f"/v2/{{name}}/referrers/{UNKNOWN_DIGEST}"),
]


@pytest.mark.parametrize("name", VALID_NAMES)
async def test_valid_names(client: Client, name: str) -> None:
    status, _, body = await raw_request(client, "GET", f"/v2/{name}/tags/list")
    assert status == 404, body
    assert orjson.loads(body)["errors"][0]["code"] == "NAME_UNKNOWN"
    digest = await push_blob(client, name, b"content")
    resp = await client.get(f"/v2/{name}/blobs/{digest}")
    assert resp.status == 200
    await push_image(client, name, "t")
    status, _, body = await raw_request(client, "GET", f"/v2/{name}/tags/list")
    assert status == 200
    assert orjson.loads(body) == {"name": name, "tags": ["t"]}


@pytest.mark.parametrize(("method", "template"), ENDPOINTS)
@pytest.mark.parametrize("name", INVALID_NAMES)
async def test_invalid_names(
    client: Client, storage_root: Path, name: str, method: str, template: str
) -> None:
    status, headers, body = await raw_request(client, method, template.format(name=name))
    assert status == 400, (status, body[:300])
    assert headers.get(API_VERSION[0].lower()) == API_VERSION[1]
    if method != "HEAD":
        assert orjson.loads(body)["errors"][0]["code"] == "NAME_INVALID"
    # nothing was created anywhere
    if storage_root.exists():
        assert not any(p.is_file() for p in storage_root.rglob("*"))


@pytest.mark.parametrize("name", INVALID_NAMES)
async def test_invalid_name_never_reaches_another_repository(client: Client, name: str) -> None:
    # a name that a normalising server would turn into a valid one must not read that one
    for target in ("b", "a", "x", "etc", "a/b", "a b"):
        if " " not in target:
            await push_image(client, target, "latest")
    status, _, body = await raw_request(
        client, "GET", f"/v2/{name}/manifests/latest", {"Accept": OCI_MANIFEST})
    assert status == 400, (status, body[:300])


INVALID_TAGS = [
    pytest.param("a" * 129, id="129-chars"),
    pytest.param(".dot", id="leading-dot"),
    pytest.param("-dash", id="leading-dash"),
    pytest.param("a%2Fb", id="encoded-slash"),
    pytest.param("a%20b", id="space"),
    pytest.param("t%C3%A9", id="non-ascii"),
]


@pytest.mark.parametrize("tag", INVALID_TAGS)
async def test_invalid_tags_on_put(client: Client, tag: str) -> None:
    _, body = await push_image(client, "repo", None)
    status, _, resp = await raw_request(
        client, "PUT", f"/v2/repo/manifests/{tag}", {"Content-Type": OCI_MANIFEST}, body)
    assert status == 400, resp[:300]
    assert orjson.loads(resp)["errors"][0]["code"] == "TAG_INVALID"


@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE"])
@pytest.mark.parametrize("tag", [pytest.param(".INVALID_MANIFEST_NAME", id="conformance"),
                                 *INVALID_TAGS])
async def test_invalid_tags_elsewhere_name_no_manifest(
    client: Client, method: str, tag: str
) -> None:
    # the spec: a manifest not found MUST be 404; Distribution's route grammar answers 404 too
    await push_image(client, "repo", "v1")
    status, _, resp = await raw_request(
        client, method, f"/v2/repo/manifests/{tag}", {"Accept": OCI_MANIFEST})
    assert status == 404, resp[:300]
    if method != "HEAD":
        assert orjson.loads(resp)["errors"][0]["code"] == "MANIFEST_UNKNOWN"


async def test_tag_of_128_chars(client: Client) -> None:
    digest, body = await push_image(client, "repo", None)
    resp = await put_manifest(client, "repo", "t" * 128, body)
    assert resp.status == 201
    assert resp.headers["Docker-Content-Digest"] == sha256(body) == digest
