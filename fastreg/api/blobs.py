"""Blob endpoints: `GET/HEAD/DELETE /v2/<name>/blobs/<digest>` (end-2, end-10).

Pulls go out with `sendfile` when the driver has the bytes on local disk (and the connection is
not TLS, whose bytes must go through the transport), and so does a blob a mirror is fetching,
from its spool as the bytes arrive (registry/proxy/flight.py); as a redirect when a storage
middleware (`middleware.storage`: `redirect`, `cloudfront`) or the driver has a URL for it (unless
`storage.redirect.disable`; `Registry.redirect_url` decides), else as a proxied stream. `Range` is honoured. Either way a
client that accepts no byte for `http.sendtimeout` has its connection closed (`api/sendfile.py`).
"""

from __future__ import annotations

import asyncio
import os
from typing import BinaryIO

from aiohttp import web

from fastreg.api.context import HTTP, SENDER, registry_of
from fastreg.api.params import byte_range
from fastreg.api.sendfile import StallWatch, cut
from fastreg.registry.blobs import BlobReader
from fastreg.registry.digests import Digest
from fastreg.registry.errors import ErrorCode, RegistryError
from fastreg.registry.proxy.flight import Spool, SpooledBlob


def _headers(source: BlobReader) -> dict[str, str]:
    digest = str(source.info.digest)
    return {
        "Docker-Content-Digest": digest,
        "ETag": f'"{digest}"',
        "Accept-Ranges": "bytes",
        "Cache-Control": "max-age=31536000",
        "Content-Type": "application/octet-stream",
    }


async def head_blob(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    digest = Digest.parse(params["digest"])
    info = await registry_of(request).blob_info(params["name"], digest)
    headers = {
        "Docker-Content-Digest": str(digest),
        "ETag": f'"{digest}"',
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
        "Content-Length": str(info.size),
    }
    return web.Response(status=200, headers=headers)


async def get_blob(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    registry = registry_of(request)
    digest = Digest.parse(params["digest"])
    source = await registry.blob_source(params["name"], digest)
    try:
        return await _serve(request, source, digest)
    finally:
        source.release()


async def _serve(request: web.Request, source: BlobReader, digest: Digest) -> web.StreamResponse:
    registry = registry_of(request)
    size = source.info.size
    headers = _headers(source)
    if request.headers.get("If-None-Match", "").strip('"') == str(digest):
        return web.Response(status=304, headers=headers)
    url = await registry.redirect_url(source, request.method)
    if url is not None:
        return web.Response(status=307, headers={"Location": url, **headers})
    wanted = byte_range(request.headers.get("Range"), size)
    offset, length = wanted if wanted is not None else (0, size)
    response = web.StreamResponse(status=206 if wanted else 200, headers=headers)
    if wanted:
        response.headers["Content-Range"] = f"bytes {offset}-{offset + length - 1}/{size}"
    response.content_length = length
    transport = request.transport
    if source.local_path is not None and transport is not None and not _is_tls(transport):
        return await _sendfile(request, response, source.local_path, digest, offset, length)
    if isinstance(source, SpooledBlob) and transport is not None and not _is_tls(transport):
        return await _send_spooled(request, response, source.spool, offset, length)
    await response.prepare(request)
    if transport is not None:
        with StallWatch(transport, request.app[HTTP].sendtimeout).watching() as watch:
            try:
                async for chunk in source.stream(offset, length):
                    watch.queued(len(chunk))
                    await response.write(chunk)
            except RegistryError:
                # the status line is sent: a body ended short is the only error left to give
                # (a mirror's cold blob whose digest or transfer failed)
                transport.close()
                raise
    await response.write_eof()
    return response


def _is_tls(transport: asyncio.Transport) -> bool:
    return transport.get_extra_info("sslcontext") is not None


async def _sendfile(
    request: web.Request,
    response: web.StreamResponse,
    path: str,
    digest: Digest,
    offset: int,
    length: int,
) -> web.StreamResponse:
    loop = asyncio.get_running_loop()
    try:
        f: BinaryIO = await loop.run_in_executor(None, _open, path)
    except FileNotFoundError:  # collected between stat and open
        raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": str(digest)}) from None
    try:
        await response.prepare(request)
        transport = request.transport
        if transport is None or length == 0:
            await response.write_eof()
            return response
        await request.app[SENDER].send(transport, f.fileno(), offset, length)
        await response.write_eof()
    finally:
        f.close()
    return response


async def _send_spooled(
    request: web.Request, response: web.StreamResponse, spool: Spool, offset: int, length: int
) -> web.StreamResponse:
    """A blob a mirror is fetching, with `sendfile` from its spool as the bytes are written."""
    await response.prepare(request)
    transport = request.transport
    assert transport is not None
    position, end = offset, offset + length
    try:
        while position < end:
            ready = min(await spool.wait(position), end)
            await request.app[SENDER].send(transport, spool.fd, position, ready - position)
            position = ready
    except RegistryError:
        cut(transport)  # the status line is out: a body ended short is the error left to give
        raise
    await response.write_eof()
    return response


def _open(path: str) -> BinaryIO:
    f = open(path, "rb")  # noqa: SIM115 - closed by the caller after sendfile
    os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
    return f


async def delete_blob(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    digest = await registry_of(request).delete_blob(params["name"], params["digest"])
    return web.Response(status=202, headers={"Docker-Content-Digest": str(digest)})
