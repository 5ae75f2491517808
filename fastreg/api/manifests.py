"""Manifest endpoints: `GET/HEAD/PUT/DELETE /v2/<name>/manifests/<reference>` (end-3, end-7, end-9).

Content negotiation follows Distribution 2.8: by tag, an OCI manifest or index is served only to a
client that accepts it (else 404 MANIFEST_UNKNOWN), and a Docker manifest list to a client that
does not accept lists is answered with its linux/amd64 image manifest.
"""

from __future__ import annotations

from aiohttp import web

from fastreg.api.body import body_chunks
from fastreg.api.context import registry_of, url_for
from fastreg.registry.errors import ErrorCode, RegistryError
from fastreg.registry.manifests import MAX_MANIFEST_SIZE, Manifest
from fastreg.registry.mediatypes import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from fastreg.registry.names import lookup_reference, parse_reference, validate_tag


def accepted_types(request: web.Request) -> set[str]:
    types: set[str] = set()
    for header in request.headers.getall("Accept", []):
        for part in header.split(","):
            media_type = part.split(";", 1)[0].strip().lower()
            if media_type:
                types.add(media_type)
    return types


async def _negotiate(
    request: web.Request, name: str, manifest: Manifest, by_tag: bool
) -> Manifest:
    if not by_tag:
        return manifest
    accepts = accepted_types(request)
    if manifest.media_type == OCI_MANIFEST and OCI_MANIFEST not in accepts:
        raise RegistryError(
            ErrorCode.MANIFEST_UNKNOWN,
            "OCI manifest found, but accept header does not support OCI manifests",
        )
    if manifest.media_type == OCI_INDEX and OCI_INDEX not in accepts:
        raise RegistryError(
            ErrorCode.MANIFEST_UNKNOWN,
            "OCI index found, but accept header does not support OCI indexes",
        )
    if manifest.media_type == DOCKER_LIST and DOCKER_LIST not in accepts:
        default = next(
            (
                m.digest
                for m in manifest.manifests
                if (m.platform or {}).get("architecture") == "amd64"
                and (m.platform or {}).get("os") == "linux"
            ),
            None,
        )
        if default is None:
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, "no linux/amd64 manifest in the list")
        child = await registry_of(request).manifest(name, default)
        if child.media_type == DOCKER_MANIFEST and DOCKER_MANIFEST not in accepts:
            raise RegistryError(
                ErrorCode.MANIFEST_INVALID, "Schema 2 manifest not supported by client"
            )
        return child
    return manifest


async def get_manifest(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    name = params["name"]
    reference = lookup_reference(params["reference"])
    registry = registry_of(request)
    resolved = await registry.resolve_manifest(name, reference)
    digest = resolved.digest
    headers = {"Docker-Content-Digest": str(digest), "ETag": f'"{digest}"'}
    if resolved.warning is not None:  # a mirror serving its cache: the upstream is down
        headers["Warning"] = resolved.warning
    if request.headers.get("If-None-Match", "").strip('"') == str(digest):
        return web.Response(status=304, headers=headers)
    manifest = await registry.manifests.load_resolved(digest)
    manifest = await _negotiate(request, name, manifest, isinstance(reference, str))
    headers = {
        **headers,
        "Docker-Content-Digest": str(manifest.digest),
        "ETag": f'"{manifest.digest}"',
        "Content-Type": manifest.media_type,
        "Content-Length": str(len(manifest.raw)),
    }
    if request.method == "HEAD":
        return web.Response(status=200, headers=headers)
    return web.Response(status=200, body=manifest.raw, headers=headers)


async def _read_capped(request: web.Request, limit: int) -> bytes:
    declared = request.content_length
    if declared is not None and declared > limit:
        raise RegistryError(ErrorCode.MANIFEST_TOO_LARGE, detail={"limit": limit})
    parts: list[bytes] = []
    held = 0
    async for chunk in body_chunks(request):
        held += len(chunk)
        if held > limit:
            raise RegistryError(ErrorCode.MANIFEST_TOO_LARGE, detail={"limit": limit})
        parts.append(chunk)
    return b"".join(parts)


async def put_manifest(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    name = params["name"]
    reference = parse_reference(params["reference"])
    extra_tags = tuple(validate_tag(t) for t in request.query.getall("tag", []))
    raw = await _read_capped(request, MAX_MANIFEST_SIZE)
    result = await registry_of(request).manifests.put(
        name, reference, request.headers.get("Content-Type"), raw, extra_tags
    )
    response = web.Response(
        status=201,
        headers={
            "Location": url_for(request, f"/v2/{name}/manifests/{result.digest}"),
            "Docker-Content-Digest": str(result.digest),
            "Content-Length": "0",
        },
    )
    if result.subject is not None:
        response.headers["OCI-Subject"] = str(result.subject)
    for tag in result.tags if extra_tags else ():
        response.headers.add("OCI-Tag", tag)
    return response


async def delete_manifest(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    await registry_of(request).delete_manifest(params["name"], params["reference"])
    return web.Response(status=202)
