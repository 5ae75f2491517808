"""A request body made of the caller's buffers, which aiohttp sends without copying them whole.

An upload reaches the S3 writer as 1 MiB batches. Joining them into one ``chunksize`` part would
cost a copy, and aiohttp adds more: handed an ``io.BytesIO`` it calls ``getbuffer()``, which
makes the BytesIO copy the whole buffer; handed a ``bytearray``, it slices it (a copy) and, on
Python before 3.12.9, joins it to the headers (another). Each would be a part's size more per
upload.

``PartBody`` is a BytesIO as far as aiohttp can tell: it takes the length from ``getbuffer()``
and then reads it 64 KiB at a time on the loop; the client (client.py) hashes it for the
signature from the views, and the shared client (storage/rest.py) seeks back to send it again
on a retry. Reads are served from views of the batches, so the part costs no memory beyond the
batches themselves.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import itertools
from collections.abc import Sequence
from types import TracebackType
from typing import Self

Chunk = bytes | bytearray | memoryview


class PartBody(io.BytesIO):
    def __init__(self, chunks: Sequence[Chunk]) -> None:
        super().__init__()
        self._views = [memoryview(c).cast("B") for c in chunks if len(c)]
        self._starts = list(itertools.accumulate((len(v) for v in self._views), initial=0))
        self._size = self._starts[-1]
        self._pos = 0

    @property
    def size(self) -> int:
        return self._size

    def sha256(self) -> str:
        """The hex sha256 of the whole body (for a signature), read from the views."""
        digest = hashlib.sha256()
        for view in self._views:
            digest.update(view)
        return digest.hexdigest()

    def getbuffer(self) -> _Length:  # type: ignore[override]
        """What aiohttp asks for to learn the length: the length, without a copy."""
        return _Length(self._size)

    def getvalue(self) -> bytes:
        return b"".join(self._views)

    def read(self, size: int | None = -1) -> bytes:
        end = self._size if size is None or size < 0 else min(self._size, self._pos + size)
        pieces: list[memoryview] = []
        pos = self._pos
        i = bisect.bisect_right(self._starts, pos) - 1
        while pos < end:
            view = self._views[i]
            offset = pos - self._starts[i]
            n = min(len(view) - offset, end - pos)
            pieces.append(view[offset : offset + n])
            pos += n
            i += 1
        self._pos = max(self._pos, end)
        return pieces[0].tobytes() if len(pieces) == 1 else b"".join(pieces)

    def read1(self, size: int | None = -1) -> bytes:
        return self.read(size)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def __len__(self) -> int:
        return self._size

    def close(self) -> None:
        """Stays readable: aiohttp closes a body it has sent, and a retry sends it again."""


class _Length:
    """Stands in for the memoryview ``BytesIO.getbuffer()`` returns: a context manager with a
    length (all aiohttp reads of it)."""

    def __init__(self, size: int) -> None:
        self._size = size

    def __len__(self) -> int:
        return self._size

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


class PartBuffer:
    """Bytes gathered for the next part, kept as views of the caller's buffers (no copies), and
    cut into parts of an exact size (a view is split where a part ends)."""

    def __init__(self) -> None:
        self._views: list[memoryview] = []
        self.size = 0

    def add(self, data: Chunk, front: bool = False) -> None:
        if not isinstance(data, bytes):
            data = bytes(data)  # a mutable buffer may change after write() returns
        if not data:
            return
        if front:
            self._views.insert(0, memoryview(data))
        else:
            self._views.append(memoryview(data))
        self.size += len(data)

    def take(self, size: int) -> list[memoryview] | None:
        """The first ``size`` bytes once that many are held; None before."""
        if self.size < size:
            return None
        part: list[memoryview] = []
        need = size
        while need:
            view = self._views[0]
            if len(view) <= need:
                part.append(self._views.pop(0))
                need -= len(view)
            else:
                part.append(view[:need])
                self._views[0] = view[need:]
                need = 0
        self.size -= size
        return part

    def take_all(self) -> list[memoryview]:
        part, self._views, self.size = self._views, [], 0
        return part
