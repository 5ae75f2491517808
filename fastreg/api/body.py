"""Request bodies as the socket delivers them, with an idle timeout (`http.readtimeout`).

A client that sends the headers and part of a body and then stops holds a connection, a
descriptor, an upload's lease and up to a batch of memory for as long as it likes: aiohttp has no
timeout on reading a body. Each read here may wait at most `readtimeout` for the next bytes (an
idle timeout, reset by every chunk, like Caddy's `read_body_idle`: a slow client that keeps
sending is never cut); a stalled one has its connection reset and the request fails with
BLOB_UPLOAD_INVALID (the client, which is not reading, sees the reset). `asyncio.timeout` arms
one timer handle per chunk, no task: a few microseconds per 64-256 KiB chunk.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from fastreg.api.context import HTTP
from fastreg.api.sendfile import cut


class BodyStalled(ConnectionResetError):
    """The client sent no body byte for `http.readtimeout`."""


async def body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    """The request body as received. `readchunk` hands over each received buffer as it is,
    where `iter_any` would first join everything buffered into a new bytes."""
    if not request.body_exists:
        # aiohttp's shared empty stream answers (b"", True) for ever once anyone has read its
        # end: reading it would never end
        return
    content = request.content
    idle = request.app[HTTP].readtimeout
    while True:
        try:
            async with asyncio.timeout(idle):
                data, end_of_http_chunk = await content.readchunk()
        except TimeoutError:
            if request.transport is not None:
                cut(request.transport)  # its unread body makes the connection useless
            raise BodyStalled(f"no request body byte for {idle:g}s") from None
        if data:
            yield data
        elif not end_of_http_chunk:
            return  # (b"", False) is the end of the body; (b"", True) only a chunk boundary

