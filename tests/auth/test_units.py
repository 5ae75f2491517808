"""Unit tests of the auth building blocks: scope grammar, required access, grants, ACL globs,
key ids (RFC 7638 test vector), the credential cache, settings and the verifier's refusals."""

from __future__ import annotations

import time
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from fastreg.auth.access import Access, Grants, Required, parse_scope, parse_scopes, required_access
from fastreg.auth.acl import ACLError, parse_acl
from fastreg.auth.cache import CredentialCache
from fastreg.auth.keys import b64url_decode, jwk_thumbprint, libtrust_key_id
from fastreg.auth.settings import TokenSettings
from fastreg.auth.token import ExpiredToken, InvalidToken, TokenVerifier
from fastreg.config import ConfigError, parse_config
from tests.auth.tokens import ISSUER, SERVICE, access, make_token, shared_key


@pytest.mark.parametrize("text, expected", [
    ("repository:team/app:pull,push", ("repository", "", "team/app", ("pull", "push"))),
    ("repository:localhost:5000/team/app:pull", ("repository", "", "localhost:5000/team/app",
                                                 ("pull",))),
    ("repository(plugin):x/y:pull", ("repository", "plugin", "x/y", ("pull",))),
    ("registry:catalog:*", ("registry", "", "catalog", ("*",))),
    ("repository:a:pull,pull,", ("repository", "", "a", ("pull",))),
])
def test_scope_grammar(text: str, expected: tuple[Any, ...]) -> None:
    scope = parse_scope(text)
    assert scope is not None
    assert (scope.type, scope.klass, scope.name, scope.actions) == expected


@pytest.mark.parametrize("text", ["", "repository", "repository:a", ":a:pull", "Repo:a:pull",
                                  'repository:a"b:pull', "repository:a:PULL", "x" * 600])
def test_scope_grammar_refuses(text: str) -> None:
    assert parse_scope(text) is None


def test_scopes_split_on_spaces() -> None:
    assert [str(s) for s in parse_scopes(["repository:a:pull repository:b:push", "bad"])] == [
        "repository:a:pull", "repository:b:push"]


@pytest.mark.parametrize("route, method, query, accesses, mount_from", [
    ("base", "GET", {}, [], None),
    ("catalog", "GET", {}, [("registry", "catalog", "*")], None),
    ("manifest", "GET", {}, [("repository", "r", "pull")], None),
    ("manifest", "HEAD", {}, [("repository", "r", "pull")], None),
    ("manifest", "PUT", {}, [("repository", "r", "pull"), ("repository", "r", "push")], None),
    ("upload", "PATCH", {}, [("repository", "r", "pull"), ("repository", "r", "push")], None),
    ("blob", "DELETE", {}, [("repository", "r", "delete")], None),
    ("upload_start", "POST", {"mount": "sha256:x", "from": "src"},
     [("repository", "r", "pull"), ("repository", "r", "push")], "src"),
    ("upload_start", "POST", {"from": "src"},
     [("repository", "r", "pull"), ("repository", "r", "push")], None),
])
def test_required_access(route: str, method: str, query: dict[str, str],
                         accesses: list[tuple[str, str, str]], mount_from: str | None) -> None:
    required = required_access(route, method, None if route in ("base", "catalog") else "r",
                               MappingProxyType(query))
    assert required == Required(tuple(Access(*a) for a in accesses), mount_from)


def test_grants() -> None:
    grants = Grants.from_claim([access("a", "pull"), access("a", "push"), access("b", "*")])
    assert grants.allows(Access("repository", "a", "push"))
    assert not grants.allows(Access("repository", "a", "delete"))
    assert grants.allows(Access("repository", "b", "delete"))
    assert not grants.allows(Access("registry", "b", "pull"))
    assert not grants.allows(Access("repository", "a-b", "pull"))
    assert Grants.everything().allows(Access("registry", "catalog", "*"))


def test_acl_globs_and_errors() -> None:
    acl = parse_acl(b"""
rules:
  - users: ["*"]
    repositories: ["${user}/*", "lib/**"]
    actions: [pull]
""")
    scope = parse_scopes(["repository:al.ice/x:pull repository:al.ice/x/y:pull",
                          "repository:alxice/x:pull repository:lib/a/b/c:pull,push"])
    assert acl.grant("al.ice", scope) == [
        {"type": "repository", "name": "al.ice/x", "actions": ["pull"]},
        {"type": "repository", "name": "lib/a/b/c", "actions": ["pull"]},
    ]
    assert acl.grant(None, scope) == []
    for bad in (b"rules: [{repositories: [x], actions: [pull]}]",
                b"rules: [{users: [a], actions: [fly]}]", b"oops: 1", b"rules: 5", b"[1, 2"):
        with pytest.raises(ACLError):
            parse_acl(bad)


