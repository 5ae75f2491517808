"""The access check: one middleware, run once when a request starts, before any handler.

`setup_auth(app, config)` installs it (inside the `errors` middleware, so a refusal is the OCI
error body) with the configured controller: `TokenController` (`auth.token`) or
`HtpasswdController` (`auth.htpasswd`). The route is found with the API's own route table, the
required access derived from route, method and repository (`fastreg.auth.access`), and the
controller either answers with an identity or raises the 401 challenge. Nothing re-checks later,
so a request that started with a valid credential finishes however long its body streams.

Never logged: tokens, passwords, Authorization headers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from fastreg.api.context import ACTOR, MOUNT_FROM_ALLOWED, REQUEST_ID, registry_of
from fastreg.api.routes import resolve
from fastreg.auth.access import (
    PULL,
    REPOSITORY,
    Access,
    Grants,
    Required,
    printable_name,
    required_access,
    scope_param,
)
from fastreg.auth.cache import CredentialCache
from fastreg.auth.htpasswd import HtpasswdFile
from fastreg.auth.keys import TrustStore, load_bundle, load_jwks
from fastreg.auth.settings import HtpasswdSettings, TokenSettings, auth_settings
from fastreg.auth.token import MAX_TOKEN, Claims, ExpiredToken, InvalidToken, TokenVerifier
from fastreg.auth.tokenserver import Issuer, add_token_routes
from fastreg.config import Config, ConfigError
from fastreg.registry import layout
from fastreg.registry.errors import ErrorCode, RegistryError
from fastreg.registry.names import MAX_NAME_LENGTH, NAME_RE
from fastreg.registry.uploads import check_upload_id
from fastreg.storage.base import StorageError

log = logging.getLogger("fastreg.auth")

MAX_AUTHORIZATION = MAX_TOKEN + 16
MAX_GRANT = 4096
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Identity:
    subject: str
    grants: Grants
    claims: Claims | None = None  # a token's, when it was valid (not admitted by grace)


class AccessController(Protocol):
    async def authorize(
        self, request: web.Request, route: str, params: Mapping[str, str], required: Required
    ) -> Identity:
        """The caller's identity, or RegistryError(UNAUTHORIZED) carrying the challenge."""
        ...

    async def opened_upload(
        self, request: web.Request, name: str, upload_id: str, identity: Identity
    ) -> None:
        """Called after an upload session opened (POST answered 202)."""
        ...


ACCESS: web.AppKey[AccessController] = web.AppKey("access")


@web.middleware
async def authorize(request: web.Request, handler: Handler) -> web.StreamResponse:
    found = resolve(request)
    if found is None:
        return await handler(request)  # not an API route: dispatch answers 404 by itself
    route, params = found
    required = required_access(route.name, request.method, params.get("name"), request.query)
    controller = request.app[ACCESS]
    identity = await controller.authorize(request, route.name, params, required)
    if identity.subject:
        request[ACTOR] = identity.subject  # the `actor.name` of notification events
    if required.mount_from is not None:
        source = Access(REPOSITORY, required.mount_from, PULL)
        request[MOUNT_FROM_ALLOWED] = identity.grants.allows(source)
    response = await handler(request)
    if route.name == "upload_start" and response.status == 202:
        upload_id = response.headers.get("Docker-Upload-UUID")
        if upload_id:
            await controller.opened_upload(request, params["name"], upload_id, identity)
    return response


def challenge(header: str, required: Required) -> RegistryError:
    """401 UNAUTHORIZED with the required access as detail, as Distribution answers."""
    detail = [a.detail() for a in required.challenge_accesses()]
    return RegistryError(ErrorCode.UNAUTHORIZED, detail=detail,
                         headers={"WWW-Authenticate": header})


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class HtpasswdController:
    """Distribution's htpasswd access: a valid user may do everything."""

    def __init__(self, realm: str, users: HtpasswdFile) -> None:
        self.users = users
        self._challenge = f"Basic realm={_quoted(realm)}"

    async def authorize(
        self, request: web.Request, route: str, params: Mapping[str, str], required: Required
    ) -> Identity:
        header = request.headers.get("Authorization", "")
        user = None
        if header and len(header) <= MAX_AUTHORIZATION:
            user = await self.users.authenticate(header)
        if user is None:
            raise challenge(self._challenge, required)
        return Identity(user, Grants.everything())

    async def opened_upload(
        self, request: web.Request, name: str, upload_id: str, identity: Identity
    ) -> None:
        return None


