"""An upstream blob's body read from the socket straight into 1 MiB batches.

Why not aiohttp's body stream: it hands the body over in socket-sized pieces (up to 256 KiB)
that its parser has copied out of the read buffer, and the upload path then joins them into
1 MiB batches, a second copy. Reading a 1 GiB body that way costs 0.94 CPU s on the loop's
thread; read into the batches themselves (an `asyncio.BufferedProtocol`: the kernel copies into
the batch, nothing else does) 0.51-0.55 s, and the loop's thread is what a cold pull through the
mirror waits for (it also runs every client's response).

How: aiohttp sends the request, follows redirects, parses the head and is given back the
connection, marked not to be reused. Once the head is parsed, the connection's transport is
switched to `BodyInto` for the rest of the body (what aiohttp already read past the head is
taken from its buffer first). Only a body with a Content-Length and no transfer or content
encoding is read so; any other goes through aiohttp's stream (`intake` answers None).

Flow control: at most `DEPTH` + 1 full batches wait for the consumer; past that the socket is
paused. A batch also ends once its first byte has waited `FLUSH` seconds while the consumer
waits (a slow upstream's bytes still reach the mirror's clients soon).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from fastreg.registry.uploads import BATCH, DEPTH

FLUSH = 0.05  # seconds the first byte of a partial batch may wait while the consumer waits


class BodyInto(asyncio.BufferedProtocol):
    """The protocol of a connection whose remaining ``length`` body bytes are read into
    batches. ``inner`` is aiohttp's protocol, told of the end of the connection."""

    def __init__(self, length: int, transport: asyncio.Transport, inner: Any) -> None:
        self.remaining = length
        self.received = 0  # bytes read into batches (the idle watchdog looks at it)
        self.transport = transport
        self._inner = inner
        self.ready: collections.deque[bytearray] = collections.deque()
        self._batch = bytearray(BATCH)
        self._fill = 0
        self._scratch = bytearray(64 * 1024)  # bytes past the announced length are dropped
        self.error: Exception | None = None
        self.ended = False  # the whole body is read, or the connection ended
        self._waiter: asyncio.Future[bool] | None = None
        self._paused = False

    # -- the transport's side --------------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.remaining == 0:
            return memoryview(self._scratch)
        return memoryview(self._batch)[self._fill : self._fill + min(self.remaining, BATCH)]

    def buffer_updated(self, nbytes: int) -> None:
        if self.remaining == 0:
            return  # past the body: dropped
        first = self._fill == 0
        self._fill += nbytes
        self.remaining -= nbytes
        self.received += nbytes
        if self._fill == BATCH:
            self.ready.append(self._batch)
            self._batch, self._fill = bytearray(BATCH), 0
        if self.remaining == 0:
            self.ended = True
            self._pause()  # nothing more is wanted from this connection
        elif len(self.ready) > DEPTH:
            self._pause()
        if self.ready or self.ended or first:  # first: a waiting consumer starts its flush timer
            self._wake()

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self.remaining:
            self.error = aiohttp.ClientPayloadError(
                f"the upstream closed the connection {self.remaining} bytes short"
                + (f": {exc}" if exc else "")
            )
        self.ended = True
        self._wake()
        self._inner.connection_lost(exc)  # aiohttp's bookkeeping of the connection

    # -- the consumer's side ---------------------------------------------------------------

    def take_partial(self) -> bytes:
        """The bytes of the batch being filled (a slow upstream's, or the body's tail)."""
        part = bytes(memoryview(self._batch)[: self._fill])
        self._fill = 0
        return part

    @property
    def partial(self) -> int:
        return self._fill

    async def wait(self, flush: float | None) -> bool:
        """Until a batch is ready, the body ended, a new batch got its first bytes, or
        ``flush`` seconds passed: True for the last."""
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        timer = loop.call_later(flush, _flushed, waiter) if flush is not None else None
        try:
            return bool(await waiter)
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def taken(self) -> None:
        if self._paused and len(self.ready) <= DEPTH and not self.ended:
            self._paused = False
            self.transport.resume_reading()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(False)

    def _pause(self) -> None:
        if not self._paused:
            self._paused = True
            self.transport.pause_reading()


def intake(resp: aiohttp.ClientResponse) -> BodyInto | None:
    """Switch ``resp``'s connection to a `BodyInto` for the rest of its body; None when the
    body must go through aiohttp's stream (no length, an encoding, or aiohttp's parser
    holding bytes it has not handed over)."""
    conn = resp.connection
    length = resp.content_length
    inner = conn.protocol if conn is not None else None
    transport = inner.transport if inner is not None else None
    if (
        length is None
        or inner is None
        or transport is None
        or "Transfer-Encoding" in resp.headers
        or resp.headers.get("Content-Encoding", "identity") != "identity"
        # paused, its parser may hold bytes it has not parsed; a tail is bytes it holds
        or getattr(inner, "_reading_paused", True)
        or getattr(inner, "_buffer_paused", True)
        or getattr(inner, "_tail", b"")
        or not hasattr(transport, "set_protocol")
    ):
        return None
    inner.force_close()  # never back into the pool: its protocol is no longer aiohttp's
    already = resp.content.read_nowait()
    into = BodyInto(length - len(already), transport, inner)
    if already:
        into.received = len(already)
        memoryview(into._batch)[: len(already)] = already
        into._fill = len(already)
        into.remaining = length - len(already)
    if into.remaining <= 0:
        into.ended = True
    transport.set_protocol(into)
    if not transport.is_reading() and not into.ended:
        transport.resume_reading()
    return into


def _flushed(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(True)


async def batches(into: BodyInto, waiting: list[bool]) -> AsyncIterator[bytes]:
    """The body as batches: full ones as they fill, a partial one once its first byte waited
    `FLUSH` seconds, the tail at the end; raises when the connection ended short.
    ``waiting[0]`` is True while this waits for the upstream (the idle watchdog's question)."""
    while True:
        if into.ready:
            batch = into.ready.popleft()
            into.taken()
            yield batch  # type: ignore[misc]  # a bytearray nobody else holds: bytes to its readers
            continue
        if into.ended:
            if into.error is not None:
                raise into.error
            if into.partial:
                yield into.take_partial()
            return
        waiting[0] = True
        try:
            flushed = await into.wait(FLUSH if into.partial else None)
        finally:
            waiting[0] = False
        if flushed and into.partial and not into.ready:
            yield into.take_partial()
