"""The one writer of the OCI error body: ``{"errors": [{code, message, detail}]}``.

What each code means on the wire (its code string and HTTP status) is part of the code itself
(``fastreg.registry.errors.ErrorCode``); this module only renders. Handlers raise
``RegistryError``; the middleware in ``fastreg.api.middleware`` answers it with
``error_response``. Anything else becomes 500 UNKNOWN without a trace.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from fastreg.registry.errors import RegistryError


def error_body(errors: list[RegistryError]) -> bytes:
    entries: list[dict[str, Any]] = []
    for err in errors:
        entry: dict[str, Any] = {"code": err.code.wire, "message": err.message}
        if err.detail is not None:
            entry["detail"] = err.detail
        entries.append(entry)
    return orjson.dumps({"errors": entries})


def error_response(err: RegistryError) -> web.Response:
    return web.Response(
        status=err.code.status,
        body=error_body([err]),
        content_type="application/json",
        headers=dict(err.headers),
    )
