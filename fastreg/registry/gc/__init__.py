"""Garbage collection: mark and sweep over Distribution's storage layout, offline and online.

Mark: every repository's revision links (and, with ``delete_untagged``, its tags) say which
manifests live; a live manifest marks itself, its blobs and its child manifests. Sweep: every blob
under `blobs/` that is not marked is deleted, then the `_layers` links to it (what Distribution 3
does; 2.8 leaves them dangling, which both servers treat as absent). The output follows
Distribution's `garbage-collect` line for line, so scripts that read it keep working.

Offline (`fastreg garbage-collect CONFIG`): like Distribution, run it while nothing writes (the
registry stopped or in `maintenance.readonly`); blobs are deleted at once.

Online (`--online`, or `storage.maintenance.gc` in a running server) runs while pushes continue.
It collects blobs only (never manifests: see `delete_untagged` below) and is safe by this protocol:

1. A blob whose data is younger than ``delay`` (storage clock) is never a candidate: it may be a
   layer uploaded for a manifest that is still to come.
2. Each candidate is first made invisible: its `data` is *moved* to `_gc/tombstones/<alg>/<hex>`
   (outside `blobs/`). From then on every existence check in the registry answers "absent".
3. Only then the repositories and revision links are listed again; a revision not seen by the
   mark phase is loaded (from the tombstone when its own bytes were parked) and everything it
   references is restored (moved back). Everything else is deleted.
4. A manifest PUT (`ManifestStore.put`) checks its references, writes its revision link, and
   checks them again *after* the link is written; if one vanished it removes the link and fails
   400 MANIFEST_BLOB_UNKNOWN. Its own manifest bytes, if parked, are written again.

Why no PUT can succeed with a blob gone: take a PUT whose revision link write W references a
candidate blob B, tombstoned at time T, and the re-scan R of step 3 (T < R).
- W before R: the re-scan lists the revision, sees B referenced and restores B. If the PUT's
  second check ran while B was parked it failed cleanly; otherwise it succeeds with B restored.
- W after R, hence after T: the PUT's second check runs after W, sees B absent and fails cleanly.
Every W falls in one case (before R, or after T), so a successful PUT always has its blobs. A
blob re-uploaded meanwhile lands in `blobs/` again and deleting the tombstone does not touch it.
The argument needs list-after-write consistency of the driver (POSIX directories; S3 since 2020).
Anything uncertain in step 3 (a new manifest that cannot be read) restores every tombstone.

``delete_untagged`` (`-m`) deletes manifests, and a manifest can be re-pushed (its revision link
rewritten, then tagged) between the decision and the delete without any check on the PUT side to
catch it; it is therefore offline only. It keeps the children of a kept index, the subject of a
kept referrer and the referrers of a kept manifest; the referrers of a deleted manifest go with it.
"""

from fastreg.registry.gc.collector import GCOptions, GCReport, collect
from fastreg.registry.gc.scan import GCError

__all__ = ["GCError", "GCOptions", "GCReport", "collect"]