def test_rfc7638_thumbprint_vector() -> None:
    n = int.from_bytes(b64url_decode(
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJ"
        "ECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FD"
        "W2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4"
        "vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"), "big")
    key = rsa.RSAPublicNumbers(65537, n).public_key()
    assert jwk_thumbprint(key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    kid = libtrust_key_id(key)
    assert len(kid) == 59 and kid.count(":") == 11


def test_credential_cache_expires_and_is_bounded() -> None:
    now = [1000.0]
    cache: CredentialCache[str] = CredentialCache(maxsize=2, maxbytes=1 << 20,
                                                  clock=lambda: now[0])
    cache.put(b"t1", "a", 1010)
    cache.put(b"t2", "b", 1010)
    assert cache.get(b"t1") == "a"
    cache.put(b"t3", "c", 1010)  # evicts t2, the least recently used
    assert cache.get(b"t2") is None and cache.get(b"t3") == "c"
    now[0] = 1011
    assert cache.get(b"t1") is None and len(cache) == 1
    big: CredentialCache[str] = CredentialCache(maxbytes=1600)
    big.put(b"x" * 101, "huge", time.time() + 60)  # over maxbytes/16: never cached
    assert big.get(b"x" * 101) is None


def test_verifier_reasons() -> None:
    from fastreg.auth.keys import TrustStore

    key = shared_key("ec")
    verifier = TokenVerifier(TrustStore.build(keys=[key.public]), ISSUER, SERVICE)
    ok = verifier.verify_now(make_token(key, [access("a", "pull")], sub="s"))
    assert ok.subject == "s" and ok.grants.allows(Access("repository", "a", "pull"))
    expired = make_token(key, [], exp=time.time() - 61)
    with pytest.raises(ExpiredToken):
        verifier.verify_now(expired)
    verifier.verify(expired)  # everything but the clock is right (what uploadgrace relies on)
    with pytest.raises(InvalidToken, match="not valid yet"):
        verifier.verify_now(make_token(key, [], nbf=time.time() + 120))
    with pytest.raises(InvalidToken, match="not accepted"):
        TokenVerifier(TrustStore.build(keys=[key.public]), ISSUER, SERVICE,
                      ["RS256"]).verify(make_token(key, []))
    with pytest.raises(ValueError, match="HS256"):
        TokenVerifier(TrustStore.build(keys=[key.public]), ISSUER, SERVICE, ["HS256"])


def _config(tmp_path: Path, auth: str) -> Any:
    root = tmp_path / "r"
    return parse_config(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\nauth:\n{auth}")


def _auth(tmp_path: Path, auth: str) -> Any:
    return _config(tmp_path, auth).auth


def test_settings(tmp_path: Path) -> None:
    config = _config(tmp_path, "  token:\n    realm: https://r/token\n    service: s\n"
                     "    issuer: i\n    jwks: /j\n    uploadgrace: 15m\n"
                     "    signingalgorithms: [ES256, RS256]\n    autoredirect: true\n")
    settings = config.auth
    assert isinstance(settings, TokenSettings)
    assert settings.uploadgrace == 900 and settings.algorithms == ("ES256", "RS256")
    assert config.warnings == ("configuration key 'auth.token.autoredirect' is not supported yet",)
    for auth, message in [
        ("  token:\n    realm: r\n    service: s\n    issuer: i\n", "rootcertbundle or jwks"),
        ("  token:\n    service: s\n    issuer: i\n    jwks: j\n", "auth.token.realm: required"),
        (("  token:\n    realm: r\n    service: s\n    issuer: i\n    jwks: j\n"
          "    signingalgorithms: [HS256]\n"), "HS256"),
        ("  silly:\n    realm: r\n", "unsupported access controller"),
        ("  htpasswd:\n    realm: r\n", "auth.htpasswd.path: required"),
        (("  token:\n    realm: r\n    service: s\n    issuer: i\n    tokenserver:\n"
          "      key: k\n      htpasswd: h\n      acl: a\n      embedded: true\n"
          "      path: /v2/token\n"), "outside /v2/"),
    ]:
        with pytest.raises(ConfigError, match=message):
            _auth(tmp_path, auth)


def test_missing_files_stop_the_start(tmp_path: Path) -> None:
    from fastreg.auth.middleware import check_auth

    config = parse_config(
        f"version: 0.1\nstorage:\n  inmemory: {{}}\nauth:\n  token:\n    realm: r\n"
        f"    service: s\n    issuer: i\n    rootcertbundle: {tmp_path}/missing.pem\n")
    with pytest.raises(ConfigError, match="auth.token.rootcertbundle"):
        check_auth(config)
    config = parse_config(
        f"version: 0.1\nstorage:\n  inmemory: {{}}\nauth:\n  htpasswd:\n    realm: r\n"
        f"    path: {tmp_path}/missing\n")
    with pytest.raises(ConfigError, match="auth.htpasswd.path"):
        check_auth(config)
