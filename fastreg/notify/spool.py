"""The durable, bounded on-disk queue of one endpoint, and the per-worker slot holding it.

Layout: ``<directory>/worker-<n>/<endpoint>/`` holds append-only segment files
``<seq>.seg`` and a ``cursor``. A record is ``magic(1) length(4) crc32(4) payload``; a segment is
never appended to after the process that opened it is gone (a restart starts a new segment), so
a torn tail left by ``kill -9`` is simply where reading that segment stops. The cursor
(``seq offset crc``) is written to a temporary file, fsynced and renamed, so it is either the old
or the new position. Delivery is at least once: a crash between a delivery and its cursor write
sends those events again.

Every method here blocks on disk; `DurableQueue` runs them on the spool's own single thread,
which also serialises them. The bound is on bytes not yet delivered: a record that would pass
it is rejected (the caller counts and logs the drop). Nothing here imports from `fastreg.api`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import zlib
from dataclasses import dataclass

from fastreg.storage.filesystem import fsync_path

MAGIC = 0xE7
_HEADER = struct.Struct(">BII")
_CURSOR = struct.Struct(">QQI")
MAX_RECORD = 16 * 1024 * 1024
MAX_SLOTS = 4096


@dataclass(slots=True)
class _Segment:
    seq: int
    end: int  # bytes of valid records
    records: int


@dataclass(frozen=True, slots=True, order=True)
class Position:
    seq: int
    offset: int


def _segment_name(seq: int) -> str:
    return f"{seq:016d}.seg"


def encode(payload: bytes) -> bytes:
    return _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def scan(data: bytes, start: int = 0) -> tuple[list[bytes], int]:
    """Whole, intact records of ``data`` from ``start``, and where the intact run ends."""
    out: list[bytes] = []
    pos = start
    while pos + _HEADER.size <= len(data):
        magic, length, crc = _HEADER.unpack_from(data, pos)
        end = pos + _HEADER.size + length
        if magic != MAGIC or length > MAX_RECORD or end > len(data):
            break
        payload = data[pos + _HEADER.size : end]
        if zlib.crc32(payload) != crc:
            break
        out.append(payload)
        pos = end
    return out, pos


class Spool:
    """One endpoint's spool directory. Not thread-safe: use it from one thread at a time."""

    def __init__(self, directory: str, maxbytes: int) -> None:
        self.directory = directory
        self.maxbytes = maxbytes
        self.segment_bytes = max(4096, min(maxbytes // 4, 8 * 1024 * 1024))
        self._segments: list[_Segment] = []
        self._cursor = Position(0, 0)
        self._active: _Segment | None = None  # the segment this process appends to
        self._file: int | None = None
        self.pending_records = 0
        self.pending_bytes = 0

    # --- opening ---------------------------------------------------------------------------

    def open(self) -> None:
        os.makedirs(self.directory, exist_ok=True)
        self._cursor = self._read_cursor()
        seqs = sorted(
            int(n[:-4]) for n in os.listdir(self.directory) if n.endswith(".seg") and n[:-4].isdigit()
        )
        for seq in seqs:
            if seq < self._cursor.seq:
                self._unlink(seq)
                continue
            with open(self._path(seq), "rb") as f:
                data = f.read()
            start = self._cursor.offset if seq == self._cursor.seq else 0
            records, end = scan(data, start)
            if seq == self._cursor.seq and end < start:
                end = start
            self._segments.append(_Segment(seq, end, len(records)))
            self.pending_records += len(records)
            self.pending_bytes += end - start
        if self._segments and self._cursor.seq < self._segments[0].seq:
            self._cursor = Position(self._segments[0].seq, 0)

    def _read_cursor(self) -> Position:
        try:
            with open(os.path.join(self.directory, "cursor"), "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return Position(0, 0)
        if len(raw) != _CURSOR.size:
            return Position(0, 0)
        seq, offset, crc = _CURSOR.unpack(raw)
        if zlib.crc32(raw[:16]) != crc:
            return Position(0, 0)
        return Position(seq, offset)

    # --- appending -------------------------------------------------------------------------

    def append(self, payloads: list[bytes]) -> list[bool]:
        """Write and fsync ``payloads``; False for each one rejected at the bound."""
        accepted: list[bool] = []
        chunks: list[bytes] = []
        for payload in payloads:
            record = encode(payload)
            if self.pending_bytes + len(record) > self.maxbytes or len(payload) > MAX_RECORD:
                accepted.append(False)
                continue
            segment = self._writable()
            if segment.end > 0 and segment.end + len(record) > self.segment_bytes:
                self._flush(chunks)
                chunks = []
                self._rotate()
                segment = self._writable()
            chunks.append(record)
            segment.end += len(record)
            segment.records += 1
            self.pending_records += 1
            self.pending_bytes += len(record)
            accepted.append(True)
        self._flush(chunks)
        return accepted

    def _writable(self) -> _Segment:
        if self._active is None:
            seq = max([s.seq for s in self._segments] + [self._cursor.seq]) + 1
            self._file = os.open(self._path(seq), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            fsync_path(self.directory)
            self._active = _Segment(seq, 0, 0)
            self._segments.append(self._active)
        return self._active

    def _flush(self, chunks: list[bytes]) -> None:
        if not chunks or self._file is None:
            return
        data = b"".join(chunks)
        view = memoryview(data)
        while view:
            written = os.write(self._file, view)
            view = view[written:]
        os.fsync(self._file)

    def _rotate(self) -> None:
        if self._file is not None:
            os.close(self._file)
        self._file = None
        self._active = None

    # --- reading and acknowledging ---------------------------------------------------------

    def read(self, max_records: int, max_bytes: int) -> tuple[list[bytes], Position]:
        """Records from the cursor on (at most ``max_records``), and the position after them."""
        pos = self._cursor
        for segment in self._segments:
            if segment.seq < pos.seq:
                continue
            start = pos.offset if segment.seq == pos.seq else 0
            if start >= segment.end:
                continue
            with open(self._path(segment.seq), "rb") as f:
                f.seek(start)
                data = f.read(min(segment.end - start, max_bytes + MAX_RECORD))
            records = scan(data)[0][:max_records]
            used = 0
            taken: list[bytes] = []
            for payload in records:
                size = _HEADER.size + len(payload)
                if taken and used + size > max_bytes:
                    break
                taken.append(payload)
                used += size
            if taken:
                return taken, Position(segment.seq, start + used)
            # a corrupt record inside the valid range cannot happen (the range was scanned)
            break
        return [], pos

    def commit(self, position: Position, count: int) -> None:
        """Mark everything before ``position`` (``count`` records) delivered."""
        if position <= self._cursor:
            return
        consumed = 0
        for segment in self._segments:
            if segment.seq < self._cursor.seq or segment.seq > position.seq:
                continue
            start = self._cursor.offset if segment.seq == self._cursor.seq else 0
            stop = position.offset if segment.seq == position.seq else segment.end
            consumed += max(0, stop - start)
        self._cursor = position
        self._write_cursor(position)
        self.pending_bytes = max(0, self.pending_bytes - consumed)
        self.pending_records = max(0, self.pending_records - count)
        for segment in list(self._segments):
            done = segment.seq < position.seq or (
                segment.seq == position.seq and position.offset >= segment.end
            )
            if done and segment is not self._active:
                self._segments.remove(segment)
                self._unlink(segment.seq)
        active = self._active
        if active is not None and position == Position(active.seq, active.end) and (
            active.end >= self.segment_bytes
        ):
            self._rotate()  # the next append opens a fresh segment; this one goes next commit

    def _write_cursor(self, position: Position) -> None:
        head = struct.pack(">QQ", position.seq, position.offset)
        raw = head + struct.pack(">I", zlib.crc32(head))
        tmp = os.path.join(self.directory, "cursor.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, raw)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, os.path.join(self.directory, "cursor"))
        fsync_path(self.directory)

    def drain_all(self) -> list[bytes]:
        """Every pending record, for adopting an orphaned spool into another one."""
        out: list[bytes] = []
        while True:
            records, pos = self.read(1024, 8 * 1024 * 1024)
            if not records:
                return out
            out.extend(records)
            self.commit(pos, len(records))

    def close(self) -> None:
        self._rotate()

    def _path(self, seq: int) -> str:
        return os.path.join(self.directory, _segment_name(seq))

    def _unlink(self, seq: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(seq))


class Slot:
    """A ``worker-<n>`` directory held with an exclusive ``flock`` for the life of the process.

    The kernel drops the lock when the holder dies (``kill -9`` included), so a restarted worker
    takes the lowest free slot, which is usually its predecessor's, with its unsent events.
    """

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def try_lock(cls, path: str) -> Slot | None:
        os.makedirs(path, exist_ok=True)
        fd = os.open(os.path.join(path, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return cls(path, fd)

    @classmethod
    def acquire(cls, base: str) -> Slot:
        for n in range(MAX_SLOTS):
            slot = cls.try_lock(os.path.join(base, f"worker-{n}"))
            if slot is not None:
                return slot
        raise OSError(f"notifications.spool: all {MAX_SLOTS} slots under {base} are locked")

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def other_slots(base: str, own: str) -> list[str]:
    try:
        names = sorted(os.listdir(base))
    except FileNotFoundError:
        return []
    return [
        os.path.join(base, n)
        for n in names
        if n.startswith("worker-") and os.path.join(base, n) != own
    ]
