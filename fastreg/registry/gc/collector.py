"""The collector: mark, then sweep offline (delete at once) or online (tombstone, re-scan, decide).

The safety argument for the online sweep is in the package docstring (`fastreg.registry.gc`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from fastreg.registry import layout
from fastreg.registry.digests import Digest
from fastreg.registry.gc.scan import (
    GC_ROOT,
    LOCK,
    TOMBSTONES,
    GCError,
    RepoScan,
    digests_under,
    kept_manifests,
    list_blobs,
    load_manifest,
    references,
    repositories,
    revisions_of,
    scan_repository,
    tombstone,
)
from fastreg.registry.manifests import Manifest
from fastreg.registry.progress import SILENT, Progress, human_bytes
from fastreg.registry.quietly import delete_quietly, list_quietly, stored
from fastreg.storage.base import PathNotFound, StorageDriver

LOCK_TTL = 600.0  # a lock not refreshed for this long belongs to a collector that died
_LOCK_REFRESH = 60.0


class GCBusy(GCError):
    """Another collection holds the lock."""


@dataclass(frozen=True, slots=True)
class GCOptions:
    dry_run: bool = False
    delete_untagged: bool = False
    delay: float | None = None  # None: offline; else online, sparing blobs younger than this (s)
    verbose: bool = True  # Distribution's per-digest "marking ..." lines


@dataclass(slots=True)
class GCReport:
    """What one collection found and did: `garbage-collect` prints `summary()`, the online
    collector logs it (server/maintenance.py)."""

    repositories: int = 0
    marked: int = 0
    blobs_eligible: int = 0
    manifests_eligible: int = 0
    blobs_deleted: int = 0
    bytes_freed: int = 0
    manifests_deleted: int = 0
    layer_links_deleted: int = 0
    too_young: int = 0
    restored: int = 0
    duration: float = 0.0

    def summary(self, options: GCOptions) -> str:
        if options.dry_run:
            text = (
                f"dry run: would delete {self.blobs_eligible} blobs "
                f"({human_bytes(self.bytes_freed)}) and {self.manifests_eligible} manifests"
            )
        else:
            text = (
                f"deleted {self.blobs_deleted} blobs ({human_bytes(self.bytes_freed)} freed), "
                f"{self.manifests_deleted} manifests, {self.layer_links_deleted} layer links"
            )
        if options.delay is not None:
            text += (
                f"; spared {self.too_young} blobs younger than {options.delay:g}s, "
                f"restored {self.restored} referenced by manifests pushed meanwhile"
            )
        return text + f" in {self.duration:.1f}s"


async def collect(
    driver: StorageDriver,
    options: GCOptions,
    emit: Callable[[str], None] | None = None,
    progress: Progress | None = None,
) -> GCReport:
    """One collection. Raises GCBusy when another one runs, GCError when it cannot be safe."""
    if options.delay is not None and options.delete_untagged:
        raise GCError("deleting untagged manifests (-m) needs an offline collection")
    return await _Collector(driver, options, emit, progress).run()


class _Collector:
    def __init__(
        self,
        driver: StorageDriver,
        options: GCOptions,
        emit: Callable[[str], None] | None,
        progress: Progress | None,
    ) -> None:
        self.driver = driver
        self.options = options
        self.progress = progress or SILENT
        self._emit = emit
        self.report = GCReport()
        self.owner = uuid.uuid4().hex
        self._locked_at = 0.0
        self.marked: set[Digest] = set()
        self.known: set[tuple[str, Digest]] = set()
        self.doomed: list[tuple[RepoScan, Digest]] = []

    def emit(self, line: str) -> None:
        if self._emit is not None:
            self._emit(line)

    async def run(self) -> GCReport:
        started = time.monotonic()
        now = time.time() if self.options.dry_run else await self._lock()
        try:
            if not self.options.dry_run:
                await self._restore_leftovers()
            await self._mark()
            eligible = await self._candidates(now)
            self._emit_eligible(eligible)
            if not self.options.dry_run:
                await self._delete_manifests()
                deleted = await (
                    self._sweep_offline(eligible)
                    if self.options.delay is None
                    else self._sweep_online(eligible)
                )
                await self._delete_layer_links(deleted)
            self.progress.finish()
        finally:
            if not self.options.dry_run:
                await self._unlock()
        self.report.duration = time.monotonic() - started
        return self.report

    # -- mark --------------------------------------------------------------------------------

    async def _mark(self) -> None:
        names = await repositories(self.driver)
        self.report.repositories = len(names)
        self.progress.start("marking", len(names))
        manifests: dict[Digest, Manifest | None] = {}
        for name in names:
            self.emit(name)
            scan = await scan_repository(
                self.driver, name, self.options.delete_untagged, manifests
            )
            self.known.update((name, d) for d in scan.revisions)
            kept = kept_manifests(scan, self.options.delete_untagged)
            for d in sorted(kept, key=str):
                self._mark_manifest(name, d, scan.revisions[d])
            self.doomed += [(scan, d) for d in sorted(set(scan.revisions) - kept, key=str)]
            self.progress.advance()
            await self._refresh_lock()
        self.report.manifests_eligible = len(self.doomed)
        for scan, d in self.doomed:
            tags = " ".join(sorted(scan.tags))
            self.emit(f"manifest eligible for deletion: {{{scan.name} {d} [{tags}]}}")

    def _mark_manifest(self, name: str, d: Digest, m: Manifest | None) -> None:
        if self.options.verbose:
            self.emit(f"{name}: marking manifest {d} ")
        self.marked.add(d)
        if m is None:
            self.emit(f"{name}: manifest {d} has no content in blobs/; its references are unknown")
            return
        for ref in references(m):
            if ref not in self.marked:
                self.marked.add(ref)
                if self.options.verbose:
                    self.emit(f"{name}: marking blob {ref}")

    # -- choose ------------------------------------------------------------------------------

    async def _candidates(self, now: float) -> dict[Digest, int]:
        """Unmarked blobs (past the delay when online) -> size."""
        blobs = await list_blobs(self.driver)
        unmarked = [d for d in blobs if d not in self.marked]
        self.progress.start("checking", len(unmarked))
        eligible: dict[Digest, int] = {}
        for d in unmarked:
            self.progress.advance()
            try:
                info = await self.driver.stat(layout.blob_data(d))
            except PathNotFound:
                if self.options.delay is None and not self.options.dry_run:
                    await delete_quietly(self.driver, layout.blob_dir(d))  # an empty folder
                continue
            if self.options.delay is not None and info.modtime > now - self.options.delay:
                self.report.too_young += 1
                continue
            eligible[d] = info.size
        self.report.marked = len(self.marked)
        self.report.blobs_eligible = len(eligible)
        self.report.bytes_freed = sum(eligible.values())
        return eligible

    def _emit_eligible(self, eligible: dict[Digest, int]) -> None:
        self.emit(
            f"\n{len(self.marked)} blobs marked, {len(eligible)} blobs and "
            f"{len(self.doomed)} manifests eligible for deletion"
        )
        for d in eligible:
            self.emit(f"blob eligible for deletion: {d}")

    # -- sweep -------------------------------------------------------------------------------

    async def _delete_manifests(self) -> None:
        """Distribution's RemoveManifest: the tag index entries, then the revision; plus the
        referrers entry fastreg keeps beside them."""
        for scan, d in self.doomed:
            name = scan.name
            for tag in await list_quietly(self.driver, layout.tags(name)):
                entry = layout.tag_index_link(name, tag, d).rsplit("/", 1)[0]
                await delete_quietly(self.driver, entry)
            m = scan.revisions.get(d)
            if m is not None and m.subject is not None:
                link = layout.referrer_link(name, m.subject.digest, d)
                await delete_quietly(self.driver, link.rsplit("/", 1)[0])
            await delete_quietly(self.driver, layout.revision_dir(name, d))
            self.report.manifests_deleted += 1

    async def _sweep_offline(self, eligible: dict[Digest, int]) -> set[Digest]:
        self.progress.start("deleting", len(eligible))
        for d in eligible:
            await delete_quietly(self.driver, layout.blob_dir(d))
            self.progress.advance()
        self.report.blobs_deleted = len(eligible)
        return set(eligible)

    async def _sweep_online(self, eligible: dict[Digest, int]) -> set[Digest]:
        # Manifests pushed during the (long) mark phase: spare what they reference before parking,
        # so that only pushes landing in the short parking window meet a parked blob.
        early = await self._rescan()
        if early is None:
            return set()
        eligible = {d: size for d, size in eligible.items() if d not in early}
        self.progress.start("parking", len(eligible))
        parked: dict[Digest, int] = {}
        try:
            for d, size in eligible.items():
                self.progress.advance()
                try:
                    await self.driver.move(layout.blob_data(d), tombstone(d))
                except PathNotFound:
                    continue  # gone already
                parked[d] = size
                await self._refresh_lock()
            referenced = await self._rescan() if parked else set()
        except BaseException:
            # undecided: put everything back rather than leave blobs invisible until next run
            for d in parked:
                await self._restore(d)
            raise
        self.progress.start("deleting", len(parked))
        deleted: set[Digest] = set()
        for d in parked:
            self.progress.advance()
            if referenced is None or d in referenced:
                await self._restore(d)
                self.report.restored += 1
            else:
                await delete_quietly(self.driver, tombstone(d))
                deleted.add(d)
        self.report.blobs_deleted = len(deleted)
        self.report.bytes_freed = sum(parked[d] for d in deleted)
        return deleted

    async def _rescan(self) -> set[Digest] | None:
        """What revisions written since the mark phase reference; None when unsure."""
        referenced: set[Digest] = set()
        for name in await repositories(self.driver):
            for d in await revisions_of(self.driver, name):
                if (name, d) in self.known:
                    continue
                referenced.add(d)
                try:
                    m = await load_manifest(self.driver, d, (tombstone(d),))
                except GCError:
                    return None
                if m is None:
                    return None
                referenced.update(references(m))
                self.known.add((name, d))
                self.marked.update(references(m))
        return referenced

    async def _restore(self, d: Digest) -> None:
        try:
            await self.driver.move(tombstone(d), layout.blob_data(d))
        except PathNotFound:
            pass

    async def _restore_leftovers(self) -> None:
        """Tombstones of a collection that died midway: put them back; this run decides again."""
        for d in await digests_under(self.driver, TOMBSTONES):
            await self._restore(d)

    async def _delete_layer_links(self, deleted: set[Digest]) -> None:
        if not deleted:
            return
        for name in await repositories(self.driver):
            for d in await digests_under(self.driver, layout.layers(name)):
                if d not in deleted:
                    continue
                self.emit(f"{name}: layer link eligible for deletion: {d}")
                # the link file only, as Distribution 3 does: removing its folder could take a
                # concurrent writer's temporary file with it
                await delete_quietly(self.driver, layout.layer_link(name, d))
                # online: the blob may have been uploaded again, link included, meanwhile
                if self.options.delay is not None and await stored(
                    self.driver, layout.blob_data(d)
                ):
                    await self.driver.put_content(
                        layout.layer_link(name, d), layout.link_content(d)
                    )
                    continue
                self.report.layer_links_deleted += 1

    # -- lock --------------------------------------------------------------------------------

    async def _lock(self) -> float:
        """Take `_gc/lock`; return the storage clock's now (blob ages are on that clock)."""
        clock = f"{GC_ROOT}/clock"
        await self.driver.put_content(clock, self.owner.encode())
        now = (await self.driver.stat(clock)).modtime
        try:
            holder = await self.driver.get_content(LOCK, 256)
            age = now - (await self.driver.stat(LOCK)).modtime
            if holder != self.owner.encode() and age < LOCK_TTL:
                raise GCBusy(f"another garbage collection is running (lock {age:.0f}s old)")
        except PathNotFound:
            pass
        await self.driver.put_content(LOCK, self.owner.encode())
        await asyncio.sleep(0.05)  # two collectors that both wrote: the last writer wins
        if await self.driver.get_content(LOCK, 256) != self.owner.encode():
            raise GCBusy("another garbage collection took the lock")
        self._locked_at = time.monotonic()
        return now

    async def _refresh_lock(self) -> None:
        if self.options.dry_run or time.monotonic() - self._locked_at < _LOCK_REFRESH:
            return
        self._locked_at = time.monotonic()
        await self.driver.put_content(LOCK, self.owner.encode())

    async def _unlock(self) -> None:
        try:
            if await self.driver.get_content(LOCK, 256) == self.owner.encode():
                await self.driver.delete(LOCK)
        except PathNotFound:
            pass

