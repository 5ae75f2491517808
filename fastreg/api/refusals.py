"""Answers to requests refused before any route runs, in the registry's own error format.

aiohttp's HTTP parser refuses some requests itself (a duplicate Host or Content-Length, a line
past the limits, too many headers, a method it does not know) and its connection handler answers
them, and any exception that escapes the application, with a plain-text page. That page bypasses
the application's middlewares and its response hooks, so it carried ``Server: Python/3.11
aiohttp/3.x`` (naming the runtime to an attacker) and no OCI error body (a client's error parser
gets nothing). ``RegistryRunner`` is an ``AppRunner`` whose connection handlers answer these with
the OCI body: ``UNKNOWN`` and 400 for a refusal (the client's fault; no code of the spec names
it), ``UNKNOWN`` and 500 otherwise, never a Server header; the connection is closed as before.

aiohttp builds its connection handlers in ``Server.__call__`` with no hook to choose their
class, so the runner re-classes the ``Server`` it made to a subclass that only overrides that
call, and its responses drop ``Server`` after aiohttp's header preparation: the two places we reach below aiohttp's public API, covered by
``tests/integration/test_hostile_input.py``.
"""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import hdrs, web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from fastreg.api.errors import error_body
from fastreg.registry.errors import ErrorCode, RegistryError


class _BareResponse(web.Response):
    """A response without the ``Server`` header aiohttp sets while preparing headers (the
    application's hook that drops it elsewhere does not run for these)."""

    async def _prepare_headers(self) -> None:
        await super()._prepare_headers()
        self.headers.popall(hdrs.SERVER, None)


class _RegistryRequestHandler(RequestHandler):
    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp's own handling logs the failure (logs.MalformedRequests makes a refusal one
        # warning line) and raises ConnectionError when a response had already started
        super().handle_error(request, status, exc, message)
        refused = 400 <= status < 500
        err = RegistryError(
            ErrorCode.UNKNOWN,
            f"malformed request: {HTTPStatus(status).phrase}" if refused else None,
        )
        resp = _BareResponse(status=status if refused else 500, body=error_body([err]),
                            content_type="application/json")
        resp.force_close()
        return resp


class _RegistryServer(Server):
    def __call__(self) -> RequestHandler:
        return _RegistryRequestHandler(self, loop=self._loop, **self._kwargs)


class RegistryRunner(web.AppRunner):
    """An ``AppRunner`` whose refusals and unhandled failures answer in the OCI error format."""

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        server.__class__ = _RegistryServer
        return server
