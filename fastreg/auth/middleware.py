"""The access check: one middleware, run once when a request starts, before any handler.

`setup_auth(app, config)` configures the controller: `TokenController` (`auth.token`) or
`HtpasswdController` (`auth.htpasswd`); the pipeline (`fastreg.server.pipeline`) then runs
`authorize` inside the `errors` middleware, so a refusal is the OCI error body. The route is the
one the pipeline resolved (`RESOLVED`), the required access derived from route, method and
repository (`fastreg.auth.access`), and the controller either answers with an identity or raises
the 401 challenge. The identity goes on the request (`CALLER`) for the registry's mount rule:
what a caller may do is decided there, not here. Nothing re-checks later, so a request that
started with a valid credential finishes however long its body streams.

Never logged: tokens, passwords, Authorization headers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Handler

from fastreg.api.context import ACTOR, CALLER, RESOLVED, Resolved
from fastreg.auth.access import Grants, Required, required_access
from fastreg.auth.htpasswd import HtpasswdFile
from fastreg.auth.identity import (
    MAX_AUTHORIZATION,
    AccessController,
    Identity,
    challenge,
    quoted,
    read_config_file,
)
from fastreg.auth.settings import HtpasswdSettings
from fastreg.config import Config

if TYPE_CHECKING:  # the token modules load jwt and cryptography: only when tokens are used
    from fastreg.auth.tokenserver import Issuer

log = logging.getLogger("fastreg.auth")

ACCESS: web.AppKey[AccessController] = web.AppKey("access")


@web.middleware
async def authorize(request: web.Request, handler: Handler) -> web.StreamResponse:
    resolved: Resolved | None = request.get(RESOLVED)
    if resolved is None:
        return await handler(request)  # not an API route: dispatch answers 404 by itself
    route, params = resolved.route.name, resolved.params
    required = required_access(route, request.method, params.get("name"), request.query)
    controller = request.app[ACCESS]
    identity = await controller.authorize(request, route, params, required)
    if identity.subject:
        request[ACTOR] = identity.subject  # the `actor.name` of notification events
    request[CALLER] = identity  # whom the registry's mount rule asks
    response = await handler(request)
    if route == "upload_start" and response.status == 202:
        upload_id = response.headers.get("Docker-Upload-UUID")
        if upload_id:
            await controller.opened_upload(request, params["name"], upload_id, identity)
    return response


class HtpasswdController:
    """Distribution's htpasswd access: a valid user may do everything."""

    def __init__(self, realm: str, users: HtpasswdFile) -> None:
        self.users = users
        self._challenge = f"Basic realm={quoted(realm)}"

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
        read_config_file("auth.htpasswd.path", users.load)
        return HtpasswdController(settings.realm, users), None
    from fastreg.auth.tokenauth import build_token_controller

    return build_token_controller(settings)


def check_auth(config: Config) -> None:
    """Read and check everything `auth:` names, at start (ConfigError names what is wrong)."""
    build_controller(config)


def setup_auth(app: web.Application, config: Config) -> None:
    """Configure access control when `auth:` asks for it: with a controller under `ACCESS`,
    the pipeline (`fastreg.server.pipeline`) includes `authorize`."""
    built = build_controller(config)
    if built is None:
        return
    controller, issuer = built
    app[ACCESS] = controller
    if issuer is not None:
        from fastreg.auth.tokenserver import add_token_routes

        add_token_routes(app, issuer)
