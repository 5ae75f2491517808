"""What a pull does on a mirror: check tags upstream, fetch what is not cached, serve stale.

Manifests. By tag: a HEAD to the upstream on every pull while it answers; the manifest is
fetched (by the digest the HEAD named) and stored only when that digest is not cached, and the
local tag follows the upstream's. By digest: served from storage once cached. When the upstream
is unreachable, times out, or answers 5xx or 429, a cached tag is served with a `Warning`
header (RFC 7234's 110, "Response is Stale") and a log line; what is not cached is 503
UNAVAILABLE, or TOOMANYREQUESTS with the upstream's Retry-After.

Blobs are content-addressed: served from storage once cached. A cold blob is fetched once per
process (single-flight, `_inflight` keyed by digest): the first request starts a `_Fetch` task
that writes the upstream's bytes into an ordinary upload (`UploadService`, so the hash lane,
the digest check and the no-replace publish are the push path's own) and hands each chunk to the
first client as it passes (the tee, through a queue of a few chunks: the slower of client and
storage sets the pace). The last chunk reaches that client only once the digest was checked and
the blob committed, so a mismatch or a cut transfer ends its response short (an error for any
client) and caches nothing; the upstream URL is logged. Requests arriving while the fetch runs
wait for the commit and are then served from storage (the simple first version: they do not
stream as the bytes arrive). The fetch runs as its own task, so the first client going away does
not stop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import TypeVar

from fastreg.registry.blobs import BlobInfo, BlobReader
from fastreg.registry.digests import Digest
from fastreg.registry.errors import ErrorCode, RegistryError
from fastreg.registry.manifests import MAX_MANIFEST_SIZE
from fastreg.registry.manifeststore import ManifestStore
from fastreg.registry.proxy.stats import ProxyStats
from fastreg.registry.proxy.upstream import (
    UpstreamClient,
    UpstreamError,
    UpstreamMissing,
    UpstreamThrottled,
)
from fastreg.registry.redirects import Redirector
from fastreg.registry.uploads import UploadService, batched

log = logging.getLogger("fastreg.proxy")

T = TypeVar("T")
STALE_WARNING = '110 fastreg "Response is Stale: the upstream registry did not answer"'
TEE_DEPTH = 4  # chunks waiting for the first client: its read-ahead


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
        self, client: UpstreamClient, manifests: ManifestStore, uploads: UploadService
    ) -> None:
        self.client = client
        self.manifests = manifests
        self.blobs = manifests.blobs
        self.tags = manifests.tags
        self.uploads = uploads
        self._inflight: dict[Digest, _Fetch] = {}
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
        fetch = self._inflight.get(digest)  # looked up after the last await: one per digest
        if fetch is not None:  # a follower: served from storage once the first fetch committed
            await asyncio.shield(fetch.done)
            return await self._linked_source(name, digest, hit=False)
        fetch = _Fetch(name, digest)
        self._inflight[digest] = fetch
        fetch.task = asyncio.create_task(self._run(fetch))
        try:
            size = await asyncio.shield(fetch.started)
        except asyncio.CancelledError:  # the client went away first: nobody reads the tee
            fetch.detach()
            raise
        if size < 0:  # no Content-Length upstream: nothing to announce, served once stored
            fetch.detach()
            await asyncio.shield(fetch.done)
            return await self._linked_source(name, digest, hit=False)
        self.stats.served("blob", size, hit=False)
        return ColdBlob(BlobInfo(digest, size), fetch)

    async def _linked_source(self, name: str, digest: Digest, hit: bool) -> BlobReader:
        if not await self.blobs.is_linked(name, digest):
            await self.blobs.link(name, digest)
        source = await self.blobs.source(name, digest)
        self.stats.served("blob", source.info.size, hit)
        return source

    async def _run(self, fetch: _Fetch) -> None:
        """The one upstream request for a cold blob: stored, checked, committed (or nothing)."""
        name, digest = fetch.name, fetch.digest
        try:
            try:
                resp = await self.client.open_blob(name, str(digest))
            except UpstreamMissing:
                raise RegistryError(
                    ErrorCode.BLOB_UNKNOWN, detail={"digest": str(digest)}
                ) from None
            except UpstreamError as exc:
                self.stats.failed()
                log.warning("blob %s@%s not cached: upstream failed: %s", name, digest, exc)
                raise refusal(exc) from None
        except BaseException as exc:
            error = exc if isinstance(exc, RegistryError) else refusal(UpstreamError(
                type(exc).__name__, str(self.client.base)))  # fmt: skip
            fetch.fail(error, started=True)
            self._inflight.pop(digest, None)
            if error is not exc:  # cancelled (shutdown): waiters were told
                raise
            return
        size = resp.content_length
        fetch.started.set_result(size if size is not None else -1)
        try:
            # 1 MiB batches: one queue hop and one client write per batch, not per socket read
            await self._store(fetch, batched(resp.content.iter_any()), size)
            await fetch.finish()
        except BaseException as exc:  # every failure caches nothing, and is logged
            log.warning("blob %s@%s from %s not cached: %s: %s", name, digest, resp.url,
                        type(exc).__name__, exc)  # fmt: skip
            fetch.fail(RegistryError(ErrorCode.UNAVAILABLE, "the upstream blob transfer failed"))
            if not isinstance(exc, Exception):  # cancelled (shutdown): followers were told
                raise
        finally:
            resp.release()
            self._inflight.pop(digest, None)

    async def _store(self, fetch: _Fetch, body: AsyncIterator[bytes], size: int | None) -> None:
        upload = await self.uploads.start(fetch.name, fetch.digest.algorithm)
        try:
            status = await self.uploads.append(fetch.name, upload.upload_id, fetch.tee(body))
            if size is not None and status.offset != size:
                raise ValueError(f"cut transfer: {status.offset} of {size} bytes")
            await self.uploads.finish(fetch.name, upload.upload_id, fetch.digest)
            self.stats.pulled("blob", status.offset)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.uploads.cancel(fetch.name, upload.upload_id)
            raise

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

    async def close(self) -> None:
        for fetch in list(self._inflight.values()):
            if fetch.task is not None:
                fetch.task.cancel()
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


_END = object()


class _Fetch:
    """One cold blob in flight: the first client's queue, and the futures others wait on."""

    def __init__(self, name: str, digest: Digest) -> None:
        loop = asyncio.get_running_loop()
        self.name = name
        self.digest = digest
        self.started: asyncio.Future[int] = loop.create_future()  # the size (-1: unknown)
        self.done: asyncio.Future[None] = loop.create_future()
        for future in (self.started, self.done):  # a failure nobody waits for is not an error
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.task: asyncio.Task[None] | None = None
        self.queue: asyncio.Queue[bytes | object] = asyncio.Queue(TEE_DEPTH)
        self.attached = True
        self._held: bytes | None = None

    async def tee(self, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """``body`` to storage; to the first client one chunk behind (the last is held)."""
        async for chunk in body:
            if self._held is not None:
                await self._offer(self._held)
            self._held = chunk
            yield chunk

    async def finish(self) -> None:
        """Committed: the held chunk and the end go to the first client, followers proceed."""
        if self._held is not None:
            await self._offer(self._held)
        await self._offer(_END)
        self.done.set_result(None)

    def fail(self, error: RegistryError, started: bool = False) -> None:
        if started and not self.started.done():
            self.started.set_exception(error)
        if not self.done.done():
            self.done.set_exception(error)
        self.detach()
        if not started:
            self.queue.put_nowait(error)  # room: detach emptied the queue

    async def _offer(self, item: bytes | object) -> None:
        if self.attached:
            await self.queue.put(item)

    def detach(self) -> None:
        """The first client is gone: the fetch goes on for storage and the followers."""
        self.attached = False
        while not self.queue.empty():
            self.queue.get_nowait()

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            item = await self.queue.get()
            if item is _END:
                return
            if isinstance(item, RegistryError):
                raise item
            assert isinstance(item, bytes)
            yield item


@dataclass(frozen=True, slots=True)
class ColdBlob:
    """A blob being fetched: its bytes as they pass, for the client whose pull started it."""

    info: BlobInfo
    fetch: _Fetch
    local_path: None = None

    async def stream(self, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        end = None if length is None else offset + length
        position = 0
        try:
            async for chunk in self.fetch.chunks():
                start, position = position, position + len(chunk)
                if position <= offset or (end is not None and start >= end):
                    continue
                yield chunk[max(offset - start, 0): None if end is None else end - start]
        finally:
            self.release()

    async def redirect_url(self, method: str, via: Redirector | None = None) -> str | None:
        return None  # not stored yet: nothing a redirect could point at

    def release(self) -> None:
        self.fetch.detach()


__all__ = ["ColdBlob", "Mirror", "Resolved", "refusal"]
