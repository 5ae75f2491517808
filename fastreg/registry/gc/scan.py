"""Reading what garbage collection needs from the storage layout: repositories, their revisions,
tags and layer links, the blobs, and the manifests behind revisions.

Only the driver protocol is used (list, stat, get_content), so this works on every driver. Nothing
here writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from fastreg.registry import layout
from fastreg.registry.blobs import read_link
from fastreg.registry.catalog import list_repositories
from fastreg.registry.digests import SUPPORTED_ALGORITHMS, Digest
from fastreg.registry.errors import RegistryError
from fastreg.registry.manifests import MAX_MANIFEST_SIZE, Manifest, parse_manifest
from fastreg.registry.quietly import list_quietly
from fastreg.storage.base import PathNotFound, StorageDriver

GC_ROOT = f"{layout.ROOT}/_gc"
TOMBSTONES = f"{GC_ROOT}/tombstones"
LOCK = f"{GC_ROOT}/lock"


class GCError(Exception):
    """Garbage collection cannot proceed safely; nothing more is deleted."""


def tombstone(d: Digest) -> str:
    """Where an online collection parks blob data it is about to delete (outside `blobs/`, so
    neither fastreg nor Distribution sees it as a blob; both ignore unknown folders)."""
    return f"{TOMBSTONES}/{d.algorithm}/{d.hex}"


def parse_digest(algorithm: str, hex_: str) -> Digest | None:
    try:
        return Digest(algorithm, hex_)
    except RegistryError:
        return None


async def digests_under(driver: StorageDriver, base: str) -> list[Digest]:
    """`<base>/<alg>/<hex>` entries (revisions, layer links, tag index, tombstones)."""
    found: list[Digest] = []
    for algorithm in sorted(await list_quietly(driver, base)):
        if algorithm not in SUPPORTED_ALGORITHMS:
            continue
        for hex_ in sorted(await list_quietly(driver, f"{base}/{algorithm}")):
            d = parse_digest(algorithm, hex_)
            if d is not None:
                found.append(d)
    return found


async def list_blobs(driver: StorageDriver) -> list[Digest]:
    """Every `blobs/<alg>/<hh>/<hex>` folder (its `data` may be missing: the caller stats)."""
    found: list[Digest] = []
    for algorithm in sorted(await list_quietly(driver, layout.BLOBS)):
        if algorithm not in SUPPORTED_ALGORITHMS:
            continue
        base = f"{layout.BLOBS}/{algorithm}"
        for prefix in sorted(await list_quietly(driver, base)):
            for hex_ in sorted(await list_quietly(driver, f"{base}/{prefix}")):
                d = parse_digest(algorithm, hex_)
                if d is not None and d.hex[:2] == prefix:
                    found.append(d)
    return found


@dataclass(slots=True)
class RepoScan:
    """One repository as the mark phase saw it."""

    name: str
    revisions: dict[Digest, Manifest | None] = field(default_factory=dict)
    tags: dict[str, Digest] = field(default_factory=dict)
    layers: list[Digest] = field(default_factory=list)


async def load_manifest(
    driver: StorageDriver, d: Digest, fallbacks: Iterable[str] = ()
) -> Manifest | None:
    """The manifest stored under ``d``; None when its bytes are gone. An unparseable manifest is
    a GCError: its references are unknown, so nothing could be collected safely."""
    raw: bytes | None = None
    for path in (layout.blob_data(d), *fallbacks):
        try:
            raw = await driver.get_content(path, MAX_MANIFEST_SIZE)
            break
        except PathNotFound:
            continue
    if raw is None:
        return None
    try:
        return parse_manifest(None, raw, schema1_enabled=True, digest_algorithm=d.algorithm)
    except RegistryError as exc:
        raise GCError(f"manifest {d} cannot be parsed ({exc}); its references are unknown") from exc


async def revisions_of(driver: StorageDriver, name: str) -> list[Digest]:
    """Digests linked under `_manifests/revisions` (a folder without a valid link is skipped)."""
    out: list[Digest] = []
    for algorithm in SUPPORTED_ALGORITHMS:
        for hex_ in sorted(await list_quietly(driver, layout.revisions(name, algorithm))):
            d = parse_digest(algorithm, hex_)
            if d is not None and await read_link(driver, layout.revision_link(name, d)) == d:
                out.append(d)
    return out


async def tags_of(driver: StorageDriver, name: str) -> dict[str, Digest]:
    tags: dict[str, Digest] = {}
    for tag in sorted(await list_quietly(driver, layout.tags(name))):
        current = await read_link(driver, layout.tag_current_link(name, tag))
        if current is not None:
            tags[tag] = current
    return tags


async def scan_repository(
    driver: StorageDriver, name: str, with_tags: bool, known: dict[Digest, Manifest | None]
) -> RepoScan:
    """Revisions (manifests parsed, sharing ``known`` across repositories), tags and layers."""
    scan = RepoScan(name)
    for d in await revisions_of(driver, name):
        if d not in known:
            known[d] = await load_manifest(driver, d)
        scan.revisions[d] = known[d]
    if with_tags:
        scan.tags = await tags_of(driver, name)
    scan.layers = await digests_under(driver, layout.layers(name))
    return scan


async def repositories(driver: StorageDriver) -> list[str]:
    return await list_repositories(driver)


def references(m: Manifest) -> list[Digest]:
    """What keeping ``m`` keeps: its blobs (config, layers, foreign layers) and its children."""
    out = [b.digest for b in m.blobs]
    out += [b.digest for b in m.foreign_layers]
    out += [c.digest for c in m.manifests]
    return out


def kept_manifests(scan: RepoScan, delete_untagged: bool) -> set[Digest]:
    """The manifests of one repository that survive.

    Without ``delete_untagged`` every revision does (Distribution's default). With it, the roots
    are the tagged manifests, and keeping a manifest keeps its children (index / list entries),
    its subject, and its referrers; everything else goes. Unlike Distribution 2.8 (its issues
    3178 and 3004) nothing a kept manifest needs is ever deleted, and the referrers of a deleted
    manifest go with it.
    """
    if not delete_untagged:
        return set(scan.revisions)
    referrers: dict[Digest, list[Digest]] = {}
    for d, m in scan.revisions.items():
        if m is not None and m.subject is not None:
            referrers.setdefault(m.subject.digest, []).append(d)
    kept: set[Digest] = set()
    pending = [d for d in scan.tags.values() if d in scan.revisions]
    while pending:
        d = pending.pop()
        if d in kept:
            continue
        kept.add(d)
        m = scan.revisions.get(d)
        nxt = list(referrers.get(d, ()))
        if m is not None:
            nxt += [c.digest for c in m.manifests]
            if m.subject is not None:
                nxt.append(m.subject.digest)
        pending.extend(n for n in nxt if n in scan.revisions and n not in kept)
    return kept
