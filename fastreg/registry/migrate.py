"""`fastreg migrate SRC DST`: copy a registry's storage to another driver (filesystem -> S3, ...)
while the source keeps serving.

Blobs first: each one missing at the destination (or of another size) is streamed through its
digest into a temporary file under `_migrate/` and moved into `blobs/` only once the digest
matches, so a blob present at the destination is always whole and verified. Then each
repository's links, in the order a push writes them: `_layers`, revisions, referrers, then per tag
its history and last its `current` link. A link is written only after what it names is at the
destination (a blob or manifest pushed to the source after the blob pass is copied right then), so
the destination never names missing content, and an interrupted run leaves nothing half-written.

A second run compares and copies only what changed: blobs by presence and size (they are
immutable), links by content. Upload sessions in progress are not copied. Nothing is deleted at
the destination; deletions on the source (tags, manifests) are not carried over.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from fastreg.registry import layout
from fastreg.registry.blobs import LINK_LIMIT
from fastreg.registry.catalog import list_repositories
from fastreg.registry.digests import Digest, new_hasher
from fastreg.registry.errors import RegistryError
from fastreg.registry.gc.scan import GCError, digests_under, list_blobs, load_manifest
from fastreg.registry.progress import SILENT, Progress, human_bytes
from fastreg.registry.quietly import delete_quietly, list_quietly
from fastreg.storage.base import PathNotFound, StorageDriver

TEMP = f"{layout.ROOT}/_migrate"


class MigrateError(Exception):
    """A blob at the source does not match its digest."""


@dataclass(slots=True)
class MigrateReport:
    """What one run did; a second run over unchanged storage copies nothing (every blob counts
    in `blobs_present`, every link in `links_unchanged`)."""

    blobs_copied: int = 0
    bytes_copied: int = 0
    blobs_present: int = 0
    links_written: int = 0
    links_unchanged: int = 0
    repositories: int = 0
    vanished: list[str] = field(default_factory=list)  # deleted at the source while copying

    def summary(self) -> str:
        return (
            f"copied {self.blobs_copied} blobs ({human_bytes(self.bytes_copied)}), "
            f"{self.blobs_present} already there; {self.repositories} repositories: "
            f"{self.links_written} links written, {self.links_unchanged} unchanged"
            + (f"; {len(self.vanished)} deleted at the source meanwhile" if self.vanished else "")
        )


async def migrate(
    src: StorageDriver,
    dst: StorageDriver,
    progress: Progress | None = None,
    emit: Callable[[str], None] | None = None,
) -> MigrateReport:
    m = _Migration(src, dst, progress or SILENT, emit or (lambda _: None))
    await m.run()
    return m.report


class _Migration:
    def __init__(
        self,
        src: StorageDriver,
        dst: StorageDriver,
        progress: Progress,
        emit: Callable[[str], None],
    ) -> None:
        self.src, self.dst, self.progress, self.emit = src, dst, progress, emit
        self.report = MigrateReport()
        self.done: set[Digest] = set()
        self.revisions: set[tuple[str, Digest]] = set()

    async def run(self) -> None:
        await delete_quietly(self.dst, TEMP)  # what an interrupted run left
        blobs = await list_blobs(self.src)
        sizes: dict[Digest, int] = {}
        for d in blobs:
            try:
                sizes[d] = (await self.src.stat(layout.blob_data(d))).size
            except PathNotFound:
                continue
        self.emit(f"{len(sizes)} blobs, {human_bytes(sum(sizes.values()))} at the source")
        self.progress.start("blobs", sum(sizes.values()), as_bytes=True)
        for d, size in sizes.items():
            await self.blob(d)
            self.progress.advance(size)
        self.emit(
            f"blobs: {self.report.blobs_copied} copied, {self.report.blobs_present} already there"
        )
        names = await list_repositories(self.src)
        self.report.repositories = len(names)
        self.progress.start("repositories", len(names))
        for name in names:
            await self.repository(name)
            self.progress.advance()
        self.progress.finish()

    # -- blobs -------------------------------------------------------------------------------

    async def blob(self, d: Digest) -> bool:
        """Make ``d`` present and verified at the destination; False if the source lost it."""
        if d in self.done:
            return True
        path = layout.blob_data(d)
        try:
            size = (await self.src.stat(path)).size
        except PathNotFound:
            self.report.vanished.append(str(d))
            return False
        try:
            present = (await self.dst.stat(path)).size == size
        except PathNotFound:
            present = False
        if present:
            self.report.blobs_present += 1
        else:
            await self._copy_blob(d, path)
        self.done.add(d)
        return True

    async def _copy_blob(self, d: Digest, path: str) -> None:
        temp = f"{TEMP}/{uuid.uuid4().hex}"
        hasher = new_hasher(d.algorithm)
        writer = await self.dst.writer(temp, append=False)
        try:
            async for chunk in self.src.reader(path):
                hasher.update(chunk)
                await writer.write(chunk)
            if hasher.hexdigest() != d.hex:
                raise MigrateError(
                    f"blob {d} at the source has digest {d.algorithm}:"
                    f"{hasher.hexdigest()}; not copied"
                )
            await writer.commit()
            size = writer.size
        except BaseException:
            await writer.cancel()
            raise
        await writer.close()
        await self.dst.move(temp, path)
        self.report.blobs_copied += 1
        self.report.bytes_copied += size

    # -- repositories ------------------------------------------------------------------------

    async def repository(self, name: str) -> None:
        for d in await digests_under(self.src, layout.layers(name)):
            if await self.blob(d):
                await self.link(layout.layer_link(name, d))
        for algorithm in ("sha256", "sha512"):
            for hex_ in sorted(await list_quietly(self.src, layout.revisions(name, algorithm))):
                try:
                    await self.revision(name, Digest(algorithm, hex_))
                except RegistryError:
                    continue
        base = f"{layout.manifests(name)}/referrers"
        for subject in await digests_under(self.src, base):
            sub = f"{base}/{subject.algorithm}/{subject.hex}"
            for d in await digests_under(self.src, sub):
                if await self.revision(name, d):
                    await self.link(f"{sub}/{d.algorithm}/{d.hex}/link")
        for tag in sorted(await list_quietly(self.src, layout.tags(name))):
            index = f"{layout.tag_dir(name, tag)}/index"
            for d in await digests_under(self.src, index):
                if await self.revision(name, d):
                    await self.link(layout.tag_index_link(name, tag, d))
            current = await self._read(self.src, layout.tag_current_link(name, tag))
            if current is not None and await self.revision(name, _digest(current)):
                await self.link(layout.tag_current_link(name, tag))

    async def revision(self, name: str, d: Digest | None) -> bool:
        """The manifest, everything it references, and its revision link, at the destination."""
        if d is None:
            return False
        if (name, d) in self.revisions:
            return True
        if not await self.blob(d):
            return False
        try:
            manifest = await load_manifest(self.src, d)
        except GCError:
            manifest = None  # not ours to judge: copied as stored, its references unknown
        if manifest is not None:
            for blob in manifest.blobs:
                if await self.blob(blob.digest):
                    await self.link(layout.layer_link(name, blob.digest), required=False)
            for child in manifest.manifests:
                await self.revision(name, child.digest)
        if not await self.link(layout.revision_link(name, d)):
            return False
        self.revisions.add((name, d))
        return True

    async def link(self, path: str, required: bool = True) -> bool:
        content = await self._read(self.src, path)
        if content is None:
            return not required
        if await self._read(self.dst, path) == content:
            self.report.links_unchanged += 1
        else:
            await self.dst.put_content(path, content)
            self.report.links_written += 1
        return True

    @staticmethod
    async def _read(driver: StorageDriver, path: str) -> bytes | None:
        try:
            return await driver.get_content(path, LINK_LIMIT)
        except PathNotFound:
            return None


def _digest(content: bytes) -> Digest | None:
    try:
        return Digest.parse(content.decode("ascii", "replace").strip())
    except RegistryError:
        return None
