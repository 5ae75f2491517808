"""The built-in token issuer: htpasswd users + an ACL file -> registry bearer tokens.

Speaks both token protocols clients use (Docker token spec, "Token Authentication
Specification" and "OAuth2 Token Authentication"):
  GET  <path>?service=&scope=&scope=[&offline_token=true]   Basic credentials or none (anonymous)
       -> {"token", "access_token", "expires_in", "issued_at"[, "refresh_token"]}
  POST <path>  grant_type=password (username, password) | refresh_token (refresh_token),
       service, scope (space separated), access_type=offline  -> {"access_token", "scope", ...}
It grants the intersection of what was asked for and what the ACL allows, and never fails only
because that is less than was asked. Tokens are RS256 or ES256 (by the key's type) with a libtrust
`kid`, so a stock Distribution accepts them too. Refresh tokens are signed the same way, for an
audience no registry accepts, and stop working when the user leaves the htpasswd file.

`fastreg token-server config.yml` serves it alone; `auth.token.tokenserver.embedded: true`
mounts it in the registry process.
"""

from __future__ import annotations

import datetime
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import jwt
import orjson
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from fastreg.api.context import REQUEST_IDS, RequestIds
from fastreg.api.middleware import access_log, errors
from fastreg.auth.access import Scope, parse_scopes
from fastreg.auth.acl import ACL, parse_acl
from fastreg.auth.htpasswd import HtpasswdFile
from fastreg.auth.keys import PublicKey, as_public_key, libtrust_key_id
from fastreg.auth.settings import TokenServerSettings, TokenSettings
from fastreg.auth.watch import WatchedFile

log = logging.getLogger("fastreg.tokenserver")

MAX_FORM = 64 * 1024
BASIC_REALM = "fastreg token server"


