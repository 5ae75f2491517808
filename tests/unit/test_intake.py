"""`proxy/intake.py`: an upstream body read from the socket into batches, over real sockets.

The upstream here is a raw asyncio server, so a test can send what aiohttp's server would not:
bytes past the Content-Length, a body that stops short, a body sent as fast as the socket takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from fastreg.registry.proxy.intake import FLUSH, BodyInto, batches, intake
from fastreg.registry.uploads import BATCH, DEPTH

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(serve: Serve) -> AsyncIterator[str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # the request head
        with contextlib.suppress(ConnectionError):
            await serve(reader, writer)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/blob"
    finally:
        server.close()
        await server.wait_closed()


def head(length: int | None, extra: str = "") -> bytes:
    size = f"Content-Length: {length}\r\n" if length is not None else ""
    return f"HTTP/1.1 200 OK\r\n{size}{extra}\r\n".encode()


async def read_all(url: str) -> tuple[bool, list[int], bytes]:
    """(read into batches?, the batch sizes, the body)."""
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        resp = await session.get(url)
        into = intake(resp)
        if into is None:
            return False, [], await resp.read()
        sizes, parts = [], []
        try:
            async for batch in batches(into, [False]):
                sizes.append(len(batch))
                parts.append(bytes(batch))
        finally:
            resp.close()
        return True, sizes, b"".join(parts)


async def test_a_body_with_a_length_is_read_into_whole_batches() -> None:
    body = os.urandom(5 * BATCH + 12345)

    async def serve(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(head(len(body)) + body)
        await writer.drain()

    async with raw_server(serve) as url:
        fast, sizes, got = await read_all(url)
    assert fast and got == body
    assert sizes == [BATCH] * 5 + [12345]


async def test_bytes_past_the_announced_length_are_not_part_of_the_body() -> None:
    body = os.urandom(BATCH + 10)

    async def serve(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(head(len(body)) + body + b"garbage after the body")
        await writer.drain()

    async with raw_server(serve) as url:
        fast, _, got = await read_all(url)
    assert fast and got == body


async def test_a_body_cut_short_raises_instead_of_ending() -> None:
    body = os.urandom(3 * BATCH)

    async def serve(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(head(len(body)) + body[: 2 * BATCH + 7])
        await writer.drain()  # and the connection closes

    async with raw_server(serve) as url:
        with pytest.raises(aiohttp.ClientPayloadError, match=f"{BATCH - 7} bytes short"):
            await read_all(url)


async def test_chunked_or_encoded_bodies_go_through_aiohttps_stream() -> None:
    async def chunked(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(head(None, "Transfer-Encoding: chunked\r\n") + b"5\r\nhello\r\n0\r\n\r\n")
        await writer.drain()

    async def gzipped(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(head(5, "Content-Encoding: gzip\r\n") + b"\x1f\x8b\x08\x00\x00")
        await writer.drain()

    async with raw_server(chunked) as url:
        assert await read_all(url) == (False, [], b"hello")
    async with raw_server(gzipped) as url:
        assert await read_all(url) == (False, [], b"\x1f\x8b\x08\x00\x00")  # as sent


async def test_a_consumer_that_does_not_read_pauses_the_socket() -> None:
    """Memory stays at a few batches whatever the upstream sends: the socket is paused."""
    size = 64 * BATCH
    sent = 0

    async def serve(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        writer.write(head(size))
        block = os.urandom(BATCH)
        for _ in range(64):
            writer.write(block)
            await writer.drain()
            sent += BATCH

    async with raw_server(serve) as url, aiohttp.ClientSession() as session:
        resp = await session.get(url)
        into = intake(resp)
        assert isinstance(into, BodyInto)
        stream = batches(into, [False])
        digest = hashlib.sha256()
        digest.update(await anext(stream))
        await asyncio.sleep(0.5)  # the consumer is busy; the upstream goes on sending
        assert len(into.ready) <= DEPTH + 1
        assert into.received <= (DEPTH + 3) * BATCH + 8 * 1024 * 1024  # + the socket buffers
        assert sent < size  # the sender is held back too
        async for batch in stream:
            digest.update(batch)
        resp.close()
    assert into.received == size


async def test_a_slow_upstreams_bytes_come_before_a_batch_is_full() -> None:
    """A batch waits `FLUSH` for more bytes, not for a whole MiB."""
    release = asyncio.Event()

    async def serve(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(head(2000) + b"x" * 1000)
        await writer.drain()
        await release.wait()  # the rest only once the first part was handed over
        writer.write(b"y" * 1000)
        await writer.drain()

    async with raw_server(serve) as url, aiohttp.ClientSession() as session:
        resp = await session.get(url)
        into = intake(resp)
        assert into is not None
        stream = batches(into, [False])
        loop = asyncio.get_running_loop()
        started = loop.time()
        first = await asyncio.wait_for(anext(stream), 5)
        assert bytes(first) == b"x" * 1000 and loop.time() - started >= FLUSH * 0.9
        release.set()
        assert [bytes(b) async for b in stream] == [b"y" * 1000]
        resp.close()
