"""Token auth through the API: tokens GitLab and Distribution 3 issuers send are accepted, and
the security table: every forged, stale, misdirected or insufficient credential is refused with
the challenge and the OCI error body, and nothing is written.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from fastreg.auth.middleware import ACCESS
from fastreg.auth.tokenauth import TokenController
from fastreg.registry import layout
from fastreg.storage.base import StorageDriver, StorageError
from tests.api.conftest import Client, MakeClient, driver_of
from tests.api.helpers import OCI_MANIFEST, expect_error, push_blob, push_image, raw_request, sha256
from tests.auth.tokens import (
    ISSUER,
    REALM,
    SERVICE,
    access,
    distribution3_token,
    forge_hs256,
    gitlab_token,
    make_key,
    make_token,
    shared_key,
    tamper_payload,
    tamper_signature,
    unsigned,
    write_bundle,
    write_jwks,
)

Session = Callable[[Client, str], aiohttp.ClientSession]
ACCEPT = {"Accept": OCI_MANIFEST}


def token_overrides(bundle: str | None = None, jwks: str | None = None, **more: Any) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "auth__token__realm": REALM,
        "auth__token__service": SERVICE,
        "auth__token__issuer": ISSUER,
    }
    if bundle:
        overrides["auth__token__rootcertbundle"] = bundle
    if jwks:
        overrides["auth__token__jwks"] = jwks
    overrides.update(more)
    return overrides


@pytest.fixture
async def session() -> AsyncIterator[Session]:
    """``session(client, token)``: a client session on the same server sending that token."""
    opened: list[aiohttp.ClientSession] = []

    def make(client: Client, token: str) -> aiohttp.ClientSession:
        s = aiohttp.ClientSession(base_url=str(client.make_url("")),
                                  headers={"Authorization": f"Bearer {token}"})
        opened.append(s)
        return s

    yield make
    for s in opened:
        await s.close()


@pytest.fixture
async def registry(make_client: MakeClient, tmp_path: Path) -> Client:
    return await make_client(**token_overrides(write_bundle(tmp_path / "bundle.pem",
                                                            shared_key("rsa"), shared_key("ec"))))


def admin(*names: str) -> str:
    entries = [access(n, "pull", "push", "delete") for n in names]
    return make_token(shared_key("rsa"), [*entries, access("catalog", "*", rtype="registry")])


async def files(driver: StorageDriver, path: str = layout.ROOT) -> set[str]:
    """Every path under ``path`` (what "nothing is written" compares)."""
    try:
        names = await driver.list(path)
    except (StorageError, OSError):
        return {path}
    found = {path}
    for name in names:
        found |= await files(driver, f"{path}/{name}")
    return found


def challenge_params(header: str) -> dict[str, str]:
    scheme, _, rest = header.partition(" ")
    assert scheme == "Bearer", header
    params: dict[str, str] = {}
    for part in rest.split('",'):
        key, _, value = part.partition("=")
        params[key.strip()] = value.strip().strip('"')
    return params


# --- accepted tokens --------------------------------------------------------------------------


async def test_gitlab_shaped_token_pushes_and_pulls(registry: Client, session: Session) -> None:
    s = session(registry, gitlab_token(shared_key("rsa"), "group/project", "pull", "push"))
    digest, body = await push_image(s, "group/project", "v1")  # type: ignore[arg-type]
    resp = await s.get("/v2/group/project/manifests/v1", headers=ACCEPT)
    assert resp.status == 200 and await resp.read() == body
    assert resp.headers["Docker-Content-Digest"] == digest


async def test_distribution3_shaped_token_with_jwks(
    make_client: MakeClient, tmp_path: Path, session: Session
) -> None:
    key = make_key("ec")
    client = await make_client(**token_overrides(jwks=write_jwks(tmp_path / "jwks.json", key)))
    s = session(client, distribution3_token(key, "team/app", "pull", "push"))
    await push_image(s, "team/app", "1.0")  # type: ignore[arg-type]
    assert (await s.head("/v2/team/app/manifests/1.0", headers=ACCEPT)).status == 200
    # the same key named by its libtrust fingerprint works too; another key does not
    ok = make_token(key, [access("team/app", "pull")], kid="libtrust")
    assert (await session(client, ok).head("/v2/team/app/manifests/1.0", headers=ACCEPT)).status == 200
    other = make_token(make_key("ec"), [access("team/app", "pull")], kid="thumbprint")
    resp = await session(client, other).head("/v2/team/app/manifests/1.0", headers=ACCEPT)
    assert resp.status == 401


@pytest.mark.parametrize("how", ["x5c-chain", "jwk-trusted", "ec384-kid", "eddsa-kid"])
async def test_key_lookups(
    how: str, make_client: MakeClient, tmp_path: Path, session: Session
) -> None:
    root = make_key("ec", cn="root-ca", ca=True)
    if how == "x5c-chain":
        inter = make_key("ec", cn="intermediate", issuer=root, ca=True)
        leaf = make_key("ec", cn="leaf", issuer=inter)
        bundle = write_bundle(tmp_path / "b.pem", root)
        token = make_token(leaf, [access("a", "pull")], kid=None,
                           headers={"x5c": [leaf.x5c(), inter.x5c()]})
    elif how == "jwk-trusted":
        from fastreg.auth.keys import public_jwk

        key = shared_key("ec")
        bundle = write_bundle(tmp_path / "b.pem", key)
        token = make_token(key, [access("a", "pull")], kid=None,
                           headers={"jwk": public_jwk(key.public)})
    else:
        key = make_key("ec384" if how == "ec384-kid" else "ed25519")
        bundle = write_bundle(tmp_path / "b.pem", key)
        token = make_token(key, [access("a", "pull")])
    client = await make_client(**token_overrides(bundle))
    resp = await session(client, token).get("/v2/a/tags/list")
    assert resp.status == 404, await resp.text()  # authorised; the repository does not exist
    await expect_error(resp, 404, "NAME_UNKNOWN")


async def test_untrusted_chain_and_jwk_are_refused(
    make_client: MakeClient, tmp_path: Path, session: Session
) -> None:
    from fastreg.auth.keys import public_jwk

    root = make_key("ec", cn="root-ca", ca=True)
    stranger = make_key("ec", cn="root-ca", ca=True)  # same name, other key
    leaf = make_key("ec", cn="leaf", issuer=stranger)
    client = await make_client(**token_overrides(write_bundle(tmp_path / "b.pem", root)))
    forged_chain = make_token(leaf, [access("a", "pull")], kid=None,
                              headers={"x5c": [leaf.x5c(), stranger.x5c()]})
    self_jwk = make_token(leaf, [access("a", "pull")], kid=None,
                          headers={"jwk": public_jwk(leaf.public)})
    for token in (forged_chain, self_jwk):
        resp = await session(client, token).get("/v2/a/tags/list")
        await expect_error(resp, 401, "UNAUTHORIZED")


async def test_signature_checked_once_per_token(registry: Client, session: Session) -> None:
    controller = registry.app[ACCESS]
    assert isinstance(controller, TokenController)
    calls = 0
    verify = controller.verifier.verify

    def counting(token: str) -> Any:
        nonlocal calls
        calls += 1
        return verify(token)

    controller.verifier.verify = counting  # type: ignore[method-assign]
    s = session(registry, admin("hot"))
    await push_image(s, "hot", "t")  # type: ignore[arg-type]
    for _ in range(20):
        assert (await s.get("/v2/hot/manifests/t", headers=ACCEPT)).status == 200
    assert calls == 1
    other = session(registry, admin("hot"))
    assert (await other.get("/v2/hot/manifests/t", headers=ACCEPT)).status == 200
    assert calls == 2


async def test_challenge_names_realm_service_and_scope(registry: Client) -> None:
    resp = await registry.post("/v2/team/app/blobs/uploads/",
                               params={"mount": sha256(b"x"), "from": "other/repo"})
    body = await expect_error(resp, 401, "UNAUTHORIZED")
    params = challenge_params(resp.headers["WWW-Authenticate"])
    assert params == {"realm": REALM, "service": SERVICE,
                      "scope": "repository:team/app:pull,push repository:other/repo:pull"}
    assert body["errors"][0]["detail"] == [
        {"Type": "repository", "Class": "", "Name": "team/app", "Action": "pull"},
        {"Type": "repository", "Class": "", "Name": "team/app", "Action": "push"},
        {"Type": "repository", "Class": "", "Name": "other/repo", "Action": "pull"},
    ]
    base = await registry.get("/v2/")
    await expect_error(base, 401, "UNAUTHORIZED")
    assert challenge_params(base.headers["WWW-Authenticate"]) == {"realm": REALM,
                                                                  "service": SERVICE}


async def test_star_grants_every_action(registry: Client, session: Session) -> None:
    s = session(registry, make_token(shared_key("rsa"), [access("x", "*")]))
    await push_image(s, "x", "t")  # type: ignore[arg-type]
    assert (await s.delete("/v2/x/manifests/t")).status == 202
    assert (await s.get("/v2/_catalog")).status == 401  # `*` on a repository is not the catalog


async def test_catalog_with_registry_scope(registry: Client, session: Session) -> None:
    s = session(registry, admin("c1"))
    await push_image(s, "c1", "t")  # type: ignore[arg-type]
    resp = await s.get("/v2/_catalog")
    assert resp.status == 200 and (await resp.json())["repositories"] == ["c1"]


async def test_mount_needs_pull_on_from(registry: Client, session: Session) -> None:
    owner = session(registry, admin("src"))
    digest = await push_blob(owner, "src", b"shared layer")  # type: ignore[arg-type]
    pusher = session(registry, make_token(shared_key("rsa"), [access("dst", "pull", "push")]))
    resp = await pusher.post("/v2/dst/blobs/uploads/", params={"mount": digest, "from": "src"})
    await expect_error(resp, 401, "UNAUTHORIZED")  # as Distribution: the challenge names `from`
    assert 'error="insufficient_scope"' in resp.headers["WWW-Authenticate"]
    assert "repository:src:pull" in resp.headers["WWW-Authenticate"]
    assert (await pusher.head(f"/v2/dst/blobs/{digest}")).status == 404  # nothing linked
    both = session(registry, make_token(shared_key("rsa"), [access("dst", "pull", "push"),
                                                            access("src", "pull")]))
    resp = await both.post("/v2/dst/blobs/uploads/", params={"mount": digest, "from": "src"})
    assert resp.status == 201
    assert (await both.head(f"/v2/dst/blobs/{digest}")).status == 200


# --- the security table -----------------------------------------------------------------------

RSA = "rsa"
PUSH_A = [access("a", "pull", "push")]
PULL_A = [access("a", "pull")]


def _tok(**kw: Any) -> Callable[[], str]:
    return lambda: make_token(shared_key(RSA), kw.pop("entries", PUSH_A), **kw)


# name -> (method, path, Authorization value factory, status, code, challenge error)
CASES: dict[str, tuple[str, str, Callable[[], str], int, str, str | None]] = {
    "no credentials": ("GET", "/v2/a/manifests/latest", lambda: "", 401, "UNAUTHORIZED", None),
    "alg none": ("GET", "/v2/a/manifests/latest", lambda: "Bearer " + unsigned(PULL_A),
                 401, "UNAUTHORIZED", "invalid_token"),
    "alg none uppercase": ("GET", "/v2/a/manifests/latest",
                           lambda: "Bearer " + unsigned(PULL_A, "NONE"), 401, "UNAUTHORIZED",
                           "invalid_token"),
    "HS256 with the public key": ("POST", "/v2/a/blobs/uploads/",
                                  lambda: "Bearer " + forge_hs256(shared_key(RSA), PUSH_A),
                                  401, "UNAUTHORIZED", "invalid_token"),
    "key not in the bundle": ("POST", "/v2/a/blobs/uploads/",
                              lambda: "Bearer " + make_token(shared_key("stranger"), PUSH_A),
                              401, "UNAUTHORIZED", "invalid_token"),
    "kid of a trusted key, signed by another": (
        "POST", "/v2/a/blobs/uploads/",
        lambda: "Bearer " + make_token(shared_key("stranger"), PUSH_A,
                                       kid=shared_key(RSA).libtrust),
        401, "UNAUTHORIZED", "invalid_token"),
    "tampered payload": ("POST", "/v2/a/blobs/uploads/",
                         lambda: "Bearer " + tamper_payload(_tok(entries=PULL_A)(), PUSH_A),
                         401, "UNAUTHORIZED", "invalid_token"),
    "tampered signature": ("POST", "/v2/a/blobs/uploads/",
                           lambda: "Bearer " + tamper_signature(_tok()()),
                           401, "UNAUTHORIZED", "invalid_token"),
    "expired": ("POST", "/v2/a/blobs/uploads/",
                lambda: "Bearer " + _tok(exp=int(time.time()) - 61 - 5)(),
                401, "UNAUTHORIZED", "invalid_token"),
    "nbf in the future": ("POST", "/v2/a/blobs/uploads/",
                          lambda: "Bearer " + _tok(nbf=int(time.time()) + 120)(),
                          401, "UNAUTHORIZED", "invalid_token"),
    "no exp": ("POST", "/v2/a/blobs/uploads/",
               lambda: "Bearer " + _tok(exp="never")(), 401, "UNAUTHORIZED", "invalid_token"),
    "wrong iss": ("POST", "/v2/a/blobs/uploads/", lambda: "Bearer " + _tok(iss="evil")(),
                  401, "UNAUTHORIZED", "invalid_token"),
    "wrong aud": ("POST", "/v2/a/blobs/uploads/", lambda: "Bearer " + _tok(aud="other")(),
                  401, "UNAUTHORIZED", "invalid_token"),
    "wrong aud list": ("POST", "/v2/a/blobs/uploads/",
                       lambda: "Bearer " + _tok(aud=["x", "y"])(), 401, "UNAUTHORIZED",
                       "invalid_token"),
    "pull-only token pushing": ("POST", "/v2/a/blobs/uploads/",
                                lambda: "Bearer " + _tok(entries=PULL_A)(),
                                401, "UNAUTHORIZED", "insufficient_scope"),
    "pull-only token putting a manifest": ("PUT", "/v2/a/manifests/latest",
                                           lambda: "Bearer " + _tok(entries=PULL_A)(),
                                           401, "UNAUTHORIZED", "insufficient_scope"),
    "token for a used on a-b": ("POST", "/v2/a-b/blobs/uploads/", lambda: "Bearer " + _tok()(),
                                401, "UNAUTHORIZED", "insufficient_scope"),
    "token for a used on a/b": ("POST", "/v2/a/b/blobs/uploads/", lambda: "Bearer " + _tok()(),
                                401, "UNAUTHORIZED", "insufficient_scope"),
    "token for a used on A": ("POST", "/v2/A/blobs/uploads/", lambda: "Bearer " + _tok()(),
                              401, "UNAUTHORIZED", "insufficient_scope"),
    "catalog without registry:catalog:*": ("GET", "/v2/_catalog",
                                           lambda: "Bearer " + _tok(entries=[
                                               access("catalog", "pull", rtype="registry")])(),
                                           401, "UNAUTHORIZED", "insufficient_scope"),
    "delete without delete": ("DELETE", "/v2/a/manifests/latest", lambda: "Bearer " + _tok()(),
                              401, "UNAUTHORIZED", "insufficient_scope"),
    "malformed access claim": ("POST", "/v2/a/blobs/uploads/",
                               lambda: "Bearer " + make_token(shared_key(RSA), "all"),  # type: ignore[arg-type]
                               401, "UNAUTHORIZED", "invalid_token"),
    "Basic credentials on a token realm": ("POST", "/v2/a/blobs/uploads/",
                                           lambda: "Basic YWxpY2U6c2VjcmV0", 401,
                                           "UNAUTHORIZED", None),
    "empty Authorization": ("POST", "/v2/a/blobs/uploads/", lambda: " ", 401, "UNAUTHORIZED",
                            None),
    "scheme without token": ("POST", "/v2/a/blobs/uploads/", lambda: "Bearer", 401,
                             "UNAUTHORIZED", None),
    "two schemes": ("POST", "/v2/a/blobs/uploads/",
                    lambda: f"Bearer {_tok()()} Basic YWxpY2U6c2VjcmV0", 401, "UNAUTHORIZED",
                    None),
    "100 KB header": ("POST", "/v2/a/blobs/uploads/", lambda: "Bearer " + "A" * 100_000, 401,
                      "UNAUTHORIZED", "invalid_token"),
    "not a JWS": ("POST", "/v2/a/blobs/uploads/", lambda: "Bearer a.b.c", 401, "UNAUTHORIZED",
                  "invalid_token"),
    "traversal ..%2f in the name": ("POST", "/v2/a/..%2f..%2fetc/blobs/uploads/",
                                    lambda: "Bearer " + _tok()(), 401, "UNAUTHORIZED",
                                    "insufficient_scope"),
    "traversal %2e%2e segments": ("PUT", "/v2/a/%2e%2e/%2e%2e/etc/manifests/latest",
                                  lambda: "Bearer " + _tok()(), 401, "UNAUTHORIZED",
                                  "insufficient_scope"),
    # even a token naming the traversal gets no further than the name grammar
    "traversal granted by the token": ("POST", "/v2/a/../../etc/blobs/uploads/",
                                       lambda: "Bearer " + _tok(entries=[
                                           access("a/../../etc", "pull", "push")])(),
                                       400, "NAME_INVALID", None),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_security_table(case: str, registry: Client, session: Session) -> None:
    method, path, authorization, status, code, error = CASES[case]
    seed = session(registry, admin("a", "b"))
    await push_image(seed, "a", "latest")  # type: ignore[arg-type]
    driver = driver_of(registry)
    before = await files(driver)
    value = authorization()
    headers = {"Authorization": value} if value else {}
    got, resp_headers, body = await raw_request(registry, method, path, headers, b"{}")
    assert got == status, body[:300]
    assert resp_headers.get("docker-distribution-api-version") == "registry/2.0"
    assert orjson.loads(body)["errors"][0]["code"] == code
    if status == 401:
        params = challenge_params(resp_headers["www-authenticate"])
        assert params["realm"] == REALM and params["service"] == SERVICE
        assert params.get("error") == error
    assert await files(driver) == before, "a refused request wrote to storage"
