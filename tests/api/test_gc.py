"""Garbage collection over each local driver: what goes, what stays, and the online protocol."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from fastreg.registry import layout
from fastreg.registry.digests import Digest
from fastreg.registry.gc import GCError, GCOptions, collect
from fastreg.registry.gc.collector import LOCK, GCBusy
from fastreg.registry.gc.scan import tombstone
from fastreg.storage.base import PathNotFound, StorageDriver
from tests.api.conftest import Client, MakeClient, driver_of
from tests.api.helpers import (
    EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    descriptor,
    expect_error,
    image_index,
    push_blob,
    push_image,
    put_manifest,
    sha256,
)


async def exists(driver: StorageDriver, path: str) -> bool:
    try:
        await driver.stat(path)
    except PathNotFound:
        return False
    return True


async def has_blob(driver: StorageDriver, digest: str) -> bool:
    return await exists(driver, layout.blob_data(Digest.parse(digest)))


async def has_revision(driver: StorageDriver, name: str, digest: str) -> bool:
    return await exists(driver, layout.revision_link(name, Digest.parse(digest)))


async def pulls(client: Client, name: str, ref: str) -> bool:
    """The manifest and every blob it names can be fetched (children of an index too)."""
    resp = await client.get(
        f"/v2/{name}/manifests/{ref}", headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"}
    )
    if resp.status != 200:
        return False
    body = orjson.loads(await resp.read())
    for child in body.get("manifests", []):
        if not await pulls(client, name, child["digest"]):
            return False
    for d in [body.get("config", {}).get("digest"), *(x["digest"] for x in body.get("layers", []))]:
        if d is not None:
            r = await client.get(f"/v2/{name}/blobs/{d}")
            if r.status != 200 or sha256(await r.read()) != d:
                return False
    return True


async def referrer(
    client: Client, name: str, subject: str, subject_body: bytes, tag: str | None = None
) -> str:
    """Push a signature-like artifact whose subject is ``subject``; returns its digest."""
    payload = b"signature of " + subject.encode() + (tag or "").encode()
    await push_blob(client, name, b"{}")
    await push_blob(client, name, payload)
    body = orjson.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.sig",
            "config": descriptor(EMPTY, b"{}"),
            "layers": [descriptor("application/octet-stream", payload)],
            "subject": descriptor(OCI_MANIFEST, subject_body),
        }
    )
    resp = await put_manifest(client, name, tag or sha256(body), body)
    assert resp.status == 201, await resp.text()
    return sha256(body)


async def test_plain_gc_deletes_only_unreferenced_blobs(client: Client) -> None:
    driver = driver_of(client)
    kept, _ = await push_image(client, "app", "v1", [b"shared", b"kept-only"])
    doomed, doomed_body = await push_image(client, "app", "old", [b"shared", b"doomed-only"])
    untagged, _ = await push_image(client, "app", None, [b"untagged-only"])
    assert (await client.delete(f"/v2/app/manifests/{doomed}")).status == 202

    lines: list[str] = []
    dry = await collect(driver, GCOptions(dry_run=True), lines.append)
    assert dry.blobs_eligible == 3 and dry.blobs_deleted == 0  # manifest, config, layer
    assert await has_blob(driver, sha256(b"doomed-only"))
    assert f"blob eligible for deletion: {sha256(b'doomed-only')}" in lines
    assert any("blobs marked, 3 blobs and 0 manifests eligible for deletion" in x for x in lines)

    report = await collect(driver, GCOptions())
    assert (report.blobs_deleted, report.manifests_deleted) == (3, 0)
    config = orjson.dumps({"architecture": "amd64", "os": "linux", "tag": "old"})
    assert report.bytes_freed == len(b"doomed-only") + len(doomed_body) + len(config)
    assert report.layer_links_deleted == 2  # manifests have no `_layers` link
    assert not await has_blob(driver, sha256(b"doomed-only"))
    assert not await has_blob(driver, doomed)
    assert not await exists(driver, layout.layer_link("app", Digest.parse(sha256(b"doomed-only"))))
    assert await has_blob(driver, sha256(b"shared"))
    assert await pulls(client, "app", "v1") and await pulls(client, "app", kept)
    assert await pulls(client, "app", untagged)  # without -m untagged manifests stay
    again = await collect(driver, GCOptions())
    assert again.blobs_eligible == 0


async def test_delete_untagged_keeps_what_kept_manifests_need(client: Client) -> None:
    driver = driver_of(client)
    amd, amd_body = await push_image(client, "multi", None, [b"amd-layer"])
    arm, arm_body = await push_image(client, "multi", None, [b"arm-layer"])
    index = image_index([(OCI_MANIFEST, amd_body), (OCI_MANIFEST, arm_body)])
    assert (await put_manifest(client, "multi", "latest", index, OCI_INDEX)).status == 201
    sig_of_child = await referrer(client, "multi", amd, amd_body)

    lone, lone_body = await push_image(client, "multi", None, [b"lone-layer"])
    sig_of_lone = await referrer(client, "multi", lone, lone_body)

    subject, subject_body = await push_image(client, "multi", None, [b"subject-layer"])
    tagged_sig = await referrer(client, "multi", subject, subject_body, tag="sig")

    old, _ = await push_image(client, "multi", "moving", [b"old-layer"])
    new, _ = await push_image(client, "multi", "moving", [b"new-layer"])

    lines: list[str] = []
    report = await collect(driver, GCOptions(delete_untagged=True), lines.append)
    gone = {lone, sig_of_lone, old}
    assert report.manifests_deleted == len(gone), lines
    for d in gone:
        assert not await has_revision(driver, "multi", d)
        assert not await has_blob(driver, d)
    for layer in (b"lone-layer", b"old-layer", b"signature of " + lone.encode()):
        assert not await has_blob(driver, sha256(layer))
    for d in (amd, arm, sig_of_child, subject, tagged_sig, new, sha256(index)):
        assert await has_revision(driver, "multi", d), d
    assert await pulls(client, "multi", "latest")
    assert await pulls(client, "multi", "sig") and await pulls(client, "multi", subject)
    assert await pulls(client, "multi", "moving")
    # the tag's history no longer names the deleted manifest
    old_d = Digest.parse(old)
    assert not await exists(driver, layout.tag_index_link("multi", "moving", old_d))
    refs = await (await client.get(f"/v2/multi/referrers/{amd}")).json()
    assert [m["digest"] for m in refs["manifests"]] == [sig_of_child]
    refs = await (await client.get(f"/v2/multi/referrers/{lone}")).json()
    assert refs["manifests"] == []


async def test_online_spares_young_blobs(client: Client) -> None:
    driver = driver_of(client)
    doomed, _ = await push_image(client, "app", "x", [b"young-layer"])
    assert (await client.delete(f"/v2/app/manifests/{doomed}")).status == 202
    report = await collect(driver, GCOptions(delay=3600))
    assert report.too_young == 3 and report.blobs_deleted == 0
    assert await has_blob(driver, sha256(b"young-layer"))
    report = await collect(driver, GCOptions(delay=0))
    assert report.blobs_deleted == 3
    assert not await has_blob(driver, sha256(b"young-layer"))
    assert not await exists(driver, tombstone(Digest.parse(doomed)))


async def test_online_refuses_delete_untagged(client: Client) -> None:
    with pytest.raises(GCError):
        await collect(driver_of(client), GCOptions(delete_untagged=True, delay=60))


async def test_manifest_pushed_during_sweep_gets_its_blob_back(client: Client) -> None:
    """The revision link lands after the blob is parked but before the re-scan: restored."""
    driver = driver_of(client)
    layer = b"recycled-layer"
    doomed, _ = await push_image(client, "app", "x", [layer])
    assert (await client.delete(f"/v2/app/manifests/{doomed}")).status == 202
    original_move = driver.move
    pushed: list[int] = []

    async def move_then_push(source: str, dest: str) -> None:
        await original_move(source, dest)
        if dest == tombstone(Digest.parse(sha256(layer))) and not pushed:
            # a client that saw the blob a moment ago pushes a manifest naming it
            resp = await put_manifest(client, "app", "new", _manifest_with(layer, b"cfg-new"))
            pushed.append(resp.status)

    await push_blob(client, "app", b"cfg-new")
    driver.move = move_then_push  # type: ignore[method-assign]
    try:
        report = await collect(driver, GCOptions(delay=0))
    finally:
        driver.move = original_move  # type: ignore[method-assign]
    assert pushed == [400]  # its second check saw the blob parked: a clean failure...
    assert report.restored == 0  # ...and it removed its link, so the re-scan had nothing to keep
    assert not await has_blob(driver, sha256(layer))
    assert not await has_revision(driver, "app", sha256(_manifest_with(layer, b"cfg-new")))


async def test_revision_seen_by_rescan_restores_blob(client: Client) -> None:
    driver = driver_of(client)
    layer = b"restored-layer"
    doomed, _ = await push_image(client, "app", "x", [layer])
    assert (await client.delete(f"/v2/app/manifests/{doomed}")).status == 202
    original_move = driver.move

    async def move_then_link(source: str, dest: str) -> None:
        await original_move(source, dest)
        if dest == tombstone(Digest.parse(doomed)):
            # the PUT got past its second check before the blob was parked: only its link shows
            await driver.put_content(
                layout.revision_link("app", Digest.parse(doomed)), doomed.encode()
            )

    driver.move = move_then_link  # type: ignore[method-assign]
    try:
        report = await collect(driver, GCOptions(delay=0))
    finally:
        driver.move = original_move  # type: ignore[method-assign]
    assert report.restored == 3 and report.blobs_deleted == 0
    assert await pulls(client, "app", doomed)


async def test_put_after_park_fails_cleanly_and_own_bytes_are_rewritten(client: Client) -> None:
    driver = driver_of(client)
    layer = b"parked-layer"
    await push_blob(client, "app", layer)
    await push_blob(client, "app", b"cfg")
    body = _manifest_with(layer, b"cfg")
    d = Digest.parse(sha256(layer))
    await driver.move(layout.blob_data(d), tombstone(d))
    await expect_error(await put_manifest(client, "app", "t", body), 400, "MANIFEST_BLOB_UNKNOWN")
    await driver.move(tombstone(d), layout.blob_data(d))

    # the manifest's own bytes parked between the PUT's store and its link: written again
    md = Digest.parse(sha256(body))
    await driver.put_content(layout.blob_data(md), body)
    original_put = driver.put_content

    async def park_after_store(path: str, data: bytes) -> None:
        if path == layout.revision_link("app", md):
            await driver.move(layout.blob_data(md), tombstone(md))
        await original_put(path, data)

    driver.put_content = park_after_store  # type: ignore[method-assign]
    try:
        assert (await put_manifest(client, "app", "t", body)).status == 201
    finally:
        driver.put_content = original_put  # type: ignore[method-assign]
    assert await pulls(client, "app", "t")


async def test_leftover_tombstones_are_restored_and_decided_again(client: Client) -> None:
    driver = driver_of(client)
    await push_image(client, "app", "v1", [b"in-use"])
    d = Digest.parse(sha256(b"in-use"))
    await driver.move(layout.blob_data(d), tombstone(d))  # a collector died here
    report = await collect(driver, GCOptions())
    assert report.blobs_deleted == 0
    assert await pulls(client, "app", "v1")


async def test_a_second_collector_is_refused(client: Client) -> None:
    driver = driver_of(client)
    await driver.put_content(LOCK, b"someone-else")
    with pytest.raises(GCBusy):
        await collect(driver, GCOptions())
    await collect(driver, GCOptions(dry_run=True))  # a dry run takes no lock


def _manifest_with(layer: bytes, config: bytes) -> bytes:
    return orjson.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor("application/vnd.oci.image.config.v1+json", config),
            "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", layer)],
        }
    )


async def test_concurrent_pushes_and_collections_keep_every_tag_whole(
    make_client: MakeClient,
) -> None:
    """In-process version of the integration loop: pushes re-using parked blobs race GC."""
    client = await make_client()
    driver = driver_of(client)
    stop = time.monotonic() + 3
    outcomes: dict[int, int] = {}
    current: dict[str, str] = {}
    retired: list[str] = []
    round_done = asyncio.Event()

    async def pusher() -> None:
        i = 0
        while time.monotonic() < stop:
            i += 1
            layers = [f"unique-{i}".encode(), f"recycled-{i % 7}".encode()]
            for layer in layers:
                head = await client.head(f"/v2/app/blobs/{sha256(layer)}")
                if head.status != 200:
                    await push_blob(client, "app", layer)
            config = f"cfg-{i}".encode()
            await push_blob(client, "app", config)
            body = _manifest_with(layers[1], config)
            resp = await put_manifest(client, "app", f"t{i % 4}", body)
            outcomes[resp.status] = outcomes.get(resp.status, 0) + 1
            if resp.status == 201:
                tag = f"t{i % 4}"
                previous = current.get(tag)
                current[tag] = sha256(body)
                if previous is not None and previous not in current.values():
                    retired.append(previous)
                if len(retired) >= 3:
                    # A blob of a manifest pushed mid-collection may be parked until that
                    # collection's re-scan restores it: judge after a collection has ended
                    # (the next one, or the last, when the collector is done already: waiting
                    # then would wait forever)
                    if collecting:
                        round_done.clear()
                        await round_done.wait()
                    for old in retired:
                        assert await pulls(client, "app", old), old
                        assert (await client.delete(f"/v2/app/manifests/{old}")).status == 202
                    retired.clear()
            else:
                await expect_error(resp, 400, "MANIFEST_BLOB_UNKNOWN")

    collecting = True

    async def collector() -> None:
        nonlocal collecting
        while time.monotonic() < stop:
            await collect(driver, GCOptions(delay=0))
            round_done.set()
            await asyncio.sleep(0)
        collecting = False
        round_done.set()

    await asyncio.gather(pusher(), collector())
    assert outcomes.get(201, 0) > 10, outcomes
    assert set(outcomes) <= {201, 400}, outcomes
    for tag, digest in current.items():
        assert await pulls(client, "app", tag) and await pulls(client, "app", digest), tag
    final = await collect(driver, GCOptions(delay=0))
    assert final.restored == 0
    report = await collect(driver, GCOptions(dry_run=True))
    assert report.blobs_eligible == 0  # nothing unreferenced is left
