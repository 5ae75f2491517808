"""The API on GCS (fake-gcs-server) where it differs from local disks: V4 signed URL redirects
(the signature checked here against the service account's public key, since the emulator does
not), the JWT grant behind every request, chunked uploads across instances, 503 on a dead
endpoint, configuration errors naming the key."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from fastreg.config import ConfigError
from fastreg.storage.factory import create_driver
from tests.api.conftest import MakeClient
from tests.api.helpers import location, push_blob, sha256
from tests.fakegcs import CLIENT_EMAIL, FakeGCS, TokenServer

pytestmark = pytest.mark.gcs
MIB = 1024 * 1024


@pytest.fixture
def driver_name() -> str:
    return "gcs"


async def test_blob_get_redirects_to_a_v4_signed_url(
    make_client: MakeClient, fakegcs: FakeGCS, gcs_bucket: str, gcs_keyfile: Path,
    gcs_token_server: TokenServer,
) -> None:  # fmt: skip
    params = fakegcs.parameters(gcs_bucket, keyfile=str(gcs_keyfile))
    client = await make_client(storage__gcs=params, storage__redirect__disable=False)
    data = os.urandom(100_000)
    digest = await push_blob(client, "repo", data)
    resp = await client.get(f"/v2/repo/blobs/{digest}", allow_redirects=False)
    assert resp.status == 307
    url = resp.headers["Location"]
    async with (
        aiohttp.ClientSession() as http,
        http.get(url, headers={"Range": "bytes=10-19"}) as got,
    ):
        assert (got.status, await got.read()) == (206, data[10:20])
    # the signature, rebuilt from Google's V4 rules, verifies with the key's public half
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    signature = bytes.fromhex(query.pop("X-Goog-Signature"))
    assert query["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    assert query["X-Goog-Credential"].startswith(f"{CLIENT_EMAIL}/")
    assert query["X-Goog-SignedHeaders"] == "host" and int(query["X-Goog-Expires"]) == 1200
    canonical_query = parts.query.split("&X-Goog-Signature=")[0]
    request = f"GET\n{parts.path}\n{canonical_query}\nhost:{parts.netloc}\n\nhost\nUNSIGNED-PAYLOAD"
    scope = query["X-Goog-Credential"].split("/", 1)[1]
    to_sign = "\n".join(["GOOG4-RSA-SHA256", query["X-Goog-Date"], scope,
                         hashlib.sha256(request.encode()).hexdigest()])  # fmt: skip
    gcs_token_server.key.public_key().verify(
        signature, to_sign.encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    assert parts.path.startswith(f"/{gcs_bucket}/docker/registry/v2/blobs/sha256/")
    grant = gcs_token_server.grants[-1]
    assert grant["iss"] == CLIENT_EMAIL and grant["scope"].endswith("devstorage.full_control")


async def test_anonymous_driver_proxies(
    make_client: MakeClient, fakegcs: FakeGCS, gcs_bucket: str
) -> None:
    anonymous = fakegcs.parameters(gcs_bucket)  # no key: nothing to sign with
    client = await make_client(storage__gcs=anonymous, storage__redirect__disable=False)
    data = os.urandom(70_000)
    digest = await push_blob(client, "repo", data)
    resp = await client.get(f"/v2/repo/blobs/{digest}", allow_redirects=False)
    assert (resp.status, await resp.read()) == (200, data)


async def test_chunked_upload_across_two_registries(make_client: MakeClient) -> None:
    a, b = await make_client(), await make_client()
    data = os.urandom(13 * MIB + 3)
    url = location(await a.post("/v2/repo/blobs/uploads/"))
    offset = 0
    for i, size in enumerate([1, 6 * MIB, 7, 7 * MIB - 8]):  # the 3rd composes, the 2nd re-sends
        headers = {"Content-Range": f"{offset}-{offset + size - 1}",
                   "Content-Type": "application/octet-stream"}  # fmt: skip
        resp = await (a, b)[i % 2].patch(url, data=data[offset : offset + size], headers=headers)
        assert resp.status == 202, await resp.text()
        offset += size
        assert resp.headers["Range"] == f"0-{offset - 1}"
        url = location(resp)
    digest = sha256(data)
    resp = await b.put(url, params={"digest": digest}, data=data[offset:])
    assert resp.status == 201, await resp.text()
    assert await (await a.get(f"/v2/repo/blobs/{digest}")).read() == data


async def test_unreachable_storage_is_503(make_client: MakeClient) -> None:
    from fastreg.api.context import REGISTRY

    client = await make_client()
    digest = await push_blob(client, "repo", b"x" * 1000)
    dead = create_driver("gcs", {"bucket": "b", "endpoint": "http://127.0.0.1:9",
                                      "maxretries": 0})  # fmt: skip
    inner: Any = client.app[REGISTRY].driver
    inner.inner, real = dead, inner.inner
    try:
        resp = await client.get(f"/v2/repo/blobs/{digest}")
        body = await resp.json()
        assert resp.status == 503 and body["errors"][0]["code"] == "UNAVAILABLE", body
    finally:
        inner.inner = real
        await dead.close()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "storage.gcs.bucket: required"),
        ({"bucket": "b", "chunksize": 300_000}, "storage.gcs.chunksize: must be a multiple"),
        ({"bucket": "b", "keyfile": "/nonexistent.json"}, "storage.gcs.keyfile: cannot read"),
        ({"bucket": "b", "credentials": {"type": "authorized_user"}}, "not a service account"),
    ],
)
def test_configuration_errors_name_the_key(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create_driver("gcs", params)