class TokenController:
    def __init__(self, settings: TokenSettings, verifier: TokenVerifier) -> None:
        self.settings = settings
        self.verifier = verifier
        self.cache: CredentialCache[Claims] = CredentialCache()
        self._prefix = f"Bearer realm={_quoted(settings.realm)},service={_quoted(settings.service)}"

    async def authorize(
        self, request: web.Request, route: str, params: Mapping[str, str], required: Required
    ) -> Identity:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header[:7].lower() == "bearer " else ""
        if not token or " " in token:
            raise self.challenge(required, None)
        if len(token) > MAX_TOKEN:
            raise self.challenge(required, "invalid_token")
        raw = token.encode("utf-8", "surrogateescape")
        claims = self.cache.get(raw)
        if claims is None:
            try:
                claims = self.verifier.verify(token)
                claims.check_time(time.time(), self.verifier.leeway)
            except ExpiredToken:
                assert claims is not None
                graced = await self._graced(request, route, params, required, claims)
                if graced is None:
                    raise self.challenge(required, "invalid_token") from None
                return graced
            except InvalidToken as exc:
                log.info("token refused", extra={"reason": str(exc),
                                                 "request_id": request.get(REQUEST_ID)})
                raise self.challenge(required, "invalid_token") from None
            self.cache.put(raw, claims, claims.expires + self.verifier.leeway)
        # a mount needs pull on `from` too (as in Distribution): without it the client is told
        # which scope to fetch instead of silently re-uploading the blob
        if not claims.grants.allows_all(required.challenge_accesses()):
            raise self.challenge(required, "insufficient_scope")
        return Identity(claims.subject, claims.grants, claims)

    def challenge(self, required: Required, error: str | None) -> RegistryError:
        header = self._prefix
        scope = scope_param(a for a in required.challenge_accesses() if printable_name(a.name))
        if scope:
            header += f',scope="{scope}"'
        if error is not None:
            header += f',error="{error}"'
        return challenge(header, required)

    # -- upload grace ------------------------------------------------------------------------

    async def opened_upload(
        self, request: web.Request, name: str, upload_id: str, identity: Identity
    ) -> None:
        """Remember who opened the upload, next to it on storage (any worker can read it)."""
        if self.settings.uploadgrace <= 0 or identity.claims is None:
            return
        deadline = identity.claims.expires + self.verifier.leeway + self.settings.uploadgrace
        grant = {"repository": name, "subject": identity.subject, "deadline": deadline}
        try:
            await registry_of(request).driver.put_content(
                layout.upload_authgrant(name, upload_id), orjson.dumps(grant)
            )
        except StorageError as exc:
            log.warning("upload grant not stored; no grace for this upload",
                        extra={"upload_id": upload_id, "error": str(exc)})

    async def _graced(
        self,
        request: web.Request,
        route: str,
        params: Mapping[str, str],
        required: Required,
        claims: Claims,
    ) -> Identity | None:
        """An expired (but otherwise valid) token continuing an upload its subject opened."""
        if self.settings.uploadgrace <= 0 or route != "upload":
            return None
        if not claims.grants.allows_all(required.accesses):
            return None
        name, upload_id = params["name"], params["uuid"]
        if len(name) > MAX_NAME_LENGTH or not NAME_RE.fullmatch(name):
            return None
        try:
            check_upload_id(upload_id)
            raw = await registry_of(request).driver.get_content(
                layout.upload_authgrant(name, upload_id), limit=MAX_GRANT
            )
            grant = orjson.loads(raw)
        except (RegistryError, StorageError, orjson.JSONDecodeError):
            return None
        if not isinstance(grant, dict) or grant.get("repository") != name:
            return None
        if grant.get("subject") != claims.subject:
            return None
        deadline = grant.get("deadline")
        if not isinstance(deadline, (int, float)):
            return None
        own = claims.expires + self.verifier.leeway + self.settings.uploadgrace
        if time.time() > max(deadline, own):
            return None
        log.info("expired token admitted for its upload (uploadgrace)",
                 extra={"upload_id": upload_id, "repository": name,
                        "request_id": request.get(REQUEST_ID)})
        return Identity(claims.subject, claims.grants)


# -- wiring ------------------------------------------------------------------------------------


def build_controller(config: Config) -> tuple[AccessController, Issuer | None] | None:
    """The controller the config asks for, its files read now; ConfigError names what is wrong."""
    settings = auth_settings(config)
    if settings is None:
        return None
    if isinstance(settings, HtpasswdSettings):
        users = HtpasswdFile(settings.path)
        _read("auth.htpasswd.path", users.load)
        return HtpasswdController(settings.realm, users), None
    for warning in settings.warnings:
        log.warning(warning)
    issuer = None
    if settings.server is not None and settings.server.embedded:
        issuer = _read("auth.token.tokenserver", lambda: Issuer.load(settings))
    roots = _read("auth.token.rootcertbundle", lambda: load_bundle(settings.rootcertbundle or ""))\
        if settings.rootcertbundle else []
    jwks = _read("auth.token.jwks", lambda: load_jwks(settings.jwks or "")) \
        if settings.jwks else []
    trust = TrustStore.build(roots, jwks, [issuer.key.public] if issuer else [])
    verifier = TokenVerifier(trust, settings.issuer, settings.service, settings.algorithms)
    return TokenController(settings, verifier), issuer


def _read(what: str, load: Callable[[], T]) -> T:
    try:
        return load()
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{what}: {exc}") from None


def check_auth(config: Config) -> None:
    """Read and check everything `auth:` names, at start (ConfigError names what is wrong)."""
    build_controller(config)


def setup_auth(app: web.Application, config: Config) -> None:
    """Install access control when `auth:` is configured (call after the errors middleware)."""
    built = build_controller(config)
    if built is None:
        return
    controller, issuer = built
    app[ACCESS] = controller
    app.middlewares.append(authorize)
    if issuer is not None:
        add_token_routes(app, issuer)
