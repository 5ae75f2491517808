"""end-3 / end-7 / end-9: manifests by tag and by digest, for every manifest kind, and every failure."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from fastreg.registry.schema1 import sign_schema1
from tests.api.conftest import Client, MakeClient
from tests.api.helpers import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    EMPTY,
    EMPTY_DIGEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    SCHEMA1,
    SCHEMA1_SIGNED,
    UNKNOWN_DIGEST,
    descriptor,
    expect_error,
    image_index,
    location,
    push_artifact,
    push_blob,
    push_image,
    put_manifest,
    sha256,
)

ALL_TYPES = f"{OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST}, {DOCKER_LIST}"
AMD64 = {"architecture": "amd64", "os": "linux"}
ARM64 = {"architecture": "arm64", "os": "linux"}


# --- builders: each returns (media type, manifest bytes) ready to PUT in repo "repo" ------------


async def _oci(client: Client) -> tuple[str, bytes]:
    config = b'{"architecture":"amd64","os":"linux"}'
    layer = b"oci layer"
    await push_blob(client, "repo", config)
    await push_blob(client, "repo", layer)
    # deliberately not canonical JSON: the registry must keep the bytes as pushed
    body = (
        f'{{\n  "schemaVersion": 2,\n  "mediaType": "{OCI_MANIFEST}",\n'
        f'  "config": {{"mediaType": "{OCI_CONFIG}", "digest": "{sha256(config)}", '
        f'"size": {len(config)}}},\n'
        f'  "layers": [ {{"mediaType": "{OCI_LAYER}", "digest": "{sha256(layer)}", '
        f'"size": {len(layer)}}} ],\n'
        '  "annotations": {"z": "last", "a": "first"}\n}\n'
    ).encode()
    return OCI_MANIFEST, body


async def _oci_index(client: Client) -> tuple[str, bytes]:
    _, amd = await push_image(client, "repo", None, [b"amd64 layer"])
    _, arm = await push_image(client, "repo", None, [b"arm64 layer"])
    body = image_index([(OCI_MANIFEST, amd), (OCI_MANIFEST, arm)], OCI_INDEX, [AMD64, ARM64])
    return OCI_INDEX, body


async def _docker(client: Client) -> tuple[str, bytes]:
    _, body = await push_image(client, "repo", None, [b"docker layer"],
                               media_type=DOCKER_MANIFEST)
    return DOCKER_MANIFEST, body


async def _docker_list(client: Client) -> tuple[str, bytes]:
    _, arm = await push_image(client, "repo", None, [b"d-arm"], media_type=DOCKER_MANIFEST)
    _, amd = await push_image(client, "repo", None, [b"d-amd"], media_type=DOCKER_MANIFEST)
    body = image_index([(DOCKER_MANIFEST, arm), (DOCKER_MANIFEST, amd)], DOCKER_LIST, [ARM64, AMD64])
    return DOCKER_LIST, body


async def _artifact(client: Client) -> tuple[str, bytes]:
    await push_blob(client, "repo", b"{}")
    await push_blob(client, "repo", b"sbom")
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom.v1+json",
        "config": {"mediaType": EMPTY, "digest": EMPTY_DIGEST, "size": 2, "data": "e30="},
        "layers": [descriptor("application/vnd.example.sbom.v1+json", b"sbom")],
    }
    return OCI_MANIFEST, orjson.dumps(doc)


Builder = Callable[[Client], Awaitable[tuple[str, bytes]]]
KINDS: list[Any] = [
    pytest.param(_oci, id="oci-manifest"),
    pytest.param(_oci_index, id="oci-index"),
    pytest.param(_docker, id="docker-schema2"),
    pytest.param(_docker_list, id="docker-list"),
    pytest.param(_artifact, id="oci-artifact"),
]


# --- the happy path table -----------------------------------------------------------------------


@pytest.mark.parametrize("build", KINDS)
@pytest.mark.parametrize("by", ["tag", "digest"])
async def test_put_get_head(client: Client, build: Builder, by: str) -> None:
    media_type, body = await build(client)
    digest = sha256(body)
    reference = "v1" if by == "tag" else digest
    resp = await put_manifest(client, "repo", reference, body, media_type)
    assert resp.status == 201, await resp.text()
    assert location(resp) == f"/v2/repo/manifests/{digest}"
    assert resp.headers["Docker-Content-Digest"] == digest
    assert "OCI-Subject" not in resp.headers

    for ref in ([reference, digest] if by == "tag" else [digest]):
        resp = await client.get(f"/v2/repo/manifests/{ref}", headers={"Accept": media_type})
        assert resp.status == 200, await resp.text()
        assert await resp.read() == body  # byte-exact
        assert resp.headers["Content-Type"] == media_type
        assert resp.headers["Docker-Content-Digest"] == digest
        assert resp.headers["ETag"] == f'"{digest}"'
        assert resp.headers["Content-Length"] == str(len(body))

        resp = await client.head(f"/v2/repo/manifests/{ref}", headers={"Accept": media_type})
        assert resp.status == 200
        assert resp.headers["Content-Type"] == media_type
        assert resp.headers["Docker-Content-Digest"] == digest
        assert resp.headers["Content-Length"] == str(len(body))
        assert await resp.read() == b""

    if by == "tag":
        tags = await (await client.get("/v2/repo/tags/list")).json()
        assert tags == {"name": "repo", "tags": ["v1"]}


@pytest.mark.parametrize("build", KINDS)
async def test_get_by_digest_with_all_types_accepted(client: Client, build: Builder) -> None:
    media_type, body = await build(client)
    resp = await put_manifest(client, "repo", "t", body, media_type)
    assert resp.status == 201
    resp = await client.get(f"/v2/repo/manifests/{sha256(body)}", headers={"Accept": ALL_TYPES})
    assert resp.status == 200
    assert await resp.read() == body
    assert resp.headers["Content-Type"] == media_type


@pytest.mark.parametrize("ref", ["tag", "digest"])
async def test_if_none_match(client: Client, ref: str) -> None:
    digest, _ = await push_image(client, "repo", "v1")
    reference = "v1" if ref == "tag" else digest
    headers = {"Accept": OCI_MANIFEST, "If-None-Match": f'"{digest}"'}
    resp = await client.get(f"/v2/repo/manifests/{reference}", headers=headers)
    assert resp.status == 304
    assert await resp.read() == b""
    headers["If-None-Match"] = f'"{UNKNOWN_DIGEST}"'
    resp = await client.get(f"/v2/repo/manifests/{reference}", headers=headers)
    assert resp.status == 200


async def test_retag_moves_the_tag(client: Client) -> None:
    first, _ = await push_image(client, "repo", "latest", [b"one"])
    second, _ = await push_image(client, "repo", "latest", [b"two"])
    resp = await client.get("/v2/repo/manifests/latest", headers={"Accept": OCI_MANIFEST})
    assert resp.headers["Docker-Content-Digest"] == second
    # the old manifest stays reachable by digest
    resp = await client.get(f"/v2/repo/manifests/{first}", headers={"Accept": OCI_MANIFEST})
    assert resp.status == 200


async def test_put_same_manifest_twice(client: Client) -> None:
    digest, body = await push_image(client, "repo", "v1")
    resp = await put_manifest(client, "repo", "v1", body)
    assert resp.status == 201
    assert resp.headers["Docker-Content-Digest"] == digest


async def test_content_type_from_body_when_header_is_generic(client: Client) -> None:
    _, body = await _oci(client)
    resp = await put_manifest(client, "repo", "v1", body, "application/json")
    assert resp.status == 201, await resp.text()
    resp = await client.get("/v2/repo/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert resp.headers["Content-Type"] == OCI_MANIFEST


# --- unknown manifests --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("ref", ["nope", UNKNOWN_DIGEST])
async def test_unknown_manifest(client: Client, method: str, ref: str) -> None:
    await push_image(client, "repo", "v1")
    resp = await client.request(method, f"/v2/repo/manifests/{ref}", headers={"Accept": ALL_TYPES})
    assert resp.status == 404
    if method == "GET":
        await expect_error(resp, 404, "MANIFEST_UNKNOWN")


async def test_manifest_of_another_repository(client: Client) -> None:
    digest, _ = await push_image(client, "one", "v1")
    await push_image(client, "two", "v2")
    resp = await client.get(f"/v2/two/manifests/{digest}", headers={"Accept": ALL_TYPES})
    await expect_error(resp, 404, "MANIFEST_UNKNOWN")
    resp = await client.get("/v2/two/manifests/v1", headers={"Accept": ALL_TYPES})
    await expect_error(resp, 404, "MANIFEST_UNKNOWN")


async def test_manifest_of_unknown_repository(client: Client) -> None:
    resp = await client.get("/v2/absent/manifests/latest", headers={"Accept": ALL_TYPES})
    assert resp.status == 404
    body = await resp.json(content_type=None)
    assert body["errors"][0]["code"] in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN")


# --- references that must exist -----------------------------------------------------------------


def _image(config: bytes, layers: list[bytes], media_type: str = OCI_MANIFEST) -> bytes:
    docker = media_type == DOCKER_MANIFEST
    return orjson.dumps({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(
            "application/vnd.docker.container.image.v1+json" if docker else OCI_CONFIG, config
        ),
        "layers": [descriptor(
            "application/vnd.docker.image.rootfs.diff.tar.gzip" if docker else OCI_LAYER, layer
        ) for layer in layers],
    })


# (what is pushed first, what the manifest references)
MISSING = [
    pytest.param([b"L"], b"C", [b"L"], id="config-missing"),
    pytest.param([b"C"], b"C", [b"L"], id="layer-missing"),
    pytest.param([b"C", b"L1"], b"C", [b"L1", b"L2"], id="second-layer-missing"),
]


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
@pytest.mark.parametrize(("pushed", "config", "layers"), MISSING)
async def test_missing_blob(
    client: Client, media_type: str, pushed: list[bytes], config: bytes, layers: list[bytes]
) -> None:
    for blob in pushed:
        await push_blob(client, "repo", blob)
    body = _image(config, layers, media_type)
    resp = await put_manifest(client, "repo", "v1", body, media_type)
    await expect_error(resp, 400, "MANIFEST_BLOB_UNKNOWN")
    # nothing written: no tag, no revision
    resp = await client.get("/v2/repo/manifests/v1", headers={"Accept": ALL_TYPES})
    await expect_error(resp, 404, "MANIFEST_UNKNOWN")
    resp = await client.get(f"/v2/repo/manifests/{sha256(body)}", headers={"Accept": ALL_TYPES})
    await expect_error(resp, 404, "MANIFEST_UNKNOWN")


async def test_blob_only_in_another_repository_is_missing(client: Client) -> None:
    await push_blob(client, "other", b"C")
    await push_blob(client, "other", b"L")
    resp = await put_manifest(client, "repo", "v1", _image(b"C", [b"L"]))
    await expect_error(resp, 400, "MANIFEST_BLOB_UNKNOWN")


@pytest.mark.parametrize(("media_type", "child_type"), [(OCI_INDEX, OCI_MANIFEST),
                                                        (DOCKER_LIST, DOCKER_MANIFEST)])
async def test_index_with_missing_child(client: Client, media_type: str, child_type: str) -> None:
    _, present = await push_image(client, "repo", None, media_type=child_type)
    absent = _image(b"never", [b"pushed"], child_type)
    body = image_index([(child_type, present), (child_type, absent)], media_type, [AMD64, ARM64])
    resp = await put_manifest(client, "repo", "multi", body, media_type)
    await expect_error(resp, 400, "MANIFEST_BLOB_UNKNOWN")
    resp = await client.get("/v2/repo/manifests/multi", headers={"Accept": ALL_TYPES})
    await expect_error(resp, 404, "MANIFEST_UNKNOWN")


async def test_index_child_only_in_another_repository(client: Client) -> None:
    _, child = await push_image(client, "other", None)
    body = image_index([(OCI_MANIFEST, child)])
    resp = await put_manifest(client, "repo", "multi", body, OCI_INDEX)
    await expect_error(resp, 400, "MANIFEST_BLOB_UNKNOWN")


# --- malformed pushes ---------------------------------------------------------------------------


async def test_put_by_digest_with_other_body(client: Client) -> None:
    _, body = await push_image(client, "repo", "v1")
    other = body.replace(b'"schemaVersion":2', b'"schemaVersion":2 ')
    resp = await put_manifest(client, "repo", sha256(body), other)
    await expect_error(resp, 400, "DIGEST_INVALID")
    resp = await put_manifest(client, "repo", UNKNOWN_DIGEST, body)
    await expect_error(resp, 400, "DIGEST_INVALID")


def _doc(**changes: Any) -> bytes:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, b"C"),
        "layers": [descriptor(OCI_LAYER, b"L")],
    }
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return orjson.dumps(doc)


# (Content-Type, body) -> 400 MANIFEST_INVALID
INVALID = [
    pytest.param(OCI_MANIFEST, b"{not json", id="not-json"),
    pytest.param(OCI_MANIFEST, b"", id="empty-body"),
    pytest.param(OCI_MANIFEST, b"[]", id="json-array"),
    pytest.param(OCI_MANIFEST, b'"manifest"', id="json-string"),
    pytest.param(OCI_MANIFEST, _doc(schemaVersion=1), id="schema-version-1-as-oci"),
    pytest.param(OCI_MANIFEST, _doc(schemaVersion=3), id="schema-version-3"),
    pytest.param(OCI_MANIFEST, _doc(schemaVersion="2"), id="schema-version-string"),
    pytest.param(OCI_MANIFEST, _doc(config=None), id="no-config"),
    pytest.param(OCI_MANIFEST, _doc(config="sha256:x"), id="config-not-object"),
    pytest.param(OCI_MANIFEST, _doc(layers={"a": 1}), id="layers-not-list"),
    pytest.param(OCI_MANIFEST, _doc(mediaType=DOCKER_MANIFEST), id="media-type-mismatch"),
    pytest.param(DOCKER_MANIFEST, _doc(mediaType=None), id="docker-without-media-type"),
    pytest.param(OCI_INDEX, _doc(), id="manifest-as-index"),
    pytest.param("application/vnd.example.unknown+json", _doc(mediaType=None),
                 id="unknown-content-type"),
]


@pytest.mark.parametrize(("content_type", "body"), INVALID)
async def test_invalid_manifest(client: Client, content_type: str, body: bytes) -> None:
    await push_blob(client, "repo", b"C")
    await push_blob(client, "repo", b"L")
    resp = await put_manifest(client, "repo", "v1", body, content_type)
    await expect_error(resp, 400, "MANIFEST_INVALID")
    resp = await client.get("/v2/repo/manifests/v1", headers={"Accept": ALL_TYPES})
    assert resp.status == 404


async def test_malformed_descriptor_digest(client: Client) -> None:
    config = descriptor(OCI_CONFIG, b"C") | {"digest": "sha256:nothex"}
    resp = await put_manifest(client, "repo", "v1", _doc(config=config))
    assert resp.status == 400
    body = await resp.json(content_type=None)
    assert body["errors"][0]["code"] in ("DIGEST_INVALID", "MANIFEST_INVALID",
                                         "MANIFEST_BLOB_UNKNOWN")


async def test_manifest_too_large(client: Client) -> None:
    await push_blob(client, "repo", b"C")
    await push_blob(client, "repo", b"L")
    big = _doc(annotations={"padding": "x" * (4 * 1024 * 1024)})
    resp = await put_manifest(client, "repo", "v1", big)
    assert resp.status == 413, await resp.text()
    body = await resp.json(content_type=None)
    assert body["errors"][0]["code"]
    resp = await client.get("/v2/repo/manifests/v1", headers={"Accept": ALL_TYPES})
    assert resp.status == 404


async def test_manifest_too_large_streamed(client: Client) -> None:
    # no Content-Length (chunked transfer): the limit holds on the bytes actually read
    big = _doc(annotations={"padding": "x" * (4 * 1024 * 1024)})

    async def stream() -> Any:
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]

    resp = await client.put("/v2/repo/manifests/v1", data=stream(),
                            headers={"Content-Type": OCI_MANIFEST})
    assert resp.status == 413, (await resp.text())[:300]
    resp = await client.get("/v2/repo/manifests/v1", headers={"Accept": ALL_TYPES})
    assert resp.status == 404


async def test_manifest_just_under_the_limit(client: Client) -> None:
    await push_blob(client, "repo", b"C")
    await push_blob(client, "repo", b"L")
    base = len(_doc(annotations={"padding": ""}))
    body = _doc(annotations={"padding": "x" * (4 * 1024 * 1024 - base)})
    assert len(body) == 4 * 1024 * 1024
    resp = await put_manifest(client, "repo", "v1", body)
    assert resp.status == 201, (await resp.text())[:300]


INVALID_TAGS = [".hidden", "-dash", "a" * 129, "tag!", "tag+plus", "ta~g"]


@pytest.mark.parametrize("tag", INVALID_TAGS)
async def test_invalid_tag(client: Client, tag: str) -> None:
    _, body = await push_image(client, "repo", None)
    resp = await put_manifest(client, "repo", tag, body)
    await expect_error(resp, 400, "TAG_INVALID")


@pytest.mark.parametrize("tag", ["a" * 128, "_underscore", "V1.2.3-rc_1", "0", "UPPER"])
async def test_valid_tags(client: Client, tag: str) -> None:
    digest, body = await push_image(client, "repo", None)
    resp = await put_manifest(client, "repo", tag, body)
    assert resp.status == 201
    resp = await client.get(f"/v2/repo/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
    assert resp.headers["Docker-Content-Digest"] == digest


# --- several tags at once, subject --------------------------------------------------------------


async def test_put_by_digest_with_tag_parameters(client: Client) -> None:
    digest, body = await push_image(client, "repo", None)
    resp = await client.put(
        f"/v2/repo/manifests/{digest}?tag=a&tag=b",
        data=body, headers={"Content-Type": OCI_MANIFEST},
    )
    assert resp.status == 201, await resp.text()
    assert resp.headers["Docker-Content-Digest"] == digest
    assert sorted(resp.headers.getall("OCI-Tag")) == ["a", "b"]
    tags = await (await client.get("/v2/repo/tags/list")).json()
    assert tags["tags"] == ["a", "b"]
    for tag in ("a", "b"):
        resp = await client.get(f"/v2/repo/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
        assert resp.headers["Docker-Content-Digest"] == digest


async def test_put_with_invalid_tag_parameter(client: Client) -> None:
    digest, body = await push_image(client, "repo", None)
    resp = await client.put(
        f"/v2/repo/manifests/{digest}?tag=ok&tag=.bad",
        data=body, headers={"Content-Type": OCI_MANIFEST},
    )
    await expect_error(resp, 400, "TAG_INVALID")
    resp = await client.get("/v2/repo/manifests/ok", headers={"Accept": OCI_MANIFEST})
    assert resp.status == 404


async def test_subject_answers_oci_subject(client: Client) -> None:
    subject, body = await push_image(client, "repo", "v1")
    digest, _, resp = await push_artifact(client, "repo", (OCI_MANIFEST, body))
    assert resp.status == 201, await resp.text()
    assert resp.headers["OCI-Subject"] == subject
    assert resp.headers["Docker-Content-Digest"] == digest


async def test_subject_may_be_missing(client: Client) -> None:
    missing = _image(b"not", [b"here"])
    digest, _, resp = await push_artifact(client, "repo", (OCI_MANIFEST, missing))
    assert resp.status == 201, await resp.text()
    assert resp.headers["OCI-Subject"] == sha256(missing)
    resp = await client.get(f"/v2/repo/manifests/{digest}", headers={"Accept": OCI_MANIFEST})
    assert resp.status == 200


async def test_index_with_subject(client: Client) -> None:
    subject, subject_body = await push_image(client, "repo", "v1")
    _, child = await push_image(client, "repo", None, [b"child"])
    body = image_index([(OCI_MANIFEST, child)], artifactType="application/vnd.example.idx",
                       subject=descriptor(OCI_MANIFEST, subject_body))
    resp = await put_manifest(client, "repo", sha256(body), body, OCI_INDEX)
    assert resp.status == 201, await resp.text()
    assert resp.headers["OCI-Subject"] == subject


# --- deletes ------------------------------------------------------------------------------------


async def test_delete_by_tag_removes_only_that_tag(client: Client) -> None:
    digest, body = await push_image(client, "repo", "a")
    assert (await put_manifest(client, "repo", "b", body)).status == 201
    resp = await client.delete("/v2/repo/manifests/a")
    assert resp.status == 202
    resp = await client.get("/v2/repo/manifests/a", headers={"Accept": OCI_MANIFEST})
    await expect_error(resp, 404, "MANIFEST_UNKNOWN")
    for ref in ("b", digest):
        resp = await client.get(f"/v2/repo/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
        assert resp.status == 200
        assert await resp.read() == body
    assert (await (await client.get("/v2/repo/tags/list")).json())["tags"] == ["b"]


async def test_delete_by_digest_removes_manifest_and_tags(client: Client) -> None:
    digest, body = await push_image(client, "repo", "a")
    assert (await put_manifest(client, "repo", "b", body)).status == 201
    keep, _ = await push_image(client, "repo", "c", [b"other"])
    resp = await client.delete(f"/v2/repo/manifests/{digest}")
    assert resp.status == 202
    for ref in ("a", "b", digest):
        resp = await client.get(f"/v2/repo/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
        await expect_error(resp, 404, "MANIFEST_UNKNOWN")
    assert (await (await client.get("/v2/repo/tags/list")).json())["tags"] == ["c"]
    resp = await client.get(f"/v2/repo/manifests/{keep}", headers={"Accept": OCI_MANIFEST})
    assert resp.status == 200
    # deleted again: unknown
    await expect_error(await client.delete(f"/v2/repo/manifests/{digest}"), 404, "MANIFEST_UNKNOWN")


@pytest.mark.parametrize("ref", ["nope", UNKNOWN_DIGEST])
async def test_delete_unknown(client: Client, ref: str) -> None:
    await push_image(client, "repo", "v1")
    await expect_error(await client.delete(f"/v2/repo/manifests/{ref}"), 404, "MANIFEST_UNKNOWN")


async def test_delete_malformed_digest(client: Client) -> None:
    await push_image(client, "repo", "v1")
    resp = await client.delete("/v2/repo/manifests/sha256:abc")
    await expect_error(resp, 400, "DIGEST_INVALID")


@pytest.mark.parametrize("by", ["tag", "digest"])
async def test_delete_disabled(make_client: MakeClient, by: str) -> None:
    client = await make_client(storage__delete__enabled=False)
    digest, _ = await push_image(client, "repo", "v1")
    ref = "v1" if by == "tag" else digest
    await expect_error(await client.delete(f"/v2/repo/manifests/{ref}"), 405, "UNSUPPORTED")
    resp = await client.get(f"/v2/repo/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
    assert resp.status == 200


# --- content negotiation (Distribution 2.8) -----------------------------------------------------


# (builder, Accept) -> 404 MANIFEST_UNKNOWN when fetched by tag
NOT_ACCEPTED = [
    pytest.param(_oci, None, id="oci-no-accept"),
    pytest.param(_oci, DOCKER_MANIFEST, id="oci-docker-accept"),
    pytest.param(_oci, OCI_INDEX, id="oci-index-accept"),
    pytest.param(_oci_index, None, id="index-no-accept"),
    pytest.param(_oci_index, f"{OCI_MANIFEST}, {DOCKER_LIST}", id="index-manifest-accept"),
]


@pytest.mark.parametrize(("build", "accept"), NOT_ACCEPTED)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_oci_by_tag_needs_accept(
    client: Client, build: Builder, accept: str | None, method: str
) -> None:
    media_type, body = await build(client)
    assert (await put_manifest(client, "repo", "v1", body, media_type)).status == 201
    headers = {"Accept": accept} if accept else {}
    resp = await client.request(method, "/v2/repo/manifests/v1", headers=headers)
    assert resp.status == 404
    if method == "GET":
        await expect_error(resp, 404, "MANIFEST_UNKNOWN")


ACCEPTS = [
    pytest.param(OCI_MANIFEST, id="exact"),
    pytest.param(f"{DOCKER_MANIFEST}, {OCI_MANIFEST}", id="in-a-list"),
    pytest.param(f"{DOCKER_MANIFEST};q=0.9, {OCI_MANIFEST};q=0.5", id="with-q"),
    pytest.param(["text/plain", OCI_MANIFEST], id="repeated-header"),
]


@pytest.mark.parametrize("accept", ACCEPTS)
async def test_oci_by_tag_with_accept(client: Client, accept: str | list[str]) -> None:
    media_type, body = await _oci(client)
    assert (await put_manifest(client, "repo", "v1", body, media_type)).status == 201
    values = accept if isinstance(accept, list) else [accept]
    headers = [("Accept", v) for v in values]
    resp = await client.get("/v2/repo/manifests/v1", headers=headers)
    assert resp.status == 200, await resp.text()
    assert await resp.read() == body


async def test_docker_list_by_tag_without_list_accept_gives_amd64(client: Client) -> None:
    media_type, body = await _docker_list(client)
    assert (await put_manifest(client, "repo", "multi", body, media_type)).status == 201
    amd64 = next(m for m in orjson.loads(body)["manifests"] if m["platform"] == AMD64)
    resp = await client.get("/v2/repo/manifests/multi", headers={"Accept": DOCKER_MANIFEST})
    assert resp.status == 200
    child = await resp.read()
    assert sha256(child) == amd64["digest"]
    assert resp.headers["Docker-Content-Digest"] == amd64["digest"]
    assert resp.headers["Content-Type"] == DOCKER_MANIFEST
    # asked for lists: the list itself
    resp = await client.get("/v2/repo/manifests/multi",
                            headers={"Accept": f"{DOCKER_MANIFEST}, {DOCKER_LIST}"})
    assert await resp.read() == body
    assert resp.headers["Content-Type"] == DOCKER_LIST
    # by digest: never rewritten
    resp = await client.get(f"/v2/repo/manifests/{sha256(body)}",
                            headers={"Accept": DOCKER_MANIFEST})
    assert resp.status == 200
    assert await resp.read() == body


async def test_docker_list_without_amd64_by_tag(client: Client) -> None:
    _, arm = await push_image(client, "repo", None, [b"arm"], media_type=DOCKER_MANIFEST)
    body = image_index([(DOCKER_MANIFEST, arm)], DOCKER_LIST, [ARM64])
    assert (await put_manifest(client, "repo", "multi", body, DOCKER_LIST)).status == 201
    resp = await client.get("/v2/repo/manifests/multi", headers={"Accept": DOCKER_MANIFEST})
    await expect_error(resp, 404, "MANIFEST_UNKNOWN")


async def test_docker_schema2_by_tag(client: Client) -> None:
    media_type, body = await _docker(client)
    assert (await put_manifest(client, "repo", "v1", body, media_type)).status == 201
    resp = await client.get("/v2/repo/manifests/v1", headers={"Accept": DOCKER_MANIFEST})
    assert resp.status == 200
    assert await resp.read() == body


# --- schema1 ------------------------------------------------------------------------------------


def _schema1_payload(name: str, tag: str, blob: bytes) -> bytes:
    doc = {
        "schemaVersion": 1,
        "name": name,
        "tag": tag,
        "architecture": "amd64",
        "fsLayers": [{"blobSum": sha256(blob)}],
        "history": [{"v1Compatibility": json.dumps({"id": "a" * 64, "created": "2020-01-01T00:00:00Z"})}],
    }
    return json.dumps(doc, indent=3).encode()


def _signed(payload: bytes) -> bytes:
    return sign_schema1(payload, ec.generate_private_key(ec.SECP256R1()))


@pytest.mark.parametrize("kind", ["unsigned", "signed"])
async def test_schema1_rejected_by_default(client: Client, kind: str) -> None:
    await push_blob(client, "repo", b"s1 layer")
    payload = _schema1_payload("repo", "v1", b"s1 layer")
    body, media_type = (payload, SCHEMA1) if kind == "unsigned" else (_signed(payload), SCHEMA1_SIGNED)
    resp = await put_manifest(client, "repo", "v1", body, media_type)
    await expect_error(resp, 400, "MANIFEST_INVALID")
    resp = await client.get("/v2/repo/manifests/v1", headers={"Accept": media_type})
    assert resp.status == 404


async def test_schema1_unsigned_when_enabled(make_client: MakeClient) -> None:
    client = await make_client(compatibility__schema1__enabled=True)
    await push_blob(client, "repo", b"s1 layer")
    body = _schema1_payload("repo", "v1", b"s1 layer")
    resp = await put_manifest(client, "repo", "v1", body, SCHEMA1)
    assert resp.status == 201, await resp.text()
    assert resp.headers["Docker-Content-Digest"] == sha256(body)
    resp = await client.get("/v2/repo/manifests/v1", headers={"Accept": SCHEMA1})
    assert resp.status == 200
    assert await resp.read() == body
    assert resp.headers["Content-Type"] == SCHEMA1


async def test_schema1_signed_when_enabled(make_client: MakeClient) -> None:
    client = await make_client(compatibility__schema1__enabled=True)
    await push_blob(client, "repo", b"s1 layer")
    payload = _schema1_payload("repo", "v1", b"s1 layer")
    body = _signed(payload)
    digest = sha256(payload)  # the digest of a signed manifest is of its payload (libtrust)
    resp = await put_manifest(client, "repo", "v1", body, SCHEMA1_SIGNED)
    assert resp.status == 201, await resp.text()
    assert resp.headers["Docker-Content-Digest"] == digest
    for ref in ("v1", digest):
        resp = await client.get(f"/v2/repo/manifests/{ref}")
        assert resp.status == 200
        assert await resp.read() == body
        assert resp.headers["Content-Type"] == SCHEMA1_SIGNED
        assert resp.headers["Docker-Content-Digest"] == digest


async def test_schema1_bad_signature(make_client: MakeClient) -> None:
    client = await make_client(compatibility__schema1__enabled=True)
    await push_blob(client, "repo", b"s1 layer")
    body = _signed(_schema1_payload("repo", "v1", b"s1 layer"))
    tampered = body.replace(b'"architecture": "amd64"', b'"architecture": "arm64"')
    assert tampered != body
    resp = await put_manifest(client, "repo", "v1", tampered, SCHEMA1_SIGNED)
    await expect_error(resp, 400, "MANIFEST_UNVERIFIED")


async def test_schema1_missing_layer(make_client: MakeClient) -> None:
    client = await make_client(compatibility__schema1__enabled=True)
    body = _signed(_schema1_payload("repo", "v1", b"never pushed"))
    resp = await put_manifest(client, "repo", "v1", body, SCHEMA1_SIGNED)
    await expect_error(resp, 400, "MANIFEST_BLOB_UNKNOWN")
