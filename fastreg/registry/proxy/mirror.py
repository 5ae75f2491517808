"""What a pull does on a mirror: check tags upstream, fetch what is not cached, serve stale.

Manifests. By tag: a HEAD to the upstream on every pull while it answers; the manifest is
fetched (by the digest the HEAD named) and stored only when that digest is not cached, and the
local tag follows the upstream's. By digest: served from storage once cached. When the upstream
is unreachable, times out, or answers 5xx or 429, a cached tag is served with a `Warning`
header (RFC 7234's 110, "Response is Stale") and a log line; what is not cached is 503
UNAVAILABLE, or TOOMANYREQUESTS with the upstream's Retry-After.

Blobs are content-addressed: served from storage once cached. A cold blob is fetched once per
process (single-flight, `_inflight` keyed by digest) and, through a lock named by its digest,
once across workers (and hosts, with Redis): `flight.py`. Every client of this process, the
first one and those arriving while the fetch runs, is streamed the bytes as they arrive from
a local spool (on the filesystem driver, the upload's own data file); only what hashed to the
digest is committed. A mismatch or a cut transfer cuts every client's response and caches nothing;
the upstream URL is logged. The fetch runs as its own task, so a client going away does not
stop it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from fastreg.registry.blobs import BlobInfo, BlobReader
from fastreg.registry.digests import Digest
from fastreg.registry.errors import ErrorCode, RegistryError
from fastreg.registry.leases import RedisCommands
from fastreg.registry.manifests import MAX_MANIFEST_SIZE
from fastreg.registry.manifeststore import ManifestStore
from fastreg.registry.proxy.flight import FetchLocks, Flight, transfer_failed
from fastreg.registry.proxy.stats import ProxyStats
from fastreg.registry.proxy.upstream import (
    UpstreamClient,
    UpstreamError,
    UpstreamMissing,
    UpstreamThrottled,
)
from fastreg.registry.uploads import UploadService

log = logging.getLogger("fastreg.proxy")

T = TypeVar("T")
STALE_WARNING = '110 fastreg "Response is Stale: the upstream registry did not answer"'


@dataclass(frozen=True, slots=True)
class Resolved:
    """The digest a reference names on the mirror; ``warning`` when served stale."""

    digest: Digest
    warning: str | None = None
    fetched: bool = False  # pulled from the upstream by this request (a cache miss)


def refusal(exc: UpstreamError) -> RegistryError:
    """What a client hears when the upstream failed and nothing cached answers instead."""
    if isinstance(exc, UpstreamThrottled):
        headers = {"Retry-After": exc.retry_after} if exc.retry_after else None
        return RegistryError(ErrorCode.TOOMANYREQUESTS, "the upstream registry answered 429",
                             headers=headers)  # fmt: skip
    return RegistryError(ErrorCode.UNAVAILABLE, "the upstream registry is unavailable")


class Mirror:
    def __init__(
        self,
        client: UpstreamClient,
        manifests: ManifestStore,
        uploads: UploadService,
        redis: RedisCommands | None = None,
    ) -> None:
        """``redis``: where the lock of a blob being fetched lives (`redis.addr`; flight.py)."""
        self.client = client
        self.manifests = manifests
        self.blobs = manifests.blobs
        self.tags = manifests.tags
        self.uploads = uploads
        self._inflight: dict[Digest, Flight] = {}
        self.locks = FetchLocks(manifests.blobs.driver, redis)
        port = client.base.explicit_port  # the host as the remote URL names it, no credentials
        self.stats = ProxyStats(f"{client.base.host}:{port}" if port else client.base.host or "")

    async def resolve(self, name: str, reference: str | Digest) -> Resolved:
        resolved = await self._resolve(name, reference)
        size = len((await self.manifests.load_resolved(resolved.digest)).raw)  # then cached
        self.stats.served("manifest", size, hit=not resolved.fetched)
        return resolved

    # -- manifests ---------------------------------------------------------------------------

    async def _resolve(self, name: str, reference: str | Digest) -> Resolved:
        if isinstance(reference, Digest):
            if not await self.manifests.exists(name, reference):
                return Resolved(await self._fetch_manifest(name, reference, None), fetched=True)
            return Resolved(reference)
        try:
            head = await self.client.head_manifest(name, reference)
        except UpstreamMissing:
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"tag": reference}) from None
        except UpstreamError as exc:
            self.stats.failed()
            return await self._stale(name, reference, exc)
        digest = _digest_or_none(head.digest)
        if digest is None:  # an upstream that names no digest: the manifest itself tells
            return Resolved(await self._fetch_manifest(name, reference, reference), fetched=True)
        if not await self.manifests.exists(name, digest):
            return Resolved(await self._fetch_manifest(name, digest, reference), fetched=True)
        if await self._tagged(name, reference) != digest:
            await self.tags.tag(name, reference, digest)
        return Resolved(digest)

    async def _stale(self, name: str, tag: str, exc: UpstreamError) -> Resolved:
        cached = await self._tagged(name, tag)
        if cached is None:
            log.warning("manifest %s:%s not cached and the upstream failed: %s", name, tag, exc)
            raise refusal(exc) from None
        log.warning("serving cached %s:%s (%s): upstream failed: %s", name, tag, cached, exc)
        return Resolved(cached, STALE_WARNING)

    async def _tagged(self, name: str, tag: str) -> Digest | None:
        try:
            return await self.tags.get(name, tag)
        except RegistryError as exc:
            if exc.code is ErrorCode.MANIFEST_UNKNOWN:
                return None
            raise

    async def _fetch_manifest(self, name: str, reference: str | Digest, tag: str | None) -> Digest:
        """Fetch ``reference`` from the upstream and store it (tagged ``tag``); its digest."""
        try:
            media_type, raw = await self.client.get_manifest(name, str(reference), MAX_MANIFEST_SIZE)
        except UpstreamMissing:
            detail = {"digest" if isinstance(reference, Digest) else "tag": str(reference)}
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail=detail) from None
        except UpstreamError as exc:
            self.stats.failed()
            log.warning("manifest %s@%s not cached: upstream failed: %s", name, reference, exc)
            raise refusal(exc) from None
        tags = (tag,) if tag is not None and isinstance(reference, Digest) else ()
        try:
            result = await self.manifests.put(
                name, reference, media_type, raw, tags, verify_references=False
            )
        except RegistryError as exc:
            log.warning("manifest %s@%s from %s not cached: %s", name, reference,
                        self.client.base, exc)  # fmt: skip
            raise RegistryError(
                ErrorCode.UNAVAILABLE, "the upstream registry served an invalid manifest"
            ) from None
        self.stats.pulled("manifest", len(raw))
        return result.digest

    # -- blobs -------------------------------------------------------------------------------

    async def blob_info(self, name: str, digest: Digest) -> BlobInfo:
        """A blob's size: from storage once cached, else the upstream's HEAD (nothing fetched)."""
        info = await _unless_unknown(self.blobs.stat_in(name, digest))
        if info is not None:
            return info
        return BlobInfo(digest, await self._upstream_size(name, digest))

    async def _upstream_size(self, name: str, digest: Digest) -> int:
        try:
            return await self.client.head_blob(name, str(digest))
        except UpstreamMissing:
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": str(digest)}) from None
        except UpstreamError as exc:
            self.stats.failed()
            raise refusal(exc) from None

    async def blob_source(self, name: str, digest: Digest) -> BlobReader:
        source = await _unless_unknown(self.blobs.source(name, digest))
        if source is not None:
            self.stats.served("blob", source.info.size, hit=True)
            return source
        if digest not in self._inflight and await self.blobs.exists(digest):
            # cached for another repository: linked here once the upstream confirms it
            await self._upstream_size(name, digest)
            return await self._linked_source(name, digest, hit=True)
        flight = self._inflight.get(digest)  # looked up after the last await: one per digest
        if flight is None:
            flight = self._inflight[digest] = Flight(name, digest)
            flight.task = asyncio.create_task(self._run(flight))
        spooled = await flight.reader()  # every client alike: the spool as it is written
        if spooled is None:  # committed by another process, or no size to announce
            return await self._linked_source(name, digest, hit=False)
        self.stats.served("blob", spooled.info.size, hit=False)
        return spooled

    async def _linked_source(self, name: str, digest: Digest, hit: bool) -> BlobReader:
        if not await self.blobs.is_linked(name, digest):
            await self.blobs.link(name, digest)
        source = await self.blobs.source(name, digest)
        self.stats.served("blob", source.info.size, hit)
        return source

    async def _run(self, flight: Flight) -> None:
        """The one upstream request for a cold blob, once this process holds its lock."""
        try:
            lease = await self.locks.wait_turn(flight.digest, lambda: self.blobs.exists(flight.digest))
            if lease is None:  # another process committed it: served from storage
                flight.started.set_result(None)
                return
            try:
                await self._fetch(flight)
            finally:
                await lease.release()
        except BaseException as exc:
            flight.fail(exc if isinstance(exc, RegistryError) else transfer_failed())
            if not isinstance(exc, Exception):  # cancelled (shutdown): waiters were told
                raise
        finally:
            self._inflight.pop(flight.digest, None)

    async def _fetch(self, flight: Flight) -> None:
        """The upstream's bytes to every client and to storage, committed if they check."""
        name, digest = flight.name, flight.digest
        try:
            resp = await self.client.open_blob(name, str(digest))
        except UpstreamMissing:
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": str(digest)}) from None
        except UpstreamError as exc:
            self.stats.failed()
            log.warning("blob %s@%s not cached: upstream failed: %s", name, digest, exc)
            raise refusal(exc) from None
        try:
            size = await flight.run(self.uploads, self.client.body(resp), resp.content_length)
            self.stats.pulled("blob", size)
        except BaseException as exc:  # every failure caches nothing, and is logged
            log.warning("blob %s@%s from %s not cached: %s: %s", name, digest, resp.url,
                        type(exc).__name__, exc)  # fmt: skip
            raise
        finally:
            resp.release()

    async def tags_list(self, name: str) -> list[str]:
        """The upstream's tags when it answers, else the cached ones."""
        try:
            return sorted(set(await self.client.tags(name)))
        except UpstreamMissing:
            raise RegistryError(ErrorCode.NAME_UNKNOWN, detail={"name": name}) from None
        except UpstreamError as exc:
            self.stats.failed()
            log.warning("tags of %s from the cache: upstream failed: %s", name, exc)
            return await self.tags.all(name)

    async def settled(self) -> None:
        """Return once every fetch in flight here has committed or failed: a client is streamed
        a cold blob's bytes before they are stored, so its pull can end before the commit."""
        while self._inflight:
            tasks = [f.task for f in self._inflight.values() if f.task is not None]
            await asyncio.wait(tasks) if tasks else await asyncio.sleep(0)

    async def close(self) -> None:
        for flight in list(self._inflight.values()):
            if flight.task is not None:
                flight.task.cancel()
        await self.client.close()


async def _unless_unknown(lookup: Awaitable[T]) -> T | None:
    """A store lookup's answer, None for BLOB_UNKNOWN (the mirror then asks the upstream)."""
    try:
        return await lookup
    except RegistryError as exc:
        if exc.code is ErrorCode.BLOB_UNKNOWN:
            return None
        raise


def _digest_or_none(text: str) -> Digest | None:
    try:
        return Digest.parse(text) if text else None
    except RegistryError:
        return None


__all__ = ["Mirror", "Resolved", "refusal"]