class SigningKey:
    def __init__(self, private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> None:
        self.private = private
        self.public: PublicKey = as_public_key(private.public_key())
        self.algorithm = "RS256" if isinstance(private, rsa.RSAPrivateKey) else "ES256"
        self.kid = libtrust_key_id(self.public)

    @classmethod
    def load(cls, path: str) -> SigningKey:
        with open(path, "rb") as f:
            key = load_pem_private_key(f.read(), password=None)
        if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048:
            return cls(key)
        if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1":
            return cls(key)
        raise ValueError(f"{path}: expected an RSA (>= 2048 bits) or EC P-256 private key")


class Issuer:
    def __init__(
        self,
        settings: TokenServerSettings,
        issuer: str,
        service: str,
        key: SigningKey,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.issuer = issuer
        self.service = service
        self.key = key
        self.users = HtpasswdFile(settings.htpasswd)
        self.acl: WatchedFile[ACL] = WatchedFile(settings.acl, parse_acl)
        self._clock = clock

    @classmethod
    def load(cls, settings: TokenSettings) -> Issuer:
        """Read the key, users and ACL now (blocking; at start-up). OSError/ValueError on trouble."""
        assert settings.server is not None
        issuer = cls(settings.server, settings.issuer, settings.service,
                     SigningKey.load(settings.server.key))
        issuer.users.load()
        try:
            issuer.acl.load()
        except ValueError as exc:
            raise ValueError(f"{settings.server.acl}: {exc}") from None
        return issuer

    # -- tokens ---------------------------------------------------------------------------

    def issue(self, subject: str, access: list[dict[str, Any]]) -> dict[str, Any]:
        now = int(self._clock())
        lifetime = int(self.settings.expiration)
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + lifetime,
            "nbf": now,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        token = self._sign(claims)
        issued_at = datetime.datetime.fromtimestamp(now, datetime.UTC)
        return {
            "token": token,
            "access_token": token,
            "expires_in": lifetime,
            "issued_at": issued_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    def refresh_token(self, subject: str) -> str:
        now = int(self._clock())
        return self._sign({
            "iss": self.issuer,
            "sub": subject,
            "aud": self._refresh_audience,
            "exp": now + int(self.settings.refreshexpiration),
            "iat": now,
            "jti": secrets.token_hex(16),
        })

    def subject_of_refresh(self, token: str) -> str | None:
        try:
            claims = jwt.decode(
                token, self.key.public, algorithms=[self.key.algorithm],
                audience=self._refresh_audience, issuer=self.issuer,
                options={"require": ["exp", "sub"]},
            )
        except jwt.PyJWTError:
            return None
        subject = claims.get("sub")
        return subject if isinstance(subject, str) and subject else None

    @property
    def _refresh_audience(self) -> str:
        return f"{self.service}#refresh"  # never a registry's service: useless as an access token

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.key.private, algorithm=self.key.algorithm,
                          headers={"kid": self.key.kid})

    async def _grant(self, user: str | None, scopes: list[Scope]) -> list[dict[str, Any]]:
        return (await self.acl.current()).grant(user, scopes)

    # -- HTTP -----------------------------------------------------------------------------

    async def get(self, request: web.Request) -> web.Response:
        if not self._our_service(request.query.get("service")):
            return _oauth_error(400, "invalid_request", "unknown service")
        user: str | None = None
        header = request.headers.get("Authorization")
        if header:
            user = await self.users.authenticate(header)
            if user is None:
                log.info("token request refused: bad credentials")
                return _unauthorized()
        scopes = parse_scopes(request.query.getall("scope", []))
        body = self.issue(user or "", await self._grant(user, scopes))
        if user is not None and request.query.get("offline_token") == "true":
            body["refresh_token"] = self.refresh_token(user)
        return _json(body)

    async def post(self, request: web.Request) -> web.Response:
        if request.content_length is None or request.content_length > MAX_FORM:
            return _oauth_error(400, "invalid_request", "form missing or too large")
        form = await request.post()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        if not self._our_service(fields.get("service")):
            return _oauth_error(400, "invalid_request", "unknown service")
        grant_type = fields.get("grant_type")
        refresh: str | None = None
        if grant_type == "password":
            user = fields.get("username", "")
            if not user or not await self.users.check(user, fields.get("password", "")):
                log.info("token request refused: bad credentials")
                return _oauth_error(401, "invalid_grant", "bad username or password")
            if fields.get("access_type") == "offline":
                refresh = self.refresh_token(user)
        elif grant_type == "refresh_token":
            refresh = fields.get("refresh_token", "")
            subject = self.subject_of_refresh(refresh)
            if subject is None or not await self.users.exists(subject):
                return _oauth_error(401, "invalid_grant", "refresh token not valid")
            user = subject
        else:
            return _oauth_error(400, "unsupported_grant_type", "grant_type must be password "
                                "or refresh_token")
        scopes = parse_scopes(v for k, v in form.items() if k == "scope" and isinstance(v, str))
        access = await self._grant(user, scopes)
        issued = self.issue(user, access)
        body: dict[str, Any] = {
            "access_token": issued["access_token"],
            "scope": " ".join(f"{a['type']}:{a['name']}:{','.join(a['actions'])}" for a in access),
            "expires_in": issued["expires_in"],
            "issued_at": issued["issued_at"],
        }
        if refresh is not None:
            body["refresh_token"] = refresh
        return _json(body)

    def _our_service(self, service: str | None) -> bool:
        return service is None or service == "" or service == self.service


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    response = _json({"error": error, "error_description": description}, status)
    if status == 401:
        response.headers["WWW-Authenticate"] = f'Basic realm="{BASIC_REALM}"'
    return response


def _unauthorized() -> web.Response:
    body = {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
    response = _json(body, 401)
    response.headers["WWW-Authenticate"] = f'Basic realm="{BASIC_REALM}"'
    return response


def add_token_routes(app: web.Application, issuer: Issuer) -> None:
    path = issuer.settings.path
    app.router.add_get(path, issuer.get, allow_head=False)
    app.router.add_post(path, issuer.post)


def create_token_app(settings: TokenSettings) -> web.Application:
    """The issuer alone (`fastreg token-server`). Raises OSError/ValueError on unusable files."""
    app = web.Application(middlewares=[access_log, errors], client_max_size=MAX_FORM)
    app[REQUEST_IDS] = RequestIds()  # access_log names each request
    add_token_routes(app, Issuer.load(settings))
    return app
