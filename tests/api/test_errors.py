"""Malformed requests: each answers with the OCI error body, the right status, never a 500."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.api.conftest import Client
from tests.api.helpers import (
    API_VERSION,
    OCI_MANIFEST,
    UNKNOWN_DIGEST,
    expect_error,
    open_upload,
    push_image,
    raw_request,
    sha256,
)

BAD = "sha256:zz"


@pytest.fixture
async def ctx(client: Client) -> dict[str, Any]:
    digest, body = await push_image(client, "repo", "v1", [b"layer"])
    return {"manifest": digest, "body": body, "blob": sha256(b"layer"),
            "upload": await open_upload(client, "repo")}


# (method, path template, headers, body, status, code)
MALFORMED: list[Any] = [
    ("GET", f"/v2/repo/blobs/{BAD}", {}, b"", 400, "DIGEST_INVALID"),
    ("DELETE", f"/v2/repo/blobs/{BAD}", {}, b"", 400, "DIGEST_INVALID"),
    ("GET", "/v2/repo/blobs/{blob}", {"Range": "bytes=100-200"}, b"", 416, "RANGE_INVALID"),
    ("GET", "/v2/repo/blobs/{blob}", {"Range": "bytes=oops"}, b"", 416, "RANGE_INVALID"),
    ("GET", f"/v2/repo/blobs/{UNKNOWN_DIGEST}", {}, b"", 404, "BLOB_UNKNOWN"),
    ("GET", f"/v2/repo/manifests/{BAD}", {}, b"", 400, "DIGEST_INVALID"),
    ("PUT", f"/v2/repo/manifests/{BAD}", {"Content-Type": OCI_MANIFEST}, b"{}", 400,
     "DIGEST_INVALID"),
    ("DELETE", f"/v2/repo/manifests/{BAD}", {}, b"", 400, "DIGEST_INVALID"),
    ("PUT", "/v2/repo/manifests/v2", {"Content-Type": OCI_MANIFEST}, b"\xff\xfe", 400,
     "MANIFEST_INVALID"),
    ("PUT", "/v2/repo/manifests/v2", {"Content-Type": OCI_MANIFEST}, b"{}", 400,
     "MANIFEST_INVALID"),
    ("PUT", "/v2/repo/manifests/v2", {"Content-Type": OCI_MANIFEST}, b"null", 400,
     "MANIFEST_INVALID"),
    ("PUT", "/v2/repo/manifests/v2", {"Content-Type": OCI_MANIFEST},
     b'{"schemaVersion":2,"config":{"mediaType":"a/b","digest":"sha256:' + b"0" * 64
     + b'","size":-1},"layers":[]}', 400, "MANIFEST_INVALID"),
    ("PUT", "/v2/repo/manifests/" + "t" * 129, {"Content-Type": OCI_MANIFEST}, b"{body}", 400,
     "TAG_INVALID"),
    ("PUT", "/v2/repo/manifests/{manifest}?tag=-x", {"Content-Type": OCI_MANIFEST}, b"{body}",
     400, "TAG_INVALID"),
    ("GET", "/v2/repo/manifests/nope", {"Accept": OCI_MANIFEST}, b"", 404, "MANIFEST_UNKNOWN"),
    ("POST", f"/v2/repo/blobs/uploads/?digest={BAD}", {}, b"x", 400, "DIGEST_INVALID"),
    ("POST", "/v2/repo/blobs/uploads/?digest-algorithm=md5", {}, b"", 400, "DIGEST_INVALID"),
    ("PATCH", "{upload}", {"Content-Range": "garbage"}, b"x", 416, "RANGE_INVALID"),
    ("PATCH", "{upload}", {"Content-Range": "5-2"}, b"x", 416, "RANGE_INVALID"),
    ("PATCH", "{upload}", {"Content-Range": "3-3"}, b"x", 416, "RANGE_INVALID"),
    ("PATCH", "{upload}", {"Content-Range": "0-9"}, b"x", 400, "SIZE_INVALID"),
    ("PUT", "{upload}", {}, b"x", 400, "DIGEST_INVALID"),
    ("PUT", "{upload}?digest=" + BAD, {}, b"x", 400, "DIGEST_INVALID"),
    ("PUT", "{upload}?digest=" + UNKNOWN_DIGEST, {}, b"x", 400, "DIGEST_INVALID"),
    ("GET", "/v2/repo/blobs/uploads/nope", {}, b"", 404, "BLOB_UPLOAD_UNKNOWN"),
    ("GET", "/v2/repo/tags/list?n=x", {}, b"", 400, "PAGINATION_NUMBER_INVALID"),
    ("GET", "/v2/_catalog?n=-5", {}, b"", 400, "PAGINATION_NUMBER_INVALID"),
    ("GET", "/v2/absent/tags/list", {}, b"", 404, "NAME_UNKNOWN"),
    ("GET", "/v2/Repo/tags/list", {}, b"", 400, "NAME_INVALID"),
    ("GET", "/v2/repo/referrers/notadigest", {}, b"", 400, "DIGEST_INVALID"),
]


@pytest.mark.parametrize(("method", "template", "headers", "data", "status", "code"), MALFORMED)
async def test_malformed_requests(
    client: Client, ctx: dict[str, Any], method: str, template: str, headers: dict[str, str],
    data: bytes, status: int, code: str,
) -> None:
    body = ctx["body"] if data == b"{body}" else data
    resp = await client.request(method, template.format(**ctx), headers=headers, data=body)
    parsed = await expect_error(resp, status, code)
    assert resp.headers["Content-Type"].startswith("application/json")
    assert set(parsed) == {"errors"}
    for entry in parsed["errors"]:
        assert set(entry) <= {"code", "message", "detail"}


# (method, path template, allowed methods) -> 405 UNSUPPORTED
NOT_ALLOWED: list[Any] = [
    ("POST", "/v2/", {"GET", "HEAD"}),
    ("PUT", "/v2/", {"GET", "HEAD"}),
    ("DELETE", "/v2/", {"GET", "HEAD"}),
    ("POST", "/v2/_catalog", {"GET"}),
    ("DELETE", "/v2/_catalog", {"GET"}),
    ("POST", "/v2/repo/tags/list", {"GET"}),
    ("PUT", "/v2/repo/tags/list", {"GET"}),
    ("DELETE", "/v2/repo/tags/list", {"GET"}),
    ("POST", "/v2/repo/manifests/v1", {"GET", "HEAD", "PUT", "DELETE"}),
    ("PATCH", "/v2/repo/manifests/v1", {"GET", "HEAD", "PUT", "DELETE"}),
    ("POST", "/v2/repo/blobs/{blob}", {"GET", "HEAD", "DELETE"}),
    ("PUT", "/v2/repo/blobs/{blob}", {"GET", "HEAD", "DELETE"}),
    ("PATCH", "/v2/repo/blobs/{blob}", {"GET", "HEAD", "DELETE"}),
    ("GET", "/v2/repo/blobs/uploads/", {"POST"}),
    ("PUT", "/v2/repo/blobs/uploads/", {"POST"}),
    ("DELETE", "/v2/repo/blobs/uploads/", {"POST"}),
    ("POST", "{upload}", {"GET", "PATCH", "PUT", "DELETE"}),
    ("HEAD", "{upload}", {"GET", "PATCH", "PUT", "DELETE"}),
    ("POST", "/v2/repo/referrers/{manifest}", {"GET"}),
    ("PUT", "/v2/repo/referrers/{manifest}", {"GET"}),
    ("DELETE", "/v2/repo/referrers/{manifest}", {"GET"}),
]


@pytest.mark.parametrize(("method", "template", "allowed"), NOT_ALLOWED)
async def test_method_not_allowed(
    client: Client, ctx: dict[str, Any], method: str, template: str, allowed: set[str]
) -> None:
    resp = await client.request(method, template.format(**ctx))
    if method == "HEAD":
        assert resp.status == 405
        return
    await expect_error(resp, 405, "UNSUPPORTED")


@pytest.mark.parametrize(("method", "template", "allowed"), NOT_ALLOWED[:1] + NOT_ALLOWED[8:9])
async def test_method_not_allowed_lists_allowed_methods(
    client: Client, ctx: dict[str, Any], method: str, template: str, allowed: set[str]
) -> None:
    # RFC 9110 15.5.6: "The origin server MUST generate an Allow header field in a 405 response
    # containing a list of the target resource's currently supported methods." Distribution's
    # routes (gorilla handlers.MethodHandler) answer 405 with `Allow`.
    resp = await client.request(method, template.format(**ctx))
    assert resp.status == 405
    got = {m.strip() for m in resp.headers.get("Allow", "").split(",") if m.strip()}
    assert got >= allowed


# byte-exact request targets that a client library would refuse or normalise
RAW: list[Any] = [
    ("GET", "/v2/repo/manifests/%ff", 404),  # no valid tag: no manifest (MANIFEST_UNKNOWN)
    ("GET", "/v2/repo/blobs/sha256:%00", 400),
    ("GET", "/v2/repo/tags/list?n=%ff", 400),
    ("GET", "/v2/repo/tags/list?n=99999999999999999999999", 400),  # beyond int64, as Go
    ("GET", "/v2/repo/tags/list?last=%ff", 200),
    ("GET", "/v2/" + "a/" * 200 + "tags/list", 400),
    ("GET", "/v2/repo/blobs/" + "sha256:" + "0" * 5000, 400),
    ("PUT", "/v2/repo/manifests/" + "t" * 5000, 400),
    ("GET", "/v2/repo/referrers/sha256:" + "0" * 64 + "?artifactType=%ff", 200),
]


@pytest.mark.parametrize(("method", "target", "status"), RAW)
async def test_raw_requests_never_500(
    client: Client, ctx: dict[str, Any], method: str, target: str, status: int
) -> None:
    code, headers, body = await raw_request(client, method, target)
    assert code == status, body[:300]
    assert headers.get(API_VERSION[0].lower()) == API_VERSION[1]
    if code >= 400:
        assert orjson.loads(body)["errors"][0]["code"]
