"""Cached content unused for its upstream's `ttl` is removed: last use recorded, an expiry sweep.

What is tracked. Manifests, per stored repository and digest: every pull of a manifest on a
mirror (by tag or by digest, the children of an index included, served stale or not) is a use.
Blobs are not tracked one by one: they stay as long as a manifest that references them does,
and go through garbage collection once none does (a blob pulled without any manifest is
reclaimed by the next collection, as on any registry; a mirror fetches it again when asked).

Where last use is kept: a small marker file per manifest in storage,
`_proxy/used/<repository>/_revisions/<alg>/<hex>` (outside `repositories/`, which Distribution
walks; `_revisions` cannot be a name component, so no repository's markers mix with another's),
whose modification time is the last use. Storage, not Redis, because it works on every driver,
across workers and hosts, with no extra configuration, and because it lives and dies with the
content it describes: Redis is configured as a cache (evictions, restarts) and a lost record
would expire content that is in use. The cost is bounded: a marker is written at most once per
`TOUCH_INTERVAL` (a minute, less for a shorter ttl) per manifest and worker, remembered in an
LRU of `TOUCHED_SIZE` entries; a manifest without a marker (cached before, or by Distribution)
counts from when it was cached (its revision link's time).

The sweep (`Expiry.sweep`, run by the server's maintenance loop every `interval`: a tenth of the
shortest ttl, between 1 s and an hour) lists the repositories of upstreams whose ttl is not 0
(only under their namespaces' prefixes unless the default upstream expires too) and
deletes each manifest unused for longer than that ttl (`ManifestStore.delete`: its tags and
revision go, as with a client's DELETE), then the markers left without a manifest. Blobs are then
reclaimed by an online garbage collection (`fastreg.registry.gc`, whose protocol stays safe under
concurrent pulls and pushes). Times are the storage's clock (a file written and stat'ed), as the
collector does. Workers share the work through `_proxy/swept`: a sweep starts only when the last
one, by any worker, is older than half an interval.

Races are harmless on a mirror: a pull that meets a manifest the sweep just removed fetches it
from the upstream again, and a blob collected meanwhile is fetched again on its next pull.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from fastreg.registry import layout
from fastreg.registry.cache.lru import LRU
from fastreg.registry.catalog import list_repositories
from fastreg.registry.digests import Digest
from fastreg.registry.errors import RegistryError
from fastreg.registry.gc.scan import digests_under, revisions_of
from fastreg.registry.manifeststore import ManifestStore
from fastreg.registry.proxy.routing import Router, storage_prefix
from fastreg.registry.quietly import delete_quietly
from fastreg.storage.base import PathNotFound, StorageDriver, StorageError

log = logging.getLogger("fastreg.proxy")

PROXY_ROOT = f"{layout.ROOT}/_proxy"
USED = f"{PROXY_ROOT}/used"
CLOCK = f"{PROXY_ROOT}/clock"
SWEPT = f"{PROXY_ROOT}/swept"
TOUCH_INTERVAL = 60.0
TOUCHED_SIZE = 65536  # manifests whose last write this worker remembers (~10 MiB at most)
MIN_INTERVAL, MAX_INTERVAL = 1.0, 3600.0


def markers(name: str) -> str:
    return f"{USED}/{name}/_revisions"


def marker(name: str, d: Digest) -> str:
    return f"{markers(name)}/{d.algorithm}/{d.hex}"


@dataclass(slots=True)
class SweepReport:
    repositories: int = 0
    expired: int = 0  # manifests removed
    markers: int = 0  # markers removed without a manifest


class Expiry:
    def __init__(self, driver: StorageDriver, manifests: ManifestStore, router: Router) -> None:
        self.driver = driver
        self.manifests = manifests
        self.router = router
        self._ttls = [u.ttl for u in (router.default, *router.upstreams) if u is not None and u.ttl > 0]
        self._touched: LRU[tuple[str, Digest], float] = LRU(TOUCHED_SIZE)
        self._owner = uuid.uuid4().hex.encode()

    @property
    def enabled(self) -> bool:
        """Is any cached content to expire (an upstream whose ttl is not 0)?"""
        return bool(self._ttls)

    @property
    def interval(self) -> float:
        """Seconds between sweeps: content goes between ttl and ttl + interval after last use."""
        shortest = min(self._ttls, default=MAX_INTERVAL * 10)
        return min(max(shortest / 10, MIN_INTERVAL), MAX_INTERVAL)

    async def used(self, name: str, digest: Digest, ttl: float) -> None:
        """A pull of ``digest`` in the stored repository ``name``, whose upstream keeps ``ttl``."""
        if ttl <= 0:
            return
        key = (name, digest)
        now = time.monotonic()
        last = self._touched.get(key)
        if last is not None and now - last < min(TOUCH_INTERVAL, ttl / 4):
            return
        self._touched.put(key, now)
        try:
            await self.driver.put_content(marker(name, digest), str(digest).encode())
        except StorageError as exc:  # the pull goes on; the content may expire a little early
            log.warning("last use of %s@%s not recorded: %s", name, digest, exc)

    async def sweep(self) -> SweepReport | None:
        """Remove expired cached manifests; None when another worker swept a moment ago."""
        now = await self._claim()
        if now is None:
            return None
        report = SweepReport()
        for name in await self._repositories():
            upstream = self.router.route(name).upstream
            if upstream is None or upstream.ttl <= 0:
                continue
            report.repositories += 1
            await self._sweep_repository(name, now - upstream.ttl, report)
        return report

    async def _sweep_repository(self, name: str, cutoff: float, report: SweepReport) -> None:
        revisions = set(await revisions_of(self.driver, name))
        for d in sorted(revisions, key=str):
            last = await self._modtime(marker(name, d))
            if last is None or last < cutoff:  # or cached again since a marker was left behind
                cached = await self._modtime(layout.revision_link(name, d))
                last = max(last or 0.0, cached or 0.0)
            if last == 0.0 or last >= cutoff:
                continue
            try:
                await self.manifests.delete(name, d)
            except RegistryError:
                pass  # removed meanwhile: the outcome is the same
            await delete_quietly(self.driver, marker(name, d))
            self._touched.pop((name, d))
            report.expired += 1
            log.info("expired %s@%s: unused since %.0fs before the cutoff", name, d, cutoff - last)
        for d in await digests_under(self.driver, markers(name)):
            if d in revisions:
                continue
            last = await self._modtime(marker(name, d))
            if last is not None and last < cutoff:  # younger: a pull may be fetching it again
                await delete_quietly(self.driver, marker(name, d))
                report.markers += 1

    async def _repositories(self) -> list[str]:
        """Those that may expire: all with a default upstream that expires, else only the
        namespaces' (a large local catalog beside them is not walked)."""
        default = self.router.default
        if default is not None and default.ttl > 0:
            return await list_repositories(self.driver)
        names: list[str] = []
        for upstream in self.router.upstreams:
            if upstream.ttl > 0:
                names += await list_repositories(self.driver, storage_prefix(upstream.namespace))
        return names

    async def _modtime(self, path: str) -> float | None:
        try:
            return (await self.driver.stat(path)).modtime
        except PathNotFound:
            return None

    async def _claim(self) -> float | None:
        """The storage clock's now, unless a sweep (by any worker) started under half an
        interval ago; then this one is skipped."""
        await self.driver.put_content(CLOCK, self._owner)
        now = (await self.driver.stat(CLOCK)).modtime
        last = await self._modtime(SWEPT)
        if last is not None and now - last < self.interval / 2:
            return None
        await self.driver.put_content(SWEPT, self._owner)
        return now
