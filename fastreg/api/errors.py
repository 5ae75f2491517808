"""The one place that knows which HTTP status each error code has, and writes the error body.

Handlers raise ``RegistryError``; the middleware in ``fastreg.api.middleware`` turns it into the
OCI error JSON with this table. Anything else becomes 500 UNKNOWN without a trace.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from fastreg.registry.errors import ErrorCode, RegistryError

# code -> (wire code, HTTP status)
ERRORS: dict[ErrorCode, tuple[str, int]] = {
    ErrorCode.BLOB_UNKNOWN: ("BLOB_UNKNOWN", 404),
    ErrorCode.BLOB_UPLOAD_INVALID: ("BLOB_UPLOAD_INVALID", 400),
    ErrorCode.BLOB_UPLOAD_UNKNOWN: ("BLOB_UPLOAD_UNKNOWN", 404),
    ErrorCode.DIGEST_INVALID: ("DIGEST_INVALID", 400),
    ErrorCode.MANIFEST_BLOB_UNKNOWN: ("MANIFEST_BLOB_UNKNOWN", 400),
    ErrorCode.MANIFEST_INVALID: ("MANIFEST_INVALID", 400),
    ErrorCode.MANIFEST_UNKNOWN: ("MANIFEST_UNKNOWN", 404),
    ErrorCode.MANIFEST_UNVERIFIED: ("MANIFEST_UNVERIFIED", 400),
    ErrorCode.NAME_INVALID: ("NAME_INVALID", 400),
    ErrorCode.NAME_UNKNOWN: ("NAME_UNKNOWN", 404),
    ErrorCode.SIZE_INVALID: ("SIZE_INVALID", 400),
    ErrorCode.TAG_INVALID: ("TAG_INVALID", 400),
    ErrorCode.UNAUTHORIZED: ("UNAUTHORIZED", 401),
    ErrorCode.DENIED: ("DENIED", 403),
    ErrorCode.UNSUPPORTED: ("UNSUPPORTED", 405),
    ErrorCode.TOOMANYREQUESTS: ("TOOMANYREQUESTS", 429),
    ErrorCode.RANGE_INVALID: ("RANGE_INVALID", 416),
    ErrorCode.PAGINATION_NUMBER_INVALID: ("PAGINATION_NUMBER_INVALID", 400),
    ErrorCode.UNAVAILABLE: ("UNAVAILABLE", 503),
    ErrorCode.UNKNOWN: ("UNKNOWN", 500),
    # The spec answers an oversized manifest with 413; the code stays one clients know.
    ErrorCode.MANIFEST_TOO_LARGE: ("MANIFEST_INVALID", 413),
    # A malformed Host is below the API: Go's net/http answers it with a bare 400 before
    # Distribution sees it. No OCI code describes it, and each 400 one names a part of the
    # request a client would then look at in vain (NAME_INVALID its repository, SIZE_INVALID
    # its length); UNKNOWN is Distribution's code for an error without an API classification,
    # and 400 says it is the client's.
    ErrorCode.HOST_INVALID: ("UNKNOWN", 400),
}


def status_of(code: ErrorCode) -> int:
    return ERRORS[code][1]


def error_body(errors: list[RegistryError]) -> bytes:
    entries: list[dict[str, Any]] = []
    for err in errors:
        entry: dict[str, Any] = {"code": ERRORS[err.code][0], "message": err.message}
        if err.detail is not None:
            entry["detail"] = err.detail
        entries.append(entry)
    return orjson.dumps({"errors": entries})


def error_response(err: RegistryError) -> web.Response:
    return web.Response(
        status=status_of(err.code),
        body=error_body([err]),
        content_type="application/json",
        headers=dict(err.headers),
    )
