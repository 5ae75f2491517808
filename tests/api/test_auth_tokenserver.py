"""The built-in issuer mounted in the registry (`auth.token.tokenserver.embedded`): the Docker
token GET, the OAuth2 POST (password and refresh_token), the ACL, and its tokens at work."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import jwt
import pytest

from fastreg.auth.keys import libtrust_key_id
from tests.api.conftest import Client, MakeClient
from tests.auth.tokens import ISSUER, REALM, SERVICE, KeyPair, make_key, write_htpasswd

ACL = """
groups:
  developers: [alice, bob]
rules:
  - users: [admin]
    repositories: ["**"]
    actions: ["*"]
    catalog: true
  - groups: [developers]
    repositories: ["team/*"]
    actions: [pull, push]
  - users: ["*"]
    repositories: ["${user}/**"]
    actions: [pull, push, delete]
  - anonymous: true
    repositories: ["public/*"]
    actions: [pull]
"""


@pytest.fixture
def driver_name() -> str:
    return "inmemory"  # the issuer does not depend on the storage driver


@pytest.fixture(params=["ec", "rsa"])
def key(request: pytest.FixtureRequest) -> KeyPair:
    return make_key(request.param)


@pytest.fixture
async def registry(key: KeyPair, make_client: MakeClient, tmp_path: Path) -> Client:
    (tmp_path / "token.key").write_bytes(key.pem())
    (tmp_path / "acl.yml").write_text(ACL)
    users = write_htpasswd(tmp_path / "users", {"alice": "a-pass", "bob": "b-pass",
                                                "admin": "root-pass"})
    client = await make_client(
        auth__token__realm=REALM, auth__token__service=SERVICE, auth__token__issuer=ISSUER,
        auth__token__tokenserver__key=str(tmp_path / "token.key"),
        auth__token__tokenserver__htpasswd=users,
        auth__token__tokenserver__acl=str(tmp_path / "acl.yml"),
        auth__token__tokenserver__expiration="2m",
        auth__token__tokenserver__embedded=True,
    )
    return client


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


async def get_token(client: Client, *scopes: str, headers: dict[str, str] | None = None,
                    **params: str) -> dict[str, Any]:
    query = [("service", SERVICE), *(("scope", s) for s in scopes), *params.items()]
    resp = await client.get("/token", params=query, headers=headers or {})
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def test_get_grants_what_the_acl_allows(registry: Client, key: KeyPair) -> None:
    body = await get_token(registry, "repository:team/app:pull,push,delete",
                           "repository:alice/tools:pull,push", "repository:other:pull",
                           "registry:catalog:*", headers=basic("alice", "a-pass"))
    assert body["token"] == body["access_token"] and body["expires_in"] == 120
    assert body["issued_at"].endswith("Z")
    header = jwt.get_unverified_header(body["token"])
    assert header["kid"] == libtrust_key_id(key.public) and header["alg"] == key.alg
    claims = claims_of(body["token"])
    assert claims["iss"] == ISSUER and claims["aud"] == SERVICE and claims["sub"] == "alice"
    assert claims["exp"] - claims["iat"] == 120
    assert claims["access"] == [
        {"type": "repository", "name": "team/app", "actions": ["pull", "push"]},
        {"type": "repository", "name": "alice/tools", "actions": ["pull", "push"]},
    ]
    assert "refresh_token" not in body


async def test_tokens_work_on_the_registry(registry: Client) -> None:
    body = await get_token(registry, "repository:alice/app:pull,push",
                           headers=basic("alice", "a-pass"))
    auth = {"Authorization": f"Bearer {body['token']}"}
    resp = await registry.post("/v2/alice/app/blobs/uploads/", headers=auth)
    assert resp.status == 202
    resp = await registry.post("/v2/bob/app/blobs/uploads/", headers=auth)
    assert resp.status == 401


async def test_admin_gets_everything_including_the_catalog(registry: Client) -> None:
    body = await get_token(registry, "registry:catalog:*", "repository:x/y:pull,push,delete",
                           headers=basic("admin", "root-pass"))
    assert claims_of(body["token"])["access"] == [
        {"type": "registry", "name": "catalog", "actions": ["*"]},
        {"type": "repository", "name": "x/y", "actions": ["pull", "push", "delete"]},
    ]
    auth = {"Authorization": f"Bearer {body['token']}"}
    assert (await registry.get("/v2/_catalog", headers=auth)).status == 200


async def test_anonymous_and_refused_requests(registry: Client) -> None:
    body = await get_token(registry, "repository:public/base:pull,push", "repository:team/a:pull")
    claims = claims_of(body["token"])
    assert claims["sub"] == "" and claims["access"] == [
        {"type": "repository", "name": "public/base", "actions": ["pull"]}]
    for headers in (basic("alice", "nope"), basic("nobody", "a-pass"),
                    {"Authorization": "Bearer x"}):
        resp = await registry.get("/token", params={"service": SERVICE}, headers=headers)
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Basic realm=")
    resp = await registry.get("/token", params={"service": "elsewhere"})
    assert resp.status == 400


async def test_malformed_scopes_are_ignored(registry: Client) -> None:
    body = await get_token(registry, "repository:Team/App:pull", "repository:team/../x:pull",
                           "nonsense", 'repository:team/a":pull', "repository:team/a:pull",
                           headers=basic("bob", "b-pass"))
    assert claims_of(body["token"])["access"] == [
        {"type": "repository", "name": "team/a", "actions": ["pull"]}]


async def test_oauth2_password_and_refresh(registry: Client) -> None:
    resp = await registry.post("/token", data={
        "grant_type": "password", "username": "bob", "password": "b-pass", "service": SERVICE,
        "scope": "repository:team/a:pull,push repository:bob/x:delete", "client_id": "containerd",
        "access_type": "offline"})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["scope"] == "repository:team/a:pull,push repository:bob/x:delete"
    refresh = body["refresh_token"]
    assert claims_of(body["access_token"])["sub"] == "bob"
    # the refresh token is no access token for the registry
    resp = await registry.get("/v2/", headers={"Authorization": f"Bearer {refresh}"})
    assert resp.status == 401
    resp = await registry.post("/token", data={
        "grant_type": "refresh_token", "refresh_token": refresh, "service": SERVICE,
        "scope": "repository:team/a:pull"})
    assert resp.status == 200
    again = await resp.json()
    assert again["refresh_token"] == refresh
    auth = {"Authorization": f"Bearer {again['access_token']}"}
    assert (await registry.get("/v2/team/a/tags/list", headers=auth)).status == 404


@pytest.mark.parametrize("form, status, error", [
    ({"grant_type": "password", "username": "bob", "password": "bad"}, 401, "invalid_grant"),
    ({"grant_type": "password", "username": "", "password": ""}, 401, "invalid_grant"),
    ({"grant_type": "refresh_token", "refresh_token": "a.b.c"}, 401, "invalid_grant"),
    ({"grant_type": "client_credentials"}, 400, "unsupported_grant_type"),
])
async def test_oauth2_refusals(registry: Client, form: dict[str, str], status: int,
                               error: str) -> None:
    resp = await registry.post("/token", data={**form, "service": SERVICE})
    assert resp.status == status
    assert (await resp.json())["error"] == error


async def test_docker_login_gets_a_refresh_token(registry: Client) -> None:
    body = await get_token(registry, headers=basic("alice", "a-pass"), offline_token="true",
                           client_id="docker", account="alice")
    assert claims_of(body["refresh_token"])["sub"] == "alice"
    assert claims_of(body["token"])["access"] == []
