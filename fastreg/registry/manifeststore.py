"""Manifests in a repository: put (validate, check references, store, tag), get, delete, and the
referrers index kept beside them.

Manifest bytes are stored byte-exact as blobs; `_manifests/revisions` links them into the
repository. A manifest is linked only after every blob and child manifest it references is known
to the repository, and a tag is written only after its manifest is linked, so no tag ever points to
a missing manifest.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from fastreg.registry import layout
from fastreg.registry.blobs import BlobStore, read_link
from fastreg.registry.cache.lru import LRU
from fastreg.registry.catalog import Catalog
from fastreg.registry.digests import Digest
from fastreg.registry.errors import ErrorCode, RegistryError
from fastreg.registry.manifests import MAX_MANIFEST_SIZE, Descriptor, Manifest, parse_manifest
from fastreg.registry.policy import RegistrySettings
from fastreg.registry.quietly import delete_quietly, list_quietly, stored
from fastreg.registry.tags import TagStore
from fastreg.storage.base import StorageDriver


@dataclass(frozen=True, slots=True)
class PutResult:
    digest: Digest
    subject: Digest | None
    tags: tuple[str, ...]


class ManifestStore:
    def __init__(
        self,
        driver: StorageDriver,
        blobs: BlobStore,
        tags: TagStore,
        catalog: Catalog | None = None,
        settings: RegistrySettings | None = None,  # schema1 and layer-URL rules for pushes
        cache_size: int = 4096,
    ) -> None:
        self.driver = driver
        self.settings = settings or RegistrySettings()
        self.blobs = blobs
        self.tags = tags
        self.catalog = catalog or Catalog(driver)
        self._parsed: LRU[Digest, Manifest] = LRU(cache_size)

    @property
    def cache(self) -> LRU[Digest, Manifest]:
        """The parsed-manifest cache, for its hit and miss counts (debug vars, metrics)."""
        return self._parsed

    async def exists(self, name: str, digest: Digest) -> bool:
        return await read_link(self.driver, layout.revision_link(name, digest)) == digest

    async def resolve(self, name: str, reference: str | Digest) -> Digest:
        if isinstance(reference, Digest):
            if not await self.exists(name, reference):
                raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"digest": str(reference)})
            return reference
        return await self.tags.get(name, reference)

    async def get(self, name: str, reference: str | Digest) -> Manifest:
        return await self.load_resolved(await self.resolve(name, reference))

    async def load_resolved(self, digest: Digest) -> Manifest:
        """The manifest of a digest ``resolve`` returned: a tag names only linked manifests (a
        tag is written after its manifest is linked and removed before it is unlinked), so its
        revision link is not read a second time."""
        manifest = await self.load(digest)
        if manifest is None:
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"digest": str(digest)})
        return manifest

    async def load(self, digest: Digest) -> Manifest | None:
        """The stored manifest with this digest (any repository), parsed once and cached."""
        cached = self._parsed.get(digest)
        if cached is not None:
            return cached
        try:
            raw = await self.blobs.get(digest, MAX_MANIFEST_SIZE)
        except RegistryError:
            return None
        try:
            manifest = parse_manifest(
                None, raw, schema1_enabled=True, digest_algorithm=digest.algorithm
            )
        except RegistryError:
            return None
        # a signed schema1 manifest's digest is of its payload; keep the one it is stored under
        if manifest.digest != digest:
            manifest = _with_digest(manifest, digest)
        self._parsed.put(digest, manifest)
        return manifest

    async def put(
        self,
        name: str,
        reference: str | Digest,
        content_type: str | None,
        raw: bytes,
        extra_tags: tuple[str, ...] = (),
        verify_references: bool = True,
    ) -> PutResult:
        """Store a manifest. ``verify_references=False`` for a mirror: its blobs are fetched
        from the upstream when pulled, after the manifest that names them, and its layer URLs
        are the upstream's (Distribution's proxy skips both checks)."""
        algorithm = reference.algorithm if isinstance(reference, Digest) else "sha256"
        manifest = parse_manifest(
            content_type, raw, schema1_enabled=self.settings.schema1_enabled, digest_algorithm=algorithm
        )
        if isinstance(reference, Digest) and manifest.digest != reference:
            raise RegistryError(
                ErrorCode.DIGEST_INVALID,
                detail={"expected": str(reference), "actual": str(manifest.digest)},
            )
        if verify_references:
            self.settings.manifest_urls.check(manifest)
            await self._verify_references(name, manifest)
        await self.blobs.put(manifest.digest, raw)
        content = layout.link_content(manifest.digest)
        await self.driver.put_content(layout.revision_link(name, manifest.digest), content)
        await self.catalog.changed()  # the repository's first manifest makes it appear
        if verify_references:
            await self._verify_after_link(name, manifest)
        if manifest.subject is not None:
            link = layout.referrer_link(name, manifest.subject.digest, manifest.digest)
            await self.driver.put_content(link, content)
        self._parsed.put(manifest.digest, manifest)
        tags = ((reference,) if isinstance(reference, str) else ()) + extra_tags
        for tag in dict.fromkeys(tags):
            await self.tags.tag(name, tag, manifest.digest)
        subject = manifest.subject.digest if manifest.subject is not None else None
        return PutResult(manifest.digest, subject, tuple(dict.fromkeys(tags)))

    async def _verify_references(self, name: str, manifest: Manifest) -> None:
        async def blob_known(digest: Digest) -> bool:
            return await self.blobs.is_linked(name, digest) and await self.blobs.exists(digest)

        # every reference at once: on object storage each check is a round trip
        checks = [blob_known(b.digest) for b in manifest.blobs]
        checks += [self.exists(name, c.digest) for c in manifest.manifests]
        known = await asyncio.gather(*checks)
        refs = [*manifest.blobs, *manifest.manifests]
        missing = [str(ref.digest) for ref, ok in zip(refs, known, strict=True) if not ok]
        if missing:
            raise RegistryError(
                ErrorCode.MANIFEST_BLOB_UNKNOWN,
                detail={"digest": missing[0]} if len(missing) == 1 else {"digests": missing},
            )

    async def _verify_after_link(self, name: str, manifest: Manifest) -> None:
        """Online GC may have parked a blob between the first check and the revision link: check
        again, on storage itself (not the descriptor cache), now that the link is visible to its
        re-scan; `fastreg.registry.gc` explains why this closes the race. The manifest's own
        bytes too: a collection that listed them before they were written again may have parked
        them since; they are simply written once more. All checks at once: each is a round trip
        on object storage."""
        own = layout.blob_data(manifest.digest)
        own_stored, *found = await asyncio.gather(
            stored(self.driver, own),
            *(stored(self.driver, layout.blob_data(b.digest)) for b in manifest.blobs),
        )
        if not own_stored:
            await self.driver.put_content(own, manifest.raw)
        missing = [b.digest for b, ok in zip(manifest.blobs, found, strict=True) if not ok]
        if missing:
            for d in missing:
                await self.blobs.cache.forget(d)  # or the next push would skip the upload again
            await delete_quietly(self.driver, layout.revision_dir(name, manifest.digest))
            raise RegistryError(
                ErrorCode.MANIFEST_BLOB_UNKNOWN,
                detail={"digests": [str(d) for d in missing]},
            )

    async def delete(self, name: str, digest: Digest) -> None:
        """Remove a manifest from the repository, with every tag that points to it."""
        if not await self.exists(name, digest):
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"digest": str(digest)})
        manifest = await self.load(digest)
        for tag in await self.tags.lookup(name, digest):
            try:
                await self.tags.untag(name, tag)
            except RegistryError:
                pass  # removed concurrently: the outcome is the same
        if manifest is not None and manifest.subject is not None:
            link = layout.referrer_link(name, manifest.subject.digest, digest)
            await delete_quietly(self.driver, link.rsplit("/", 1)[0])
        await delete_quietly(self.driver, layout.revision_dir(name, digest))
        await self.catalog.changed()  # on object storage the last manifest takes the repository

    async def referrers(
        self, name: str, subject: Digest, artifact_type: str | None = None
    ) -> list[Descriptor]:
        """Manifests in ``name`` whose subject is ``subject``, optionally of one artifact type."""
        base = layout.referrers_dir(name, subject)
        found: list[Descriptor] = []
        for algorithm in await list_quietly(self.driver, base):
            for hex_ in sorted(await list_quietly(self.driver, f"{base}/{algorithm}")):
                try:
                    digest = Digest.parse(f"{algorithm}:{hex_}")
                except RegistryError:
                    continue
                # the index may outlive a manifest deleted by another server: the revision decides
                if not await self.exists(name, digest):
                    continue
                manifest = await self.load(digest)
                if manifest is None or manifest.subject is None:
                    continue
                if artifact_type is not None and manifest.artifact_type != artifact_type:
                    continue
                found.append(
                    Descriptor(
                        media_type=manifest.media_type,
                        digest=digest,
                        size=len(manifest.raw),
                        annotations=dict(manifest.annotations) or None,
                        artifact_type=manifest.artifact_type,
                    )
                )
        return found


def _with_digest(manifest: Manifest, digest: Digest) -> Manifest:
    return replace(manifest, digest=digest)

