"""`auth.htpasswd`: Basic credentials against a bcrypt htpasswd file, re-read when it changes."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import bcrypt
import pytest

from tests.api.conftest import Client, MakeClient
from tests.api.helpers import OCI_MANIFEST, expect_error, push_image, raw_request
from tests.auth.tokens import write_htpasswd

REALM = "fastreg-test"


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def driver_name() -> str:
    return "inmemory"  # access control does not depend on the storage driver


@pytest.fixture
async def registry(make_client: MakeClient, tmp_path: Path) -> Client:
    path = write_htpasswd(tmp_path / "htpasswd", {"alice": "wonderland", "bob": "builder"})
    return await make_client(auth__htpasswd__realm=REALM, auth__htpasswd__path=path)


async def test_valid_user_may_do_everything(registry: Client) -> None:
    import aiohttp

    async with aiohttp.ClientSession(base_url=str(registry.make_url("")),
                                     headers=basic("alice", "wonderland")) as s:
        await push_image(s, "team/app", "1")  # type: ignore[arg-type]
        resp = await s.get("/v2/team/app/manifests/1", headers={"Accept": OCI_MANIFEST})
        assert resp.status == 200
        assert (await s.get("/v2/_catalog")).status == 200
        assert (await s.get("/v2/")).status == 200


@pytest.mark.parametrize("headers", [
    {},
    basic("alice", "wrong"),
    basic("mallory", "wonderland"),
    basic("alice", ""),
    {"Authorization": "Basic"},
    {"Authorization": "Basic !!!notbase64"},
    {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
    {"Authorization": "Bearer abc.def.ghi"},
    {"Authorization": basic("alice", "wonderland")["Authorization"] + " Basic eA=="},
    {"Authorization": "Basic " + "A" * 100_000},
], ids=["none", "wrong-password", "unknown-user", "empty-password", "no-value",
        "not-base64", "no-colon", "bearer", "two-schemes", "100KB"])
async def test_refused(registry: Client, headers: dict[str, str]) -> None:
    status, resp_headers, body = await raw_request(registry, "POST", "/v2/a/blobs/uploads/",
                                                   headers)
    assert status == 401, body[:200]
    assert resp_headers["www-authenticate"] == f'Basic realm="{REALM}"'
    assert resp_headers["docker-distribution-api-version"] == "registry/2.0"
    assert b'"UNAUTHORIZED"' in body


async def test_file_is_reread_when_it_changes(registry: Client, tmp_path: Path) -> None:
    ok = await registry.get("/v2/", headers=basic("alice", "wonderland"))
    assert ok.status == 200
    await asyncio.sleep(1.1)  # the file is looked at once a second at most
    write_htpasswd(tmp_path / "htpasswd", {"alice": "new-password", "carol": "c"})
    await asyncio.sleep(0.05)
    assert (await registry.get("/v2/", headers=basic("carol", "c"))).status == 200
    resp = await registry.get("/v2/", headers=basic("alice", "wonderland"))
    await expect_error(resp, 401, "UNAUTHORIZED")  # remembered credentials were forgotten
    assert (await registry.get("/v2/", headers=basic("alice", "new-password"))).status == 200
    assert (await registry.get("/v2/", headers=basic("bob", "builder"))).status == 401


async def test_unknown_user_costs_a_bcrypt_check(make_client: MakeClient, tmp_path: Path) -> None:
    """No timing difference between an unknown user and a wrong password."""
    cost = 9
    path = write_htpasswd(tmp_path / "slow", {"alice": "wonderland"}, cost=cost)
    client = await make_client(auth__htpasswd__realm=REALM, auth__htpasswd__path=path)
    one = bcrypt.hashpw(b"x", bcrypt.gensalt(cost))
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        bcrypt.checkpw(b"y", one)
        runs.append(time.perf_counter() - started)
    bcrypt_time = min(runs)

    async def timed(headers: dict[str, str]) -> float:
        started = time.perf_counter()
        resp = await client.get("/v2/", headers=headers)
        assert resp.status == 401
        return time.perf_counter() - started

    await timed(basic("warm", "up"))
    unknown, wrong = [], []
    for i in range(6):
        unknown.append(await timed(basic(f"nobody{i}", "wonderland")))
        wrong.append(await timed(basic("alice", f"wrong{i}")))
    # the fastest of each: what the check costs, without the noise a loaded machine adds
    u, w = min(unknown), min(wrong)
    assert u > 0.5 * bcrypt_time and w > 0.5 * bcrypt_time, (u, w, bcrypt_time)
    assert 0.6 < u / w < 1.6, (u, w)
