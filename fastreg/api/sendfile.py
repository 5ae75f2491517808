"""Zero-copy file responses that work on uvloop too.

asyncio's `loop.sendfile` sends from the kernel page cache straight to the socket, but uvloop does
not implement it (it raises NotImplementedError, and aiohttp then copies through user space). On
uvloop the `sendfile(2)` loop runs on a thread instead, waiting for the non-blocking socket to be
writable with `select`: the event loop never blocks and the bytes never enter Python.
"""

from __future__ import annotations

import asyncio
import os
import select
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

IDLE_TIMEOUT = 120.0


def _is_uvloop(loop: asyncio.AbstractEventLoop) -> bool:
    return type(loop).__module__.startswith("uvloop")


def _sendfile_blocking(sock_fd: int, file_fd: int, offset: int, count: int) -> None:
    end = offset + count
    while offset < end:
        try:
            sent = os.sendfile(sock_fd, file_fd, offset, min(end - offset, 1 << 30))
        except BlockingIOError:
            _, writable, _ = select.select([], [sock_fd], [], IDLE_TIMEOUT)
            if not writable:
                raise TimeoutError("client stopped reading") from None
            continue
        if sent == 0:  # the file shrank: never send fewer bytes than promised silently
            raise ConnectionAbortedError("file ended before Content-Length")
        offset += sent


async def sendfile(
    transport: asyncio.Transport, f: BinaryIO, offset: int, count: int, pool: ThreadPoolExecutor
) -> None:
    loop = asyncio.get_running_loop()
    if not _is_uvloop(loop):
        await loop.sendfile(transport, f, offset, count)
        return
    # what the transport still buffers (the headers) must reach the socket before the body
    while transport.get_write_buffer_size():
        if transport.is_closing():
            raise ConnectionResetError("client went away")
        await asyncio.sleep(0.001)
    sock = transport.get_extra_info("socket")
    await loop.run_in_executor(pool, _sendfile_blocking, sock.fileno(), f.fileno(), offset, count)
