"""Parsing of request headers and query parameters shared by the handlers."""

from __future__ import annotations

import re

from fastreg.registry.errors import ErrorCode, RegistryError

# ASCII digits only (`\d` takes any script's, which Go's parser refuses), and at most 20 of them: a
# longer number is past any size (and past 4,300 digits `int()` raises)
_CONTENT_RANGE_RE = re.compile(r"(?:bytes[ =])?([0-9]{1,20})-([0-9]{1,20})")
_RANGE_RE = re.compile(r"bytes=([0-9]{0,20})-([0-9]{0,20})")


def content_range(value: str | None) -> tuple[int, int] | None:
    """Content-Range of an upload chunk: "<start>-<end>", inclusive (Distribution's form)."""
    if value is None or value == "":
        return None
    m = _CONTENT_RANGE_RE.fullmatch(value.strip())
    if not m or int(m.group(1)) > int(m.group(2)):
        raise RegistryError(ErrorCode.RANGE_INVALID, detail={"Content-Range": value[:100]})
    return int(m.group(1)), int(m.group(2))


def content_length(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit():
        raise RegistryError(ErrorCode.SIZE_INVALID, detail={"Content-Length": value[:100]})
    return int(value)


def byte_range(value: str | None, size: int) -> tuple[int, int] | None:
    """A single `Range: bytes=a-b` against a blob of ``size`` bytes -> (offset, length).

    Multiple ranges are not supported (no client asks for them); an unsatisfiable range -> 416.
    """
    if not value:
        return None
    m = _RANGE_RE.fullmatch(value.strip())
    first, last = (m.group(1), m.group(2)) if m else ("", "")
    if first == "":  # suffix: the last N bytes
        if last == "" or int(last) == 0:
            raise _unsatisfiable(value, size)
        if size == 0:  # no byte range can name nothing (RFC 9110 14.2 lets a server ignore Range)
            return None
        start = max(0, size - int(last))
        return start, size - start
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if start >= size or (last != "" and int(last) < start):
        raise _unsatisfiable(value, size)
    return start, end - start + 1


def _unsatisfiable(value: str, size: int) -> RegistryError:
    # RFC 9110 15.5.17: a 416 names the current length so the client can ask again
    return RegistryError(
        ErrorCode.RANGE_INVALID,
        detail={"Range": value[:100], "size": size},
        headers={"Content-Range": f"bytes */{size}"},
    )


def page_size(value: str | None, default: int | None, maximum: int | None) -> int | None:
    """The `n` of a paginated list; None means everything."""
    if value is None or value == "":
        return default
    if not (value.isascii() and value.isdigit()) or (maximum is not None and int(value) > maximum):
        raise RegistryError(ErrorCode.PAGINATION_NUMBER_INVALID, detail={"n": value[:100]})
    return int(value)


def range_header(offset: int) -> str:
    """The `Range` of an upload: bytes held so far, "0-<last>" ("0-0" when empty, as Distribution)."""
    return f"0-{max(offset - 1, 0)}"
