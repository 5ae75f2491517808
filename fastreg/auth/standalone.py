"""`fastreg token-server`: the built-in issuer in a process of its own.

It reads the registry's config.yml (`auth.token` and its `tokenserver` section) so both sides
agree on `issuer` and `service` by construction, and listens on `auth.token.tokenserver.addr`
(or `--addr`), with `http.tls` when configured.
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from aiohttp import web

from fastreg.auth.settings import TokenSettings
from fastreg.auth.tokenserver import create_token_app
from fastreg.config import Config, ConfigError, HTTPConfig

log = logging.getLogger("fastreg.tokenserver")


def token_app(config: Config, addr: str | None) -> tuple[web.Application, str, int]:
    """The issuer application and where it listens; ConfigError names what is wrong."""
    settings = config.auth
    if not isinstance(settings, TokenSettings) or settings.server is None:
        raise ConfigError("auth.token.tokenserver: required by `fastreg token-server`")
    host, port = HTTPConfig(addr=addr or settings.server.addr).host_port()
    try:
        app = create_token_app(settings)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"auth.token.tokenserver: {exc}") from None
    return app, host, port


def run(app: web.Application, host: str, port: int, ssl_context: ssl.SSLContext | None) -> None:
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency; kept for odd platforms
        loop = asyncio.new_event_loop()
    log.info("token server listening", extra={"address": f"{host}:{port}"})
    web.run_app(app, host=host, port=port, ssl_context=ssl_context, access_log=None,
                print=None, loop=loop)
