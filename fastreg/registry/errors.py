"""Errors as values: the OCI error codes the domain can raise.

The domain raises ``RegistryError(code, message, detail)``; only ``fastreg.api.errors`` knows
which HTTP status a code maps to and writes the ``{"errors": [...]}`` body.
"""

from __future__ import annotations

import enum
from typing import Any


class ErrorCode(enum.Enum):
    """The error codes of the OCI Distribution Spec, plus Distribution's extras."""

    BLOB_UNKNOWN = "blob unknown to registry"
    BLOB_UPLOAD_INVALID = "blob upload invalid"
    BLOB_UPLOAD_UNKNOWN = "blob upload unknown to registry"
    DIGEST_INVALID = "provided digest did not match uploaded content"
    MANIFEST_BLOB_UNKNOWN = "blob unknown to registry"
    MANIFEST_INVALID = "manifest invalid"
    MANIFEST_UNKNOWN = "manifest unknown"
    MANIFEST_UNVERIFIED = "manifest failed signature verification"
    NAME_INVALID = "invalid repository name"
    NAME_UNKNOWN = "repository name not known to registry"
    SIZE_INVALID = "provided length did not match content length"
    TAG_INVALID = "manifest tag did not match URI"
    UNAUTHORIZED = "authentication required"
    DENIED = "requested access to the resource is denied"
    UNSUPPORTED = "The operation is unsupported."
    TOOMANYREQUESTS = "too many requests"
    RANGE_INVALID = "invalid content range"
    PAGINATION_NUMBER_INVALID = "invalid number of results requested"
    UNAVAILABLE = "service unavailable"
    UNKNOWN = "unknown error"
    MANIFEST_TOO_LARGE = "manifest too large"

    @property
    def default_message(self) -> str:
        return self.value


class RegistryError(Exception):
    """A failure the client must hear about, carrying one code from the table."""

    def __init__(self, code: ErrorCode, message: str | None = None, detail: Any = None) -> None:
        super().__init__(message or code.default_message)
        self.code = code
        self.message = message or code.default_message
        self.detail = detail

    def __repr__(self) -> str:
        return f"RegistryError({self.code.name}, {self.message!r}, {self.detail!r})"
