"""Bearer-token access (`auth.token`): verified JWTs cached until expiry, and upload grace (an
expired token admitted for an upload its subject opened: the grant and its rule are the
registry's, `fastreg.registry.grants`; this module only says who and until when).

A module of its own so that jwt and cryptography (about 9 MiB per worker) are loaded only by a
registry configured for tokens: `middleware.build_controller` imports it then.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from aiohttp import web

from fastreg.api.context import REQUEST_ID, registry_of
from fastreg.auth.access import MAX_TOKEN, Required, printable_name, scope_param
from fastreg.auth.cache import CredentialCache
from fastreg.auth.identity import Identity, challenge, quoted, read_config_file
from fastreg.auth.keys import TrustStore, load_bundle, load_jwks
from fastreg.auth.settings import TokenSettings
from fastreg.auth.token import Claims, ExpiredToken, InvalidToken, TokenVerifier
from fastreg.auth.tokenserver import Issuer
from fastreg.registry.errors import RegistryError
from fastreg.registry.grants import GrantNotStored

log = logging.getLogger("fastreg.auth")


def build_token_controller(settings: TokenSettings) -> tuple[TokenController, Issuer | None]:
    """The token controller and the embedded issuer (if any), their key files read now."""
    issuer = None
    if settings.server is not None and settings.server.embedded:
        issuer = read_config_file("auth.token.tokenserver", lambda: Issuer.load(settings))
    roots = read_config_file("auth.token.rootcertbundle", lambda: load_bundle(settings.rootcertbundle or ""))\
        if settings.rootcertbundle else []
    jwks = read_config_file("auth.token.jwks", lambda: load_jwks(settings.jwks or "")) \
        if settings.jwks else []
    trust = TrustStore.build(roots, jwks, [issuer.key.public] if issuer else [])
    verifier = TokenVerifier(trust, settings.issuer, settings.service, settings.algorithms)
    return TokenController(settings, verifier), issuer


class TokenController:
    def __init__(self, settings: TokenSettings, verifier: TokenVerifier) -> None:
        self.settings = settings
        self.verifier = verifier
        self.cache: CredentialCache[Claims] = CredentialCache()
        self._prefix = f"Bearer realm={quoted(settings.realm)},service={quoted(settings.service)}"

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
                                                 "http.request.id": request.get(REQUEST_ID)})
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
        """Have the registry remember who opened the upload, and until when it may go on."""
        if self.settings.uploadgrace <= 0 or identity.claims is None:
            return
        deadline = identity.claims.expires + self.verifier.leeway + self.settings.uploadgrace
        try:
            await registry_of(request).upload_grants.record(
                name, upload_id, identity.subject, deadline
            )
        except GrantNotStored as exc:
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
        own = claims.expires + self.verifier.leeway + self.settings.uploadgrace
        grants = registry_of(request).upload_grants
        if not await grants.admits(name, upload_id, claims.subject, own, time.time()):
            return None
        log.info("expired token admitted for its upload (uploadgrace)",
                 extra={"upload_id": upload_id, "repository": name,
                        "http.request.id": request.get(REQUEST_ID)})
        return Identity(claims.subject, claims.grants)
