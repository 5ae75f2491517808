"""Long pushes: a request that started with a valid token finishes, and `auth.token.uploadgrace`
lets an upload opened with a valid push token finish after that token expired.

Tokens here expire for real: they are made to leave the 60 s leeway about two seconds after the
test starts, so each test sleeps a little (filesystem driver only).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.api.conftest import Client, MakeClient
from tests.api.helpers import location, sha256
from tests.api.test_auth_token import token_overrides
from tests.auth.tokens import access, make_token, shared_key, write_bundle

LEEWAY = 60


@pytest.fixture
def driver_name() -> str:
    return "filesystem"


def short_token(sub: str = "alice", valid_for: float = 1.5) -> tuple[str, float]:
    """A push token on `big` that stops being accepted ``valid_for`` seconds from now."""
    exp = time.time() + valid_for - LEEWAY
    return make_token(shared_key("rsa"), [access("big", "pull", "push")], sub=sub, exp=exp), exp


async def wait_past(exp: float) -> None:
    await asyncio.sleep(max(0.0, exp + LEEWAY - time.time()) + 0.3)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def make(make_client: MakeClient, tmp_path: Path, **more: object) -> Client:
    bundle = write_bundle(tmp_path / "bundle.pem", shared_key("rsa"))
    return await make_client(**token_overrides(bundle, **more))


async def test_request_started_in_time_finishes(make_client: MakeClient, tmp_path: Path) -> None:
    client = await make(make_client, tmp_path)
    token, exp = short_token(valid_for=1.0)
    resp = await client.post("/v2/big/blobs/uploads/", headers=bearer(token))
    assert resp.status == 202
    url = location(resp)

    async def slow_body() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"x" * 65536
            await asyncio.sleep(0.8)  # the token expires while the body streams

    resp = await client.patch(url, data=slow_body(), headers=bearer(token))
    assert resp.status == 202, await resp.text()
    assert resp.headers["Range"] == f"0-{3 * 65536 - 1}"
    assert time.time() > exp + LEEWAY  # it did expire mid-request
    resp = await client.get(url, headers=bearer(token))  # a new request is checked again
    assert resp.status == 401


async def test_upload_grace_lets_the_opener_finish(make_client: MakeClient, tmp_path: Path) -> None:
    opener = await make(make_client, tmp_path, auth__token__uploadgrace="1h")
    # the rest of the upload lands on another worker (another app over the same storage root)
    client = await make(make_client, tmp_path, auth__token__uploadgrace="1h")
    token, exp = short_token()
    resp = await opener.post("/v2/big/blobs/uploads/", headers=bearer(token))
    assert resp.status == 202
    url = location(resp)
    other = await client.post("/v2/big/blobs/uploads/", headers=bearer(short_token()[0]))
    other_url = location(other)
    mallory, _ = short_token(sub="mallory")  # expires with the others
    await wait_past(exp + 0.1)

    assert (await client.get("/v2/big/tags/list", headers=bearer(token))).status == 401
    resp = await client.patch(url, data=b"a" * 10, headers=bearer(mallory))
    assert resp.status == 401  # expired too, and not the subject that opened it
    # the opener's own expired token continues it: PATCH, status, the final PUT
    resp = await client.patch(url, data=b"a" * 10, headers=bearer(token))
    assert resp.status == 202, await resp.text()
    assert (await client.get(url, headers=bearer(token))).status == 204
    data = b"a" * 20
    resp = await client.put(url, params={"digest": sha256(data)}, data=b"a" * 10,
                            headers=bearer(token))
    assert resp.status == 201, await resp.text()
    # the grace is per upload: another session of the same subject, opened in time, works too,
    # while a fresh upload cannot be opened with the expired token
    assert (await client.patch(other_url, data=b"b", headers=bearer(token))).status == 202
    assert (await client.post("/v2/big/blobs/uploads/", headers=bearer(token))).status == 401


async def test_without_grace_an_expired_token_stops_the_upload(
    make_client: MakeClient, tmp_path: Path
) -> None:
    client = await make(make_client, tmp_path)
    token, exp = short_token()
    resp = await client.post("/v2/big/blobs/uploads/", headers=bearer(token))
    assert resp.status == 202
    await wait_past(exp)
    resp = await client.patch(location(resp), data=b"a", headers=bearer(token))
    assert resp.status == 401
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
