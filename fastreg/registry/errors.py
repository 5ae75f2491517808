"""Errors as values: the OCI error codes the domain can raise, in one table.

Each code carries everything about it: the code the client sees on the wire, the default message
and the HTTP status it is answered with (a plain int: the domain imports nothing of HTTP, and a
code's status is part of the spec's table, not a choice of the handler that raises it). The
domain raises ``RegistryError(code, message, detail)``; ``fastreg.api.errors`` only renders the
``{"errors": [...]}`` body from these fields.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any


class ErrorCode(enum.Enum):
    """The error codes of the OCI Distribution Spec, plus Distribution's extras.

    A member's value is ``(wire code, HTTP status, default message)``; no two members share all
    three (an enum would make the second an alias of the first).
    """

    BLOB_UNKNOWN = ("BLOB_UNKNOWN", 404, "blob unknown to registry")
    BLOB_UPLOAD_INVALID = ("BLOB_UPLOAD_INVALID", 400, "blob upload invalid")
    BLOB_UPLOAD_UNKNOWN = ("BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry")
    DIGEST_INVALID = ("DIGEST_INVALID", 400, "provided digest did not match uploaded content")
    MANIFEST_BLOB_UNKNOWN = ("MANIFEST_BLOB_UNKNOWN", 400, "blob unknown to registry")
    MANIFEST_INVALID = ("MANIFEST_INVALID", 400, "manifest invalid")
    MANIFEST_UNKNOWN = ("MANIFEST_UNKNOWN", 404, "manifest unknown")
    MANIFEST_UNVERIFIED = ("MANIFEST_UNVERIFIED", 400, "manifest failed signature verification")
    NAME_INVALID = ("NAME_INVALID", 400, "invalid repository name")
    NAME_UNKNOWN = ("NAME_UNKNOWN", 404, "repository name not known to registry")
    SIZE_INVALID = ("SIZE_INVALID", 400, "provided length did not match content length")
    TAG_INVALID = ("TAG_INVALID", 400, "manifest tag did not match URI")
    UNAUTHORIZED = ("UNAUTHORIZED", 401, "authentication required")
    DENIED = ("DENIED", 403, "requested access to the resource is denied")
    UNSUPPORTED = ("UNSUPPORTED", 405, "The operation is unsupported.")
    TOOMANYREQUESTS = ("TOOMANYREQUESTS", 429, "too many requests")
    RANGE_INVALID = ("RANGE_INVALID", 416, "invalid content range")
    PAGINATION_NUMBER_INVALID = (
        "PAGINATION_NUMBER_INVALID", 400, "invalid number of results requested"
    )
    UNAVAILABLE = ("UNAVAILABLE", 503, "service unavailable")
    UNKNOWN = ("UNKNOWN", 500, "unknown error")
    # The spec answers an oversized manifest with 413; the code stays one clients know.
    MANIFEST_TOO_LARGE = ("MANIFEST_INVALID", 413, "manifest too large")
    # A malformed Host is below the API: Go's net/http answers it with a bare 400 before
    # Distribution sees it. No OCI code describes it, and each 400 one names a part of the
    # request a client would then look at in vain (NAME_INVALID its repository, SIZE_INVALID
    # its length); UNKNOWN is Distribution's code for an error without an API classification,
    # and 400 says it is the client's.
    HOST_INVALID = ("UNKNOWN", 400, "invalid Host header")

    def __init__(self, wire: str, status: int, message: str) -> None:
        self.wire = wire
        self.status = status
        self.default_message = message


class RegistryError(Exception):
    """A failure the client must hear about, carrying one code from the table.

    ``headers`` are response headers the failure implies (a 416's `Content-Range`, a 401's
    `WWW-Authenticate`); the HTTP layer adds them to the error response.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str | None = None,
        detail: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message or code.default_message)
        self.code = code
        self.message = message or code.default_message
        self.detail = detail
        self.headers: Mapping[str, str] = headers or {}

    def __repr__(self) -> str:
        return f"RegistryError({self.code.name}, {self.message!r}, {self.detail!r})"
