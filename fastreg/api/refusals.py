"""Answers to requests refused before any route runs, in the registry's own error format.

aiohttp's HTTP parser bounds each header line and the number of headers, but not their total: it
holds every header of a request until the last arrives, so 512 headers of 256 KiB each (what
the limits in ``server`` allow, for long tokens and many headers) held 250 MiB per connection,
four connections 1 GB (measured). The connection handler here counts the bytes of a request's
head as they arrive and refuses past ``MAX_HEADER_BYTES`` (Go's net/http default, which
Distribution serves with: 1 MiB) with a 431, closing the connection before it holds more.

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
call, its ``data_received`` reads two of aiohttp's attributes (the queue of parsed requests and
their count), and its responses drop ``Server`` after aiohttp's header preparation: the places we reach below aiohttp's public API, covered by
``tests/integration/test_hostile_input.py``.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus

from aiohttp import hdrs, web
from aiohttp.streams import StreamReader
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


MAX_HEADER_BYTES = 1 << 20
LINGER_SECONDS = 2.0  # how long a refused connection is read on, and at most how much
LINGER_BYTES = 8 << 20


class _RegistryRequestHandler(RequestHandler):
    # bytes received for the head of the request being parsed (None once refused), and the
    # body of the last request parsed (the bytes that follow its head are its until it ends)
    _head_bytes: int | None = 0
    _last_body: StreamReader | None = None

    _discarded = 0

    def data_received(self, data: bytes) -> None:
        if self._head_bytes is None:  # refused: read on so the client gets the answer
            self._discarded += len(data)
            if self._discarded > LINGER_BYTES and self.transport is not None:
                self.transport.abort()
            return
        before = self._request_count
        super().data_received(data)
        if self._request_count != before:
            self._head_bytes = 0  # a whole head was parsed
            self._last_body = self._messages[-1][1]
            return
        if self._last_body is not None and not self._last_body.is_eof():
            return  # body bytes of the request being read
        self._head_bytes += len(data)
        if self._head_bytes > MAX_HEADER_BYTES:
            self._refuse_head()

    def _refuse_head(self) -> None:
        self._head_bytes = None
        self.logger.warning("malformed request refused: headers larger than %d bytes",
                            MAX_HEADER_BYTES)
        body = error_body([RegistryError(
            ErrorCode.UNKNOWN, "malformed request: Request Header Fields Too Large")])
        if self.transport is not None:
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body))
            self._linger(self.transport)

    def _linger(self, transport: asyncio.Transport) -> None:
        """Close for writing and read on, discarding, for a moment: closing with the client's
        bytes unread would reset the connection, and the reset can overtake the answer (as Go's
        net/http, which lingers the same way). The parser is fed nothing more, so what it held
        is freed; only the descriptor stays, for at most ``LINGER_SECONDS``."""
        if transport.can_write_eof():
            transport.write_eof()
            asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.abort)
        else:
            transport.close()

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
