"""Events in Distribution's envelope format, derived from a finished request (the "bridge").

Handlers know nothing about events: `derive` reads the route the request resolved to
(``RESOLVED``: route, parameters, repository), the method, the status and the response headers, and
`Bridge.complete` fills in what the response does not say (a pushed blob's size, a pushed
manifest's media type) from the registry, which has them cached at that point.
"""

from __future__ import annotations

import datetime
import socket
import uuid
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from fastreg.api.context import ACTOR, REQUEST_ID, RESOLVED, Resolved, client_addr, url_for
from fastreg.registry.digests import Digest
from fastreg.registry.errors import RegistryError
from fastreg.registry.service import Registry

BLOB_MEDIA_TYPE = "application/octet-stream"  # what Distribution reports for a blob


@dataclass(frozen=True, slots=True)
class Draft:
    """What an event is about, before the registry and the request fill in the rest."""

    action: str
    kind: str  # "manifest" or "blob"
    repository: str
    digest: str | None = None
    tag: str | None = None
    media_type: str | None = None
    size: int | None = None
    from_repository: str | None = None
    references: tuple[dict[str, Any], ...] = ()


def _is_digest(reference: str) -> bool:
    return ":" in reference


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def derive(request: web.Request, response: web.StreamResponse) -> list[Draft]:
    """The events a finished request produces (none for HEAD, failures and other routes)."""
    resolved: Resolved | None = request.get(RESOLVED)
    if resolved is None or request.method == "HEAD":
        return []
    route, repository, params = resolved.handled_route, resolved.repository, resolved.params
    if not route or not repository:
        return []
    method, status = request.method, response.status
    digest = response.headers.get("Docker-Content-Digest") or params.get("digest")
    if route == "manifest":
        return _manifest(request, response, repository, params["reference"], digest)
    if route == "blob":
        if method == "GET" and status in (200, 206, 307):
            size = _blob_size(response) if status != 307 else None
            return [Draft("pull", "blob", repository, digest, None, BLOB_MEDIA_TYPE, size)]
        if method == "DELETE" and status == 202:
            return [Draft("delete", "blob", repository, digest)]
    if route == "upload" and method == "PUT" and status == 201:
        return [Draft("push", "blob", repository, digest, None, BLOB_MEDIA_TYPE)]
    if route == "upload_start" and method == "POST" and status == 201:
        query = request.query
        if "mount" in query and not request.content_length:
            source = query.get("from") or None
            return [Draft("mount", "blob", repository, digest, None, BLOB_MEDIA_TYPE,
                          from_repository=source)]
        return [Draft("push", "blob", repository, digest, None, BLOB_MEDIA_TYPE)]
    return []


def _manifest(
    request: web.Request, response: web.StreamResponse, repository: str, reference: str,
    digest: str | None,
) -> list[Draft]:
    method, status = request.method, response.status
    tag = None if _is_digest(reference) else reference
    if method == "GET" and status == 200:
        return [Draft("pull", "manifest", repository, digest, tag,
                      response.headers.get("Content-Type"), _blob_size(response))]
    if method == "PUT" and status == 201:
        tags = ([tag] if tag else []) + request.query.getall("tag", [])
        base = Draft("push", "manifest", repository, digest)
        return [replace(base, tag=t) for t in dict.fromkeys(tags)] or [base]
    if method == "DELETE" and status == 202:
        if tag is not None:
            return [Draft("delete", "manifest", repository, tag=tag)]
        return [Draft("delete", "manifest", repository, reference)]
    return []


def _blob_size(response: web.StreamResponse) -> int | None:
    content_range = response.headers.get("Content-Range", "")
    if "/" in content_range:
        return _int(content_range.rsplit("/", 1)[1])
    return response.content_length


class Bridge:
    """Turns drafts into Distribution events; one per process (its `source.instanceID`)."""

    def __init__(self, registry: Registry, port: int | None, include_references: bool) -> None:
        self.registry = registry
        self.include_references = include_references
        host = socket.gethostname()
        self.source = {"addr": f"{host}:{port}" if port else host, "instanceID": str(uuid.uuid4())}

    def needs_lookup(self, draft: Draft) -> bool:
        if draft.action not in ("push", "pull", "mount") or draft.digest is None:
            return False
        if draft.kind == "manifest" and self.include_references:
            return True
        return draft.size is None or not draft.media_type

    async def complete(self, draft: Draft) -> Draft:
        """Fill in the size, media type (and references) the response did not carry."""
        if not self.needs_lookup(draft) or draft.digest is None:
            return draft
        try:
            digest = Digest.parse(draft.digest)
            if draft.kind == "manifest":
                manifest = await self.registry.manifests.load(digest)
                if manifest is None:
                    return draft
                refs = (*manifest.blobs, *manifest.foreign_layers, *manifest.manifests)
                return replace(
                    draft,
                    media_type=manifest.media_type,
                    size=len(manifest.raw),
                    references=tuple(d.to_json() for d in refs) if self.include_references else (),
                )
            info = await self.registry.blobs.stat(digest)
        except RegistryError:
            return draft
        return replace(draft, size=info.size)

    def event(self, request: web.Request, draft: Draft) -> dict[str, Any]:
        target: dict[str, Any] = {}
        if draft.media_type:
            target["mediaType"] = draft.media_type
        if draft.size is not None:
            target["size"] = draft.size
        if draft.digest:
            target["digest"] = draft.digest
        if draft.size is not None:
            target["length"] = draft.size
        target["repository"] = draft.repository
        if draft.from_repository:
            target["fromRepository"] = draft.from_repository
        if draft.digest and draft.action != "delete":
            target["url"] = url_for(request, f"/v2/{draft.repository}/{draft.kind}s/{draft.digest}")
        if draft.tag:
            target["tag"] = draft.tag
        if draft.references:
            target["references"] = list(draft.references)
        now = datetime.datetime.now(datetime.UTC)
        event: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "timestamp": now.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "action": draft.action,
            "target": target,
            "request": {
                "id": request.get(REQUEST_ID) or "",
                "addr": remote_addr(request),
                "host": request.host,
                "method": request.method,
                "useragent": request.headers.get("User-Agent", ""),
            },
            "actor": {},
            "source": self.source,
        }
        actor = request.get(ACTOR)
        if isinstance(actor, str) and actor:
            event["actor"] = {"name": actor}
        return event


def remote_addr(request: web.Request) -> str:
    """Distribution's `context.RemoteAddr`, with the access log's rule for proxy headers: they
    count only from a trusted proxy (`http.trustedproxies`, `api.context.client_addr`)."""
    return client_addr(request)
