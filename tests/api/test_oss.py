"""The API on the oss driver (OSS's S3-compatible API, here SeaweedFS, not Alibaba Cloud): blob
pulls redirected to a presigned URL, a dead endpoint as 503, a wrong secret stopping the start."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from fastreg.config import parse_config
from fastreg.server.app import create_app
from fastreg.storage.base import StorageError
from fastreg.storage.factory import create_driver
from tests.api.conftest import MakeClient, config_text
from tests.api.helpers import push_blob
from tests.oss import oss_parameters
from tests.seaweed import SeaweedFS

pytestmark = pytest.mark.oss


@pytest.fixture
def driver_name() -> str:
    return "oss"


async def test_blob_get_redirects_to_a_presigned_url(
    make_client: MakeClient, seaweedfs: SeaweedFS
) -> None:
    client = await make_client(storage__redirect__disable=False)
    data = os.urandom(70_000)
    digest = await push_blob(client, "repo", data)
    resp = await client.get(f"/v2/repo/blobs/{digest}", allow_redirects=False)
    assert resp.status == 307, await resp.text()
    url = resp.headers["Location"]
    assert url.startswith(seaweedfs.endpoint + "/")  # path-style on a non-OSS endpoint
    async with aiohttp.ClientSession() as http, http.get(url, headers={"Range": "bytes=5-9"}) as got:
        assert (got.status, await got.read()) == (206, data[5:10])


async def test_unreachable_endpoint_is_503(make_client: MakeClient, seaweedfs: SeaweedFS) -> None:
    client = await make_client()
    digest = await push_blob(client, "repo", b"y" * 1000)
    dead = create_driver("oss", {**oss_parameters(seaweedfs, "b"), "endpoint": "127.0.0.1:9"})
    from fastreg.api.context import REGISTRY

    inner: Any = client.app[REGISTRY].driver
    inner.inner, real = dead, inner.inner
    try:
        resp = await client.get(f"/v2/repo/blobs/{digest}")
        body = await resp.json()
        assert resp.status == 503 and body["errors"][0]["code"] == "UNAVAILABLE", body
    finally:
        inner.inner = real
        await dead.close()


def test_wrong_secret_stops_the_start(seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Path) -> None:
    params = oss_parameters(seaweedfs, s3_bucket, accesskeysecret="wrong-secret")
    config = parse_config(config_text(tmp_path, "oss", storage__oss=params))

    async def start() -> None:
        runner = web.AppRunner(create_app(config))
        try:
            await runner.setup()
        finally:
            await runner.cleanup()

    with pytest.raises(StorageError, match="not usable.*secret key does not match"):
        asyncio.run(start())
