"""The API on Azure (Azurite) where it differs from local disks: SAS redirects, chunked uploads
across registry instances staged as blocks, a dead endpoint as 503, a wrong key stopping the start."""

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
from tests.api.helpers import location, push_blob, sha256
from tests.azurite import ACCOUNT_KEY, Azurite

pytestmark = pytest.mark.azure
MIB = 1024 * 1024


@pytest.fixture
def driver_name() -> str:
    return "azure"


async def test_blob_get_redirects_to_a_sas_url(make_client: MakeClient, azurite: Azurite) -> None:
    client = await make_client(storage__redirect__disable=False)
    data = os.urandom(100_000)
    digest = await push_blob(client, "repo", data)
    resp = await client.get(f"/v2/repo/blobs/{digest}", allow_redirects=False)
    assert resp.status == 307
    url = resp.headers["Location"]
    assert url.startswith(azurite.service_url + "/") and "sig=" in url and "sp=r" in url
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers={"Range": "bytes=10-19"}) as got:
            assert (got.status, await got.read()) == (206, data[10:20])
        async with http.get(url.replace("sig=", "sig=x")) as got:
            assert got.status == 403  # the signature is checked: it is not an open URL


async def test_chunked_upload_across_two_registries(make_client: MakeClient) -> None:
    a, b = await make_client(), await make_client()
    data = os.urandom(9 * MIB + 3)
    url = location(await a.post("/v2/repo/blobs/uploads/"))
    offset = 0
    for i, size in enumerate([1, 5 * MIB, 7, 4 * MIB - 8]):
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


async def test_unreachable_storage_is_503(make_client: MakeClient, azurite: Azurite) -> None:
    client = await make_client()
    digest = await push_blob(client, "repo", b"x" * 1000)
    dead = {"accountname": "devstoreaccount1", "accountkey": ACCOUNT_KEY, "container": "c",
            "serviceurl": "http://127.0.0.1:9/devstoreaccount1", "maxretries": 0}  # fmt: skip

    driver = create_driver("azure", dead)
    from fastreg.api.context import REGISTRY

    registry = client.app[REGISTRY]
    inner: Any = registry.driver
    inner.inner, real = driver, inner.inner  # the instrumented wrapper talks to a closed port
    try:
        resp = await client.get(f"/v2/repo/blobs/{digest}")
        body = await resp.json()
        assert resp.status == 503 and body["errors"][0]["code"] == "UNAVAILABLE", body
    finally:
        inner.inner = real
        await driver.close()


def test_wrong_account_key_stops_the_start(azurite: Azurite, azure_container: str,
                                           tmp_path: Path) -> None:  # fmt: skip
    params = azurite.parameters(azure_container, accountkey="d3Jvbmc=")
    config = parse_config(config_text(tmp_path, "azure", storage__azure=params))

    async def start() -> None:
        runner = web.AppRunner(create_app(config))
        try:
            await runner.setup()
        finally:
            await runner.cleanup()

    with pytest.raises(StorageError, match="not usable.*accountname and accountkey"):
        asyncio.run(start())
