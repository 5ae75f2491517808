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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastreg.config import Config, ConfigError
from fastreg.configkeys import as_bool, as_duration, as_str, as_strlist

_TOKEN_KEYS = frozenset({"realm", "service", "issuer", "rootcertbundle", "jwks",
                         "signingalgorithms", "uploadgrace", "tokenserver"})
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
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HtpasswdSettings:
    realm: str
    path: str


AuthSettings = TokenSettings | HtpasswdSettings


def auth_settings(config: Config) -> AuthSettings | None:
    """The checked auth settings; None when no access control is configured."""
    if not config.auth:
        return None
    (kind, params), = config.auth.items()
    params = params or {}
    if not isinstance(params, Mapping):
        raise ConfigError(f"auth.{kind}: expected a mapping")
    if kind == "token":
        return token_settings(params)
    if kind == "htpasswd":
        return HtpasswdSettings(
            realm=_required(params, "realm", "auth.htpasswd"),
            path=_required(params, "path", "auth.htpasswd"),
        )
    raise ConfigError(f"auth.{kind}: unsupported access controller (fastreg has token, htpasswd)")


def token_settings(params: Mapping[str, Any]) -> TokenSettings:
    where = "auth.token"
    warnings = tuple(f"{where}.{k}: unknown key, ignored" for k in params if k not in _TOKEN_KEYS)
    from fastreg.auth.token import check_algorithms  # jwt and cryptography: only with tokens

    try:
        algorithms = check_algorithms(
            as_strlist(_thawed(params.get("signingalgorithms")), f"{where}.signingalgorithms")
        )
    except ValueError as exc:
        raise ConfigError(f"{where}.signingalgorithms: {exc}") from None
    realm = _required(params, "realm", where)
    server = params.get("tokenserver")
    settings = TokenSettings(
        realm=realm,
        service=_required(params, "service", where),
        issuer=_required(params, "issuer", where),
        rootcertbundle=_optional(params, "rootcertbundle", where),
        jwks=_optional(params, "jwks", where),
        algorithms=algorithms,
        uploadgrace=_duration(params.get("uploadgrace"), 0.0, f"{where}.uploadgrace"),
        server=_server(server, realm) if server is not None else None,
        warnings=warnings,
    )
    embedded = settings.server is not None and settings.server.embedded
    if not (settings.rootcertbundle or settings.jwks or embedded):
        raise ConfigError(
            f"{where}: needs rootcertbundle or jwks (or an embedded tokenserver) to verify tokens"
        )
    return settings


def _server(params: Any, realm: str) -> TokenServerSettings:
    where = "auth.token.tokenserver"
    if not isinstance(params, Mapping):
        raise ConfigError(f"{where}: expected a mapping")
    unknown = sorted(str(k) for k in params if k not in _SERVER_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {', '.join(unknown)}")
    path = _optional(params, "path", where) or urllib.parse.urlsplit(realm).path or "/token"
    if not path.startswith("/") or path == "/v2" or path.startswith("/v2/"):
        raise ConfigError(f"{where}.path: {path!r} must be an absolute path outside /v2/")
    expiration = _duration(params.get("expiration"), 300.0, f"{where}.expiration")
    refresh = _duration(params.get("refreshexpiration"), 30 * 86400.0, f"{where}.refreshexpiration")
    if expiration <= 0 or refresh <= 0:
        raise ConfigError(f"{where}: expiration and refreshexpiration must be positive")
    embedded = params.get("embedded")
    return TokenServerSettings(
        key=_required(params, "key", where),
        htpasswd=_required(params, "htpasswd", where),
        acl=_required(params, "acl", where),
        path=path,
        expiration=expiration,
        refreshexpiration=refresh,
        embedded=False if embedded is None else as_bool(embedded, f"{where}.embedded"),
        addr=_optional(params, "addr", where) or ":5001",
    )


def _required(params: Mapping[str, Any], key: str, where: str) -> str:
    value = _optional(params, key, where)
    if not value:
        raise ConfigError(f"{where}.{key}: required")
    return value


def _optional(params: Mapping[str, Any], key: str, where: str) -> str | None:
    value = params.get(key)
    return None if value is None else as_str(value, f"{where}.{key}")


def _duration(value: Any, default: float, path: str) -> float:
    if value is None:
        return default
    seconds = as_duration(value, path)
    if seconds < 0:
        raise ConfigError(f"{path}: must not be negative")
    return seconds


def _thawed(value: Any) -> Any:
    """The loaded config is frozen (lists are tuples); the shared converters expect lists."""
    return list(value) if isinstance(value, tuple) else value
