"""Errors as values: the OCI error codes the domain can raise.

The domain raises ``RegistryError(code, message, detail)``; only ``fastreg.api.errors`` knows
which HTTP status a code maps to and writes the ``{"errors": [...]}`` body.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any


class ErrorCode(enum.Enum):
    """The error codes of the OCI Distribution Spec, plus Distribution's extras."""

    BLOB_UNKNOWN = "BLOB_UNKNOWN"
    BLOB_UPLOAD_INVALID = "BLOB_UPLOAD_INVALID"
    BLOB_UPLOAD_UNKNOWN = "BLOB_UPLOAD_UNKNOWN"
    DIGEST_INVALID = "DIGEST_INVALID"
    MANIFEST_BLOB_UNKNOWN = "MANIFEST_BLOB_UNKNOWN"
    MANIFEST_INVALID = "MANIFEST_INVALID"
    MANIFEST_UNKNOWN = "MANIFEST_UNKNOWN"
    MANIFEST_UNVERIFIED = "MANIFEST_UNVERIFIED"
    NAME_INVALID = "NAME_INVALID"
    NAME_UNKNOWN = "NAME_UNKNOWN"
    SIZE_INVALID = "SIZE_INVALID"
    TAG_INVALID = "TAG_INVALID"
    UNAUTHORIZED = "UNAUTHORIZED"
    DENIED = "DENIED"
    UNSUPPORTED = "UNSUPPORTED"
    TOOMANYREQUESTS = "TOOMANYREQUESTS"
    RANGE_INVALID = "RANGE_INVALID"
    PAGINATION_NUMBER_INVALID = "PAGINATION_NUMBER_INVALID"
    UNAVAILABLE = "UNAVAILABLE"
    UNKNOWN = "UNKNOWN"
    MANIFEST_TOO_LARGE = "MANIFEST_TOO_LARGE"
    HOST_INVALID = "HOST_INVALID"

    @property
    def default_message(self) -> str:
        return _MESSAGES[self]


_MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.BLOB_UNKNOWN: "blob unknown to registry",
    ErrorCode.BLOB_UPLOAD_INVALID: "blob upload invalid",
    ErrorCode.BLOB_UPLOAD_UNKNOWN: "blob upload unknown to registry",
    ErrorCode.DIGEST_INVALID: "provided digest did not match uploaded content",
    ErrorCode.MANIFEST_BLOB_UNKNOWN: "blob unknown to registry",
    ErrorCode.MANIFEST_INVALID: "manifest invalid",
    ErrorCode.MANIFEST_UNKNOWN: "manifest unknown",
    ErrorCode.MANIFEST_UNVERIFIED: "manifest failed signature verification",
    ErrorCode.NAME_INVALID: "invalid repository name",
    ErrorCode.NAME_UNKNOWN: "repository name not known to registry",
    ErrorCode.SIZE_INVALID: "provided length did not match content length",
    ErrorCode.TAG_INVALID: "manifest tag did not match URI",
    ErrorCode.UNAUTHORIZED: "authentication required",
    ErrorCode.DENIED: "requested access to the resource is denied",
    ErrorCode.UNSUPPORTED: "The operation is unsupported.",
    ErrorCode.TOOMANYREQUESTS: "too many requests",
    ErrorCode.RANGE_INVALID: "invalid content range",
    ErrorCode.PAGINATION_NUMBER_INVALID: "invalid number of results requested",
    ErrorCode.UNAVAILABLE: "service unavailable",
    ErrorCode.UNKNOWN: "unknown error",
    ErrorCode.MANIFEST_TOO_LARGE: "manifest too large",
    ErrorCode.HOST_INVALID: "invalid Host header",
}


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
