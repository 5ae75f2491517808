"""The `handler` and `method` labels of every route, as Distribution has them, refusals
included: a 401, a 405 and a malformed name carry the route asked for, never `other`."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastreg.server.metrics import METRICS
from tests.api.conftest import Client, MakeClient
from tests.api.helpers import sha256
from tests.auth.tokens import write_htpasswd
from tests.metrics import parse, samples

DIGEST = sha256(b"x")
ROUTES = [  # method, path, Distribution's handler
    ("GET", "/v2/", "base"),
    ("GET", "/v2/_catalog", "catalog"),
    ("GET", "/v2/r/tags/list", "tags"),
    ("GET", "/v2/r/manifests/latest", "manifest"),
    ("HEAD", f"/v2/r/manifests/{DIGEST}", "manifest"),
    ("POST", "/v2/r/blobs/uploads/", "blob_upload"),
    ("PATCH", "/v2/r/blobs/uploads/some-uuid", "blob_upload_chunk"),
    ("GET", f"/v2/r/blobs/{DIGEST}", "blob"),
    ("DELETE", f"/v2/r/blobs/{DIGEST}", "blob"),
]


def requests_total(client: Client) -> dict:
    return samples(parse(client.app[METRICS].render().decode()), "registry_http_requests_total")


@pytest.fixture
def driver_name() -> str:
    return "inmemory"


@pytest.mark.parametrize(("method", "path", "handler"), ROUTES)
async def test_a_refused_request_carries_its_route(
    make_client: MakeClient, tmp_path: Path, method: str, path: str, handler: str
) -> None:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "wonderland"})
    client = await make_client(auth__htpasswd__realm="r", auth__htpasswd__path=htpasswd)
    resp = await client.request(method, path)
    assert resp.status == 401
    labels = (("code", "401"), ("handler", handler), ("method", method.lower()))
    assert requests_total(client) == {labels: 1}


async def test_labels_without_auth(make_client: MakeClient) -> None:
    client = await make_client()
    assert (await client.get("/v2/")).status == 200
    assert (await client.put("/v2/")).status == 405  # a method the route lacks
    assert (await client.get("/v2/UPPER/tags/list")).status == 400  # a malformed name
    assert (await client.get("/v2/r/blobs/uploads/nope")).status == 404
    assert (await client.get("/nothing/here")).status == 404  # no route: not Distribution's
    assert requests_total(client) == {
        (("code", "200"), ("handler", "base"), ("method", "get")): 1,
        (("code", "405"), ("handler", "base"), ("method", "put")): 1,
        (("code", "400"), ("handler", "tags"), ("method", "get")): 1,
        (("code", "404"), ("handler", "blob_upload_chunk"), ("method", "get")): 1,
    }
    families = parse(client.app[METRICS].render().decode())
    assert samples(families, "fastreg_http_unrouted_requests_total") == {
        (("code", "404"), ("method", "get")): 1}
