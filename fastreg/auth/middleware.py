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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler

from fastreg.api.context import ACTOR, MOUNT_FROM_ALLOWED
from fastreg.api.routes import resolve
from fastreg.auth.access import (
    MAX_TOKEN,
    PULL,
    REPOSITORY,
    Access,
    Grants,
    Required,
    required_access,
)
from fastreg.auth.htpasswd import HtpasswdFile
from fastreg.auth.settings import HtpasswdSettings
from fastreg.config import Config, ConfigError
from fastreg.registry.errors import ErrorCode, RegistryError

if TYPE_CHECKING:  # the token modules load jwt and cryptography: only when tokens are used
    from fastreg.auth.token import Claims
    from fastreg.auth.tokenserver import Issuer

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


# -- wiring ------------------------------------------------------------------------------------


def build_controller(config: Config) -> tuple[AccessController, Issuer | None] | None:
    """The controller the config asks for, its files read now; ConfigError names what is wrong."""
    settings = config.auth
    if settings is None:
        return None
    if isinstance(settings, HtpasswdSettings):
        users = HtpasswdFile(settings.path)
        _read("auth.htpasswd.path", users.load)
        return HtpasswdController(settings.realm, users), None
    from fastreg.auth.tokenauth import build_token_controller

    return build_token_controller(settings)


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
        from fastreg.auth.tokenserver import add_token_routes

        add_token_routes(app, issuer)
