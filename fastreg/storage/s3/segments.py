"""Files appended to in many sessions: a head object and segment objects, read as one file.

S3 cannot append. Ending every append session (a PATCH) with one whole object means the next
session must first copy that object into a new multipart upload, so a 1 GiB upload sent in
8 MiB PATCHes would copy about 64 GiB inside the store. And the parts of an unfinished multipart
upload cannot be read back, while an upload must stay readable (another worker hashes it again)
and resumable after a restart.

So an appended file is its head object (the key itself, Distribution's layout) followed by
segment objects ``<key>~/<offset, 20 digits>``, each a whole object written by one session: every
byte is copied once, when the file is moved to its blob (UploadPartCopy of each piece). The
head carries the metadata ``fastreg-segments`` once segments may follow it, so a plain file
costs one HEAD to stat, as before; a marked one costs a LIST more. ``~`` is never in a driver
path (base.check_path), so no file can collide with a segment and listings hide them.

Every piece but the last is at least 5 MiB, so each one can be a part of the composed object:
a session that finds a smaller last piece reads its few bytes back and rewrites that piece with
them in front (the same key: the store swaps it whole). Pieces are replaced only by supersets,
so a segment that ends at or before the head's end is a leftover of a merge that stopped
halfway, and is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Metadata (x-amz-meta-...) of a head object that segments may follow.
MARKER = "fastreg-segments"
#: Segment keys are ``<key>` + SEP + <offset>``; "~" cannot appear in a driver path.
SEP = "~/"
#: More segments than this are merged into the head before a session adds one (each piece is at
#: least one part of the composed object, and an object has at most 10,000 parts).
MAX_SEGMENTS = 1000


class SegmentsInconsistent(ValueError):
    """The segments of a file leave a gap or overlap: written by something other than fastreg."""


@dataclass(frozen=True, slots=True)
class Piece:
    key: str
    offset: int
    size: int
    mtime: float

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass(slots=True)
class FileLayout:
    """The objects one file is made of, in order: the head, then its segments."""

    head: Piece
    marked: bool = False
    segments: list[Piece] = field(default_factory=list)

    @property
    def pieces(self) -> list[Piece]:
        return [self.head, *self.segments]

    @property
    def last(self) -> Piece:
        return self.segments[-1] if self.segments else self.head

    @property
    def size(self) -> int:
        return self.last.end

    @property
    def mtime(self) -> float:
        return max(p.mtime for p in self.pieces)

    def put(self, piece: Piece) -> None:
        """Record a piece a session committed: a new last segment, or a rewritten last piece."""
        if piece.key == self.head.key:
            self.head, self.segments = piece, []
        elif self.segments and self.segments[-1].key == piece.key:
            self.segments[-1] = piece
        else:
            self.segments.append(piece)


def segment_prefix(key: str) -> str:
    return key + SEP


def segment_key(key: str, offset: int) -> str:
    return f"{key}{SEP}{offset:020d}"


def is_marked(head: dict[str, Any]) -> bool:
    """Whether a HeadObject or GetObject response is of a head that segments may follow."""
    return bool(head.get("Metadata", {}).get(MARKER))


def resolve(head: Piece, listed: list[dict[str, Any]]) -> FileLayout:
    """The file a marked head and the listed objects below its segment prefix make."""
    prefix = segment_prefix(head.key)
    found: list[Piece] = []
    for obj in listed:
        suffix = obj["Key"][len(prefix) :]
        if not suffix.isdigit():
            continue
        mtime = obj["LastModified"].timestamp() if obj.get("LastModified") else 0.0
        found.append(Piece(obj["Key"], int(suffix), int(obj["Size"]), mtime))
    layout = FileLayout(head, True)
    for piece in sorted(found, key=lambda p: p.offset):
        if piece.end <= layout.size:
            continue  # merged into the head (or into a rewrite) already
        if piece.offset != layout.size:
            raise SegmentsInconsistent(
                f"{head.key}: segment at {piece.offset} where {layout.size} was expected"
            )
        layout.segments.append(piece)
    return layout


def covering(layout: FileLayout, offset: int, end: int) -> list[tuple[Piece, int, int]]:
    """``(piece, start, stop)`` within each piece for the file's bytes ``offset`` to ``end``."""
    spans = []
    for piece in layout.pieces:
        start, stop = max(offset, piece.offset), min(end, piece.end)
        if start < stop:
            spans.append((piece, start - piece.offset, stop - piece.offset))
    return spans
