"""end-1 `/v2/` and the headers every response carries (errors and unknown routes included)."""

from __future__ import annotations

import pytest

from tests.api.conftest import Client, MakeClient
from tests.api.helpers import API_VERSION, UNKNOWN_DIGEST, expect_error, push_blob

# (method, path, expected status): a sample of every kind of answer the API gives
EVERY_KIND_OF_RESPONSE = [
    ("GET", "/v2/", 200),
    ("HEAD", "/v2/", 200),
    ("GET", "/v2/_catalog", 200),
    ("GET", "/v2/present/blobs/{digest}", 200),
    ("HEAD", "/v2/present/blobs/{digest}", 200),
    ("GET", f"/v2/present/blobs/{UNKNOWN_DIGEST}", 404),
    ("HEAD", f"/v2/present/blobs/{UNKNOWN_DIGEST}", 404),
    ("GET", "/v2/present/blobs/sha256:nothex", 400),
    ("GET", "/v2/absent/tags/list", 404),
    ("GET", "/v2/absent/manifests/latest", 404),
    ("GET", "/v2/UPPER/tags/list", 400),
    ("POST", "/v2/present/blobs/uploads/", 202),
    ("GET", "/v2/nothing-here-at-all", 404),
    ("GET", "/v2/present/unknown-endpoint/x", 404),
    ("POST", "/v2/present/tags/list", 405),
]


async def test_version_check(client: Client) -> None:
    resp = await client.get("/v2/")
    assert resp.status == 200
    assert resp.headers[API_VERSION[0]] == API_VERSION[1]
    assert resp.headers["Content-Type"].startswith("application/json")
    assert await resp.json() == {}


async def test_version_check_head_has_no_body(client: Client) -> None:
    resp = await client.head("/v2/")
    assert resp.status == 200
    assert resp.headers[API_VERSION[0]] == API_VERSION[1]
    assert await resp.read() == b""


async def test_v2_without_slash_redirects_to_v2(client: Client) -> None:
    resp = await client.get("/v2", allow_redirects=False)
    assert resp.status in (301, 308)
    assert resp.headers["Location"].endswith("/v2/")
    assert resp.headers[API_VERSION[0]] == API_VERSION[1]


@pytest.mark.parametrize(("method", "path", "status"), EVERY_KIND_OF_RESPONSE)
async def test_api_version_header_on_every_response(
    make_client: MakeClient, method: str, path: str, status: int
) -> None:
    client = await make_client(http__headers={"X-Content-Type-Options": ["nosniff"]})
    digest = await push_blob(client, "present", b"base")
    resp = await client.request(method, path.format(digest=digest), allow_redirects=False)
    assert resp.status == status, await resp.text()
    assert resp.headers.get(API_VERSION[0]) == API_VERSION[1]
    assert resp.headers.get("X-Content-Type-Options") == "nosniff"


@pytest.mark.parametrize("path", ["/v2/nothing-here-at-all", "/v2/present/unknown-endpoint/x"])
async def test_unknown_route_is_404_with_error_body(client: Client, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 404
    body = await resp.json(content_type=None)
    assert body["errors"][0]["code"]


async def test_configured_headers_with_several_values(make_client: MakeClient) -> None:
    client = await make_client(
        http__headers={"X-Frame-Options": ["DENY"], "X-Multi": ["one", "two"]}
    )
    for resp in (await client.get("/v2/"), await client.get("/v2/absent/tags/list")):
        assert resp.headers.get("X-Frame-Options") == "DENY"
        assert resp.headers.getall("X-Multi") == ["one", "two"]


async def test_error_response_on_v2_unknown_repo(client: Client) -> None:
    await expect_error(await client.get("/v2/absent/tags/list"), 404, "NAME_UNKNOWN")
