"""Parsing of request headers and query parameters shared by the handlers.

Every number a request carries is parsed here and bounded before use: ASCII digits only (`\\d`
and `str.isdigit` also take other scripts' digits, which `int` then may refuse), at most what
Go's ParseInt takes (int64, as Distribution parses them), so a number with 5000 digits is a 4xx
of its own kind and never reaches `int` (which refuses more than 4300 digits: a 500).
"""

from __future__ import annotations

import re

from fastreg.registry.errors import ErrorCode, RegistryError

_INT64_MAX = 2**63 - 1
_DIGITS = r"([0-9]{1,19})"
_CONTENT_RANGE_RE = re.compile(rf"(?:bytes[ =])?{_DIGITS}-{_DIGITS}")
_RANGE_RE = re.compile(r"bytes=([0-9]{0,19})-([0-9]{0,19})")
_NUMBER_RE = re.compile(_DIGITS)


def _number(text: str) -> int | None:
    """A decimal of ASCII digits within int64, else None."""
    if _NUMBER_RE.fullmatch(text) is None:
        return None
    value = int(text)
    return value if value <= _INT64_MAX else None


def content_range(value: str | None) -> tuple[int, int] | None:
    """Content-Range of an upload chunk: "<start>-<end>", inclusive (Distribution's form)."""
    if value is None or value == "":
        return None
    m = _CONTENT_RANGE_RE.fullmatch(value.strip())
    start, end = (_number(m.group(1)), _number(m.group(2))) if m else (None, None)
    if start is None or end is None or start > end:
        raise RegistryError(ErrorCode.RANGE_INVALID, detail={"Content-Range": value[:100]})
    return start, end


def content_length(value: str | None) -> int | None:
    if value is None:
        return None
    length = _number(value)
    if length is None:
        raise RegistryError(ErrorCode.SIZE_INVALID, detail={"Content-Length": value[:100]})
    return length


def byte_range(value: str | None, size: int) -> tuple[int, int] | None:
    """A single `Range: bytes=a-b` against a blob of ``size`` bytes -> (offset, length).

    Multiple ranges are not supported (no client asks for them); an unsatisfiable range -> 416.
    """
    if not value:
        return None
    m = _RANGE_RE.fullmatch(value.strip())
    first, last = (m.group(1), m.group(2)) if m else ("", "")
    start, end = _number(first) if first else None, _number(last) if last else None
    if (first and start is None) or (last and end is None):
        raise _unsatisfiable(value, size)  # beyond int64: no blob is that large
    if start is None:  # suffix: the last N bytes
        if not end:
            raise _unsatisfiable(value, size)
        if size == 0:  # no byte range can name nothing (RFC 9110 14.2 lets a server ignore Range)
            return None
        start = max(0, size - end)
        return start, size - start
    if start >= size or (end is not None and end < start):
        raise _unsatisfiable(value, size)
    end = size - 1 if end is None else min(end, size - 1)
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
    n = _number(value)
    if n is None or (maximum is not None and n > maximum):
        raise RegistryError(ErrorCode.PAGINATION_NUMBER_INVALID, detail={"n": value[:100]})
    return n


def range_header(offset: int) -> str:
    """The `Range` of an upload: bytes held so far, "0-<last>" ("0-0" when empty, as Distribution)."""
    return f"0-{max(offset - 1, 0)}"
