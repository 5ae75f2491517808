"""Upload endpoints (end-4a/4b/5/6/11/13): POST to start (plain, single-POST `?digest=`, mount),
PATCH chunks, PUT `?digest=` to complete, GET for status, DELETE to cancel.
"""

from __future__ import annotations

from aiohttp import web

from fastreg.api.body import body_chunks
from fastreg.api.context import CALLER, registry_of, url_for
from fastreg.api.params import content_length, content_range, range_header
from fastreg.registry.digests import Digest
from fastreg.registry.errors import ErrorCode, RegistryError
from fastreg.registry.uploads import UploadStatus, check_upload_id


def _has_body(request: web.Request) -> bool:
    return request.body_exists and request.headers.get("Content-Length") != "0"


def _upload_response(request: web.Request, status: UploadStatus, code: int) -> web.Response:
    location = url_for(request, f"/v2/{status.name}/blobs/uploads/{status.upload_id}")
    return web.Response(
        status=code,
        headers={
            "Location": location,
            "Docker-Upload-UUID": status.upload_id,
            "Range": range_header(status.offset),
            "Content-Length": "0",
        },
    )


def _created(request: web.Request, name: str, digest: Digest) -> web.Response:
    return web.Response(
        status=201,
        headers={
            "Location": url_for(request, f"/v2/{name}/blobs/{digest}"),
            "Docker-Content-Digest": str(digest),
            "Content-Length": "0",
        },
    )


async def start_upload(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    registry = registry_of(request)
    name = params["name"]
    query = request.query
    if "mount" in query:
        digest = Digest.parse(query["mount"])
        mounted = await registry.mount(name, digest, query.get("from"), request.get(CALLER))
        if mounted is not None:
            return _created(request, name, digest)
    algorithm = query.get("digest-algorithm", "sha256")
    if "digest" in query:
        digest = Digest.parse(query["digest"])
        status = await registry.uploads.start(name, digest.algorithm)
        body = body_chunks(request) if _has_body(request) else None
        try:
            info = await registry.uploads.finish(name, status.upload_id, digest, body)
        except BaseException:
            await _cancel_quietly(request, name, status.upload_id)
            raise
        return _created(request, name, info.digest)
    status = await registry.uploads.start(name, algorithm)
    return _upload_response(request, status, 202)


async def _cancel_quietly(request: web.Request, name: str, upload_id: str) -> None:
    try:
        await registry_of(request).uploads.cancel(name, upload_id)
    except RegistryError:
        pass


async def patch_upload(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    name, upload_id = params["name"], check_upload_id(params["uuid"])
    crange = content_range(request.headers.get("Content-Range"))
    length = content_length(request.headers.get("Content-Length"))
    if crange is not None and length is not None and length != crange[1] - crange[0] + 1:
        raise RegistryError(
            ErrorCode.SIZE_INVALID, detail={"Content-Range": f"{crange[0]}-{crange[1]}",
                                            "Content-Length": length}
        )
    status = await registry_of(request).uploads.append(
        name, upload_id, body_chunks(request), start=crange[0] if crange else None, length=length
    )
    return _upload_response(request, status, 202)


async def finish_upload(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    name, upload_id = params["name"], check_upload_id(params["uuid"])
    if not request.query.get("digest"):
        raise RegistryError(ErrorCode.DIGEST_INVALID, "digest missing", {"query": "digest"})
    digest = Digest.parse(request.query["digest"])
    crange = content_range(request.headers.get("Content-Range"))
    body = body_chunks(request) if _has_body(request) else None
    info = await registry_of(request).uploads.finish(
        name, upload_id, digest, body, start=crange[0] if crange else None
    )
    return _created(request, name, info.digest)


async def upload_status(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    name, upload_id = params["name"], check_upload_id(params["uuid"])
    status = await registry_of(request).uploads.status(name, upload_id)
    return _upload_response(request, status, 204)


async def cancel_upload(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    name, upload_id = params["name"], check_upload_id(params["uuid"])
    await registry_of(request).uploads.cancel(name, upload_id)
    return web.Response(status=204)
