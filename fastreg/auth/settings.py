"""The `auth:` section of config.yml, checked: one of `token` or `htpasswd` (as Distribution).

    auth:
      token:
        realm: https://registry.example.com/token   # where clients fetch tokens
        service: registry.example.com               # the `aud` tokens must carry
        issuer: gitlab-issuer                       # the `iss` tokens must carry
        rootcertbundle: /etc/registry/token.crt     # certificates whose keys sign tokens
        jwks: /etc/registry/jwks.json               # and/or a JWKS file (Distribution 3)
        signingalgorithms: [RS256, ES256]           # default: every asymmetric algorithm
        uploadgrace: 1h                             # fastreg only; off by default
        tokenserver:                                # fastreg only: the built-in issuer
          key: /etc/registry/token.key              # PEM, RSA (RS256) or EC P-256 (ES256)
          htpasswd: /etc/registry/htpasswd
          acl: /etc/registry/acl.yml
          expiration: 5m                            # token lifetime
          refreshexpiration: 720h                   # refresh (identity) token lifetime
          embedded: true                            # serve it in the registry process
          addr: :5001                               # where `fastreg token-server` listens
      htpasswd:
        realm: basic-realm
        path: /etc/registry/htpasswd

Unknown keys under `auth.token` are reported as warnings (Distribution 3 has a few fastreg does
not use); a missing or wrongly typed key stops the start with an error naming it.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

from fastreg.config.convert import ConfigError, Section

_SERVER_KEYS = frozenset({"key", "htpasswd", "acl", "expiration", "refreshexpiration",
                          "embedded", "addr", "path"})


@dataclass(frozen=True, slots=True)
class TokenServerSettings:
    key: str
    htpasswd: str
    acl: str
    path: str
    expiration: float = 300.0
    refreshexpiration: float = 30 * 86400.0
    embedded: bool = False
    addr: str = ":5001"


@dataclass(frozen=True, slots=True)
class TokenSettings:
    realm: str
    service: str
    issuer: str
    rootcertbundle: str | None = None
    jwks: str | None = None
    algorithms: tuple[str, ...] = ()
    uploadgrace: float = 0.0
    server: TokenServerSettings | None = None


@dataclass(frozen=True, slots=True)
class HtpasswdSettings:
    realm: str
    path: str


AuthSettings = TokenSettings | HtpasswdSettings


def parse(section: Any) -> AuthSettings | None:
    """The checked `auth` section; None when no access control is configured."""
    auth = Section(section, "auth")
    if not auth.raw:
        return None
    (kind, _), = auth.raw.items()
    params = auth.section(str(kind))
    if kind == "token":
        return token_settings(params)
    if kind == "htpasswd":
        return HtpasswdSettings(realm=params.required("realm"), path=params.required("path"))
    raise ConfigError(f"auth.{kind}: unsupported access controller (fastreg has token, htpasswd)")


def token_settings(p: Section) -> TokenSettings:
    from fastreg.auth.token import check_algorithms  # jwt and cryptography: only with tokens

    try:
        algorithms = check_algorithms(p.strlist("signingalgorithms"))
    except ValueError as exc:
        raise ConfigError(f"{p.key('signingalgorithms')}: {exc}") from None
    realm = p.required("realm")
    server = p.section("tokenserver")
    settings = TokenSettings(
        realm=realm,
        service=p.required("service"),
        issuer=p.required("issuer"),
        rootcertbundle=p.optional("rootcertbundle") or None,
        jwks=p.optional("jwks") or None,
        algorithms=algorithms,
        uploadgrace=_not_negative(p, "uploadgrace", 0.0),
        server=_server(server, realm) if server.raw else None,
    )
    embedded = settings.server is not None and settings.server.embedded
    if not (settings.rootcertbundle or settings.jwks or embedded):
        raise ConfigError(
            f"{p.path}: needs rootcertbundle or jwks (or an embedded tokenserver) to verify tokens"
        )
    return settings


def _server(p: Section, realm: str) -> TokenServerSettings:
    unknown = sorted(str(k) for k in p.raw if k not in _SERVER_KEYS)
    if unknown:
        raise ConfigError(f"{p.path}: unknown keys {', '.join(unknown)}")
    path = p.optional("path") or urllib.parse.urlsplit(realm).path or "/token"
    if not path.startswith("/") or path == "/v2" or path.startswith("/v2/"):
        raise ConfigError(f"{p.key('path')}: {path!r} must be an absolute path outside /v2/")
    expiration = _not_negative(p, "expiration", 300.0)
    refresh = _not_negative(p, "refreshexpiration", 30 * 86400.0)
    if expiration <= 0 or refresh <= 0:
        raise ConfigError(f"{p.path}: expiration and refreshexpiration must be positive")
    return TokenServerSettings(
        key=p.required("key"),
        htpasswd=p.required("htpasswd"),
        acl=p.required("acl"),
        path=path,
        expiration=expiration,
        refreshexpiration=refresh,
        embedded=p.flag("embedded"),
        addr=p.optional("addr") or ":5001",
    )


def _not_negative(p: Section, key: str, default: float) -> float:
    seconds = p.duration(key, default)
    if seconds < 0:
        raise ConfigError(f"{p.key(key)}: must not be negative")
    return seconds
