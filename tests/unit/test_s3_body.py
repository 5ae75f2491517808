"""The S3 request body over the caller's buffers: reads, seeks and lengths as a BytesIO gives
them, and parts cut at exact sizes without copying."""

from __future__ import annotations

import io
import os

import pytest

from fastreg.storage.s3.body import PartBody, PartBuffer


def chunks_of(data: bytes, sizes: list[int]) -> list[bytes]:
    out, pos = [], 0
    for n in sizes:
        out.append(data[pos : pos + n])
        pos += n
    return out


@pytest.mark.parametrize("sizes", [[10], [3, 7], [1, 1, 1, 7], [0, 5, 0, 5], [4, 0]])
@pytest.mark.parametrize("step", [1, 3, 4, 64, None])
def test_reads_match_bytesio(sizes: list[int], step: int | None) -> None:
    data = os.urandom(sum(sizes))
    body, reference = PartBody(chunks_of(data, sizes)), io.BytesIO(data)
    assert len(body) == len(data)
    while True:
        got, want = body.read(step), reference.read(step)
        assert got == want
        assert body.tell() == reference.tell()
        if not want:
            break


def test_seek_and_reread_as_botocore_does_to_sign_then_send() -> None:
    data = os.urandom(5000)
    body = PartBody(chunks_of(data, [1000, 3000, 1000]))
    start = body.tell()
    signed = b"".join(iter(lambda: body.read(1024), b""))
    body.seek(start)
    assert signed == data
    assert body.seek(0, io.SEEK_END) == 5000
    assert body.seek(-10, io.SEEK_END) == 4990 and body.read() == data[-10:]
    body.seek(2500)
    assert body.read(10) == data[2500:2510]
    assert body.seek(5, io.SEEK_CUR) == 2515
    with pytest.raises(ValueError):
        body.seek(-1)


def test_getbuffer_gives_the_length_aiohttp_asks_for() -> None:
    body = PartBody([b"abc", b"defg"])
    body.read(2)
    with body.getbuffer() as buf:
        assert len(buf) - body.tell() == 5
    assert body.getvalue() == b"abcdefg"


def test_readinto() -> None:
    body = PartBody([b"abc", b"def"])
    target = bytearray(4)
    assert body.readinto(target) == 4 and bytes(target) == b"abcd"
    assert body.readinto(target) == 2 and bytes(target[:2]) == b"ef"


def test_buffer_cuts_exact_parts_and_keeps_the_rest() -> None:
    data = os.urandom(25)
    buf = PartBuffer()
    for piece in chunks_of(data, [4, 9, 12]):
        buf.add(piece)
    assert buf.take(30) is None
    first = buf.take(10)
    assert first is not None and b"".join(first) == data[:10]
    second = buf.take(10)
    assert second is not None and b"".join(second) == data[10:20]
    assert buf.size == 5 and b"".join(buf.take_all()) == data[20:]
    assert buf.size == 0 and buf.take_all() == []


def test_buffer_keeps_views_of_bytes_and_copies_mutable_buffers() -> None:
    buf = PartBuffer()
    block = os.urandom(1 << 20)
    buf.add(block)
    part = buf.take(1 << 20)
    assert part is not None and part[0].obj is block  # a view of the caller's bytes, no copy
    mutable = bytearray(b"abc")
    buf.add(mutable)
    mutable[:] = b"xyz"
    buf.add(b"0", front=True)
    assert b"".join(buf.take_all()) == b"0abc"
