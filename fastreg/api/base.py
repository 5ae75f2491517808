"""`GET /v2/`: the API version check (end-1)."""

from __future__ import annotations

from aiohttp import web


async def version_check(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    return web.Response(body=b"{}", content_type="application/json")
