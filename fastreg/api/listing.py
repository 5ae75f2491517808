"""Paginated lists: tags (end-8a/8b), catalog, and referrers (end-12a/12b).

Pages follow the spec: ASCII order, `n` entries after `last` (exclusive), and a
`Link: <...>; rel="next"` header while more remain.
"""

from __future__ import annotations

from urllib.parse import urlencode

import orjson
from aiohttp import web

from fastreg.api.context import registry_of
from fastreg.api.params import page_size
from fastreg.registry.digests import Digest
from fastreg.registry.mediatypes import OCI_INDEX

CATALOG_DEFAULT_PAGE = 100
CATALOG_MAX_PAGE = 1000


def _page(
    request: web.Request, items: list[str], default: int | None, maximum: int | None
) -> tuple[list[str], dict[str, str]]:
    n = page_size(request.query.get("n"), default, maximum)
    last = request.query.get("last")
    if last:
        items = [i for i in items if i > last]
    headers: dict[str, str] = {}
    if n is not None and len(items) > n:
        items = items[:n]
        if items:
            query = urlencode({"n": n, "last": items[-1]})
            headers["Link"] = f'<{request.path}?{query}>; rel="next"'
    return items, headers


def _json(body: object, headers: dict[str, str], content_type: str = "application/json") -> web.Response:
    return web.Response(body=orjson.dumps(body), headers=headers, content_type=content_type)


async def list_tags(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    name = params["name"]
    tags, headers = _page(request, await registry_of(request).tags_list(name), None, None)
    return _json({"name": name, "tags": tags}, headers)


async def catalog(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    repositories = await registry_of(request).repositories()
    page, headers = _page(request, repositories, CATALOG_DEFAULT_PAGE, CATALOG_MAX_PAGE)
    return _json({"repositories": page}, headers)


async def referrers(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    subject = Digest.parse(params["digest"])
    artifact_type = request.query.get("artifactType") or None
    found = await registry_of(request).manifests.referrers(params["name"], subject, artifact_type)
    headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else {}
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [d.to_json() for d in found],
    }
    return _json(body, headers, content_type=OCI_INDEX)
