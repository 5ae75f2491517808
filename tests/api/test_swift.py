"""The API on Swift where it differs from local disks: temp URL redirects, chunked uploads across
registry instances written as DLO segments, a dead Swift as 503, a wrong key stopping the start."""

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
from tests.swiftserver import SwiftServer

pytestmark = pytest.mark.swift
MIB = 1024 * 1024


@pytest.fixture
def driver_name() -> str:
    return "swift"


async def test_blob_get_redirects_to_a_temp_url(
    make_client: MakeClient, swift_server: SwiftServer
) -> None:
    client = await make_client(storage__redirect__disable=False)
    data = os.urandom(100_000)
    digest = await push_blob(client, "repo", data)
    resp = await client.get(f"/v2/repo/blobs/{digest}", allow_redirects=False)
    assert resp.status == 307, await resp.text()
    assert resp.headers["Docker-Content-Digest"] == digest
    url = resp.headers["Location"]
    assert url.startswith(swift_server.storage_url + "/") and "temp_url_sig=" in url
    async with aiohttp.ClientSession() as http:  # no token: the signature is the credential
        async with http.get(url) as got:
            assert (got.status, await got.read()) == (200, data)
        async with http.get(url, headers={"Range": "bytes=10-19"}) as got:
            assert (got.status, await got.read()) == (206, data[10:20])
        async with http.get(url.replace("temp_url_sig=", "temp_url_sig=0")) as got:
            assert got.status == 401


async def test_chunked_upload_across_two_registries_as_segments(
    make_client: MakeClient, swift_server: SwiftServer, swift_container: str
) -> None:
    params = swift_server.swift_parameters(swift_container, chunksize=MIB)
    a = await make_client(storage__swift=params)
    b = await make_client(storage__swift=params)
    data = os.urandom(3 * MIB + 3)
    url = location(await a.post("/v2/repo/blobs/uploads/"))
    offset = 0
    for i, size in enumerate([1, 2 * MIB + 5, 7, MIB - 13]):
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
    names = swift_server.names(swift_container)
    hexa = digest.split(":")[1]
    assert f"files/docker/registry/v2/blobs/sha256/{hexa[:2]}/{hexa}/data" in names
    segments = [n for n in names if n.startswith("segments/")]
    # one DLO: 1 + (2 MiB + 5 as 2 segments + a rest) + 7 + (1 MiB - 13) + the final empty PUT
    assert len({s.rsplit("/", 1)[0] for s in segments}) == 1, segments
    assert len(segments) >= 5, segments
    assert not [n for n in names if "/_uploads/" in n]


async def test_unreachable_swift_is_503(make_client: MakeClient) -> None:
    client = await make_client()
    digest = await push_blob(client, "repo", b"x" * 1000)
    dead = create_driver("swift", {"authurl": "http://127.0.0.1:9/auth/v1.0",
                                        "username": "test:tester", "password": "testing",
                                        "container": "c"})  # fmt: skip
    from fastreg.api.context import REGISTRY

    inner: Any = client.app[REGISTRY].driver
    inner.inner, real = dead, inner.inner  # the instrumented wrapper talks to a closed port
    try:
        resp = await client.get(f"/v2/repo/blobs/{digest}")
        body = await resp.json()
        assert resp.status == 503 and body["errors"][0]["code"] == "UNAVAILABLE", body
    finally:
        inner.inner = real
        await dead.close()


async def test_configured_secret_key_signs_the_temp_urls(
    make_client: MakeClient, swift_server: SwiftServer, swift_container: str
) -> None:
    params = swift_server.swift_parameters(swift_container, secretkey="s3cr3t-for-this-test")
    client = await make_client(storage__swift=params, storage__redirect__disable=False)
    digest = await push_blob(client, "repo", b"signed bytes")
    resp = await client.get(f"/v2/repo/blobs/{digest}", allow_redirects=False)
    assert resp.status == 307
    container = swift_server.call("HEAD", swift_container)  # body empty; the key is a header
    assert container == b""
    async with aiohttp.ClientSession() as http:
        async with http.head(swift_server.storage_url + f"/{swift_container}",
                             headers={"X-Auth-Token": swift_server.token()}) as got:
            assert got.headers["X-Container-Meta-Temp-Url-Key"] == "s3cr3t-for-this-test"
        async with http.get(resp.headers["Location"]) as got:
            assert (got.status, await got.read()) == (200, b"signed bytes")


def test_wrong_password_stops_the_start(
    swift_server: SwiftServer, swift_container: str, tmp_path: Path
) -> None:
    params = swift_server.swift_parameters(swift_container, password="wrong")
    config = parse_config(config_text(tmp_path, "swift", storage__swift=params))

    async def start() -> None:
        runner = web.AppRunner(create_app(config))
        try:
            await runner.setup()
        finally:
            await runner.cleanup()

    with pytest.raises(StorageError, match="not usable.*refused \\(401\\).*check username"):
        asyncio.run(start())
