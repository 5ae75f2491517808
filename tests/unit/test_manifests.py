"""Manifest parsing and validation (fastreg.registry.manifests), schema1 aside."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from fastreg.registry import manifests as m
from fastreg.registry import mediatypes as mt
from fastreg.registry.digests import Digest
from fastreg.registry.errors import ErrorCode, RegistryError
from fastreg.registry.manifests import Descriptor, parse_manifest


def dg(seed: str, algorithm: str = "sha256") -> str:
    return f"{algorithm}:" + hashlib.new(algorithm, seed.encode()).hexdigest()


def desc(media_type: str, seed: str, size: int = 10, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": dg(seed), "size": size, **extra}


EMPTY = {"mediaType": mt.OCI_EMPTY, "digest": mt.OCI_EMPTY_DIGEST, "size": 2}


def oci_manifest(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": desc(mt.OCI_CONFIG, "config"),
        "layers": [desc(mt.OCI_LAYER_GZIP, "l1"), desc(mt.OCI_LAYER_GZIP, "l2")],
    }
    body.update(extra)
    return body


def docker_manifest(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": desc(mt.DOCKER_CONFIG, "config"),
        "layers": [desc(mt.DOCKER_LAYER, "l1")],
    }
    body.update(extra)
    return body


def oci_index(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            desc(mt.OCI_MANIFEST, "amd64", platform={"architecture": "amd64", "os": "linux"}),
            desc(mt.OCI_MANIFEST, "arm64", platform={"architecture": "arm64", "os": "linux"}),
        ],
    }
    body.update(extra)
    return body


def enc(body: Any) -> bytes:
    return json.dumps(body, indent=3).encode()


def parse(content_type: str | None, body: Any, **kwargs: Any) -> m.Manifest:
    return parse_manifest(content_type, body if isinstance(body, bytes) else enc(body), **kwargs)


def fails(code: ErrorCode, content_type: str | None, body: Any, **kwargs: Any) -> RegistryError:
    with pytest.raises(RegistryError) as info:
        parse(content_type, body, **kwargs)
    assert info.value.code is code, repr(info.value)
    return info.value


# --- each media type --------------------------------------------------------------------------


def test_oci_manifest() -> None:
    raw = enc(oci_manifest(annotations={"org.opencontainers.image.title": "x"}))
    manifest = parse_manifest(mt.OCI_MANIFEST, raw)
    assert manifest.media_type == mt.OCI_MANIFEST
    assert manifest.raw == raw
    assert manifest.digest == Digest("sha256", hashlib.sha256(raw).hexdigest())
    assert [str(b.digest) for b in manifest.blobs] == [dg("config"), dg("l1"), dg("l2")]
    assert manifest.blobs[0] == manifest.config
    assert manifest.config is not None and manifest.config.media_type == mt.OCI_CONFIG
    assert manifest.manifests == ()
    assert manifest.subject is None
    assert manifest.artifact_type == mt.OCI_CONFIG  # falls back to config.mediaType
    assert dict(manifest.annotations) == {"org.opencontainers.image.title": "x"}
    assert manifest.foreign_layers == ()
    assert not manifest.is_index()
    assert manifest.size == len(raw)


def test_docker_manifest() -> None:
    manifest = parse(mt.DOCKER_MANIFEST, docker_manifest())
    assert manifest.media_type == mt.DOCKER_MANIFEST
    assert [str(b.digest) for b in manifest.blobs] == [dg("config"), dg("l1")]
    assert manifest.blobs[1].media_type == mt.DOCKER_LAYER
    assert manifest.blobs[1].size == 10
    assert manifest.subject is None
    assert manifest.artifact_type == mt.DOCKER_CONFIG
    assert dict(manifest.annotations) == {}
    assert not manifest.is_index()


def test_docker_manifest_any_config_and_layer_media_type() -> None:
    # Distribution 2.8 checks neither the config nor the layer media types of schema2.
    body = docker_manifest(
        config=desc(mt.DOCKER_PLUGIN_CONFIG, "c"), layers=[desc("application/x-custom", "l")]
    )
    assert len(parse(mt.DOCKER_MANIFEST, body).blobs) == 2


def test_oci_index() -> None:
    manifest = parse(mt.OCI_INDEX, oci_index(annotations={"a": "b"}))
    assert manifest.media_type == mt.OCI_INDEX
    assert manifest.is_index()
    assert manifest.blobs == ()
    assert manifest.config is None
    assert [str(c.digest) for c in manifest.manifests] == [dg("amd64"), dg("arm64")]
    assert manifest.manifests[0].platform == {"architecture": "amd64", "os": "linux"}
    assert manifest.artifact_type is None
    assert dict(manifest.annotations) == {"a": "b"}


def test_docker_manifest_list() -> None:
    body = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_LIST,
        "manifests": [desc(mt.DOCKER_MANIFEST, "a", platform={"architecture": "amd64"})],
    }
    manifest = parse(mt.DOCKER_LIST, body)
    assert manifest.media_type == mt.DOCKER_LIST
    assert manifest.is_index()
    assert [str(c.digest) for c in manifest.manifests] == [dg("a")]
    assert manifest.blobs == ()


def test_index_children_keep_order_and_duplicates() -> None:
    body = oci_index(manifests=[desc(mt.OCI_MANIFEST, "x"), desc(mt.OCI_MANIFEST, "x")])
    assert len(parse(mt.OCI_INDEX, body).manifests) == 2


def test_blobs_are_deduplicated() -> None:
    body = oci_manifest(layers=[desc(mt.OCI_LAYER, "l"), desc(mt.OCI_LAYER, "l")])
    assert [str(b.digest) for b in parse(mt.OCI_MANIFEST, body).blobs] == [dg("config"), dg("l")]


def test_empty_layers_and_missing_layers() -> None:
    assert len(parse(mt.OCI_MANIFEST, oci_manifest(layers=[])).blobs) == 1
    body = oci_manifest()
    del body["layers"]
    assert len(parse(mt.OCI_MANIFEST, body).blobs) == 1


# --- OCI 1.1 artifacts and subject ------------------------------------------------------------


def test_artifact_with_empty_config() -> None:
    body = oci_manifest(
        artifactType="application/vnd.example.sbom.v1",
        config=EMPTY,
        layers=[EMPTY],
        subject=desc(mt.OCI_MANIFEST, "subject", 123),
    )
    manifest = parse(mt.OCI_MANIFEST, body)
    assert manifest.artifact_type == "application/vnd.example.sbom.v1"
    # the empty blob must still exist: it is pushed like any other
    assert [str(b.digest) for b in manifest.blobs] == [mt.OCI_EMPTY_DIGEST]
    assert manifest.subject is not None
    assert str(manifest.subject.digest) == dg("subject")
    assert manifest.subject.size == 123
    assert manifest.subject not in manifest.blobs


def test_artifact_any_config_media_type() -> None:
    body = oci_manifest(config=desc("application/vnd.example.config.v1+json", "c"))
    assert parse(mt.OCI_MANIFEST, body).artifact_type == "application/vnd.example.config.v1+json"


def test_index_with_subject_and_artifact_type() -> None:
    body = oci_index(artifactType="application/vnd.example.index", subject=desc(mt.OCI_INDEX, "s"))
    manifest = parse(mt.OCI_INDEX, body)
    assert manifest.subject is not None and str(manifest.subject.digest) == dg("s")
    assert manifest.artifact_type == "application/vnd.example.index"
    assert manifest.is_index()


def test_docker_types_ignore_subject() -> None:
    body = docker_manifest(subject=desc(mt.OCI_MANIFEST, "s"), artifactType="x/y")
    manifest = parse(mt.DOCKER_MANIFEST, body)
    assert manifest.subject is None
    assert manifest.artifact_type == mt.DOCKER_CONFIG


def test_descriptor_extras_round_trip() -> None:
    body = oci_manifest(
        layers=[desc(mt.OCI_LAYER, "l", annotations={"k": "v"}, artifactType="a/b", data="AA==")]
    )
    layer = parse(mt.OCI_MANIFEST, body).blobs[1]
    assert layer.to_json() == {
        "mediaType": mt.OCI_LAYER,
        "digest": dg("l"),
        "size": 10,
        "annotations": {"k": "v"},
        "artifactType": "a/b",
    }


def test_descriptor_to_json_minimal_and_platform() -> None:
    d = Descriptor(mt.OCI_MANIFEST, Digest.parse(dg("x")), 5, platform={"os": "linux"})
    assert d.to_json() == {
        "mediaType": mt.OCI_MANIFEST,
        "digest": dg("x"),
        "size": 5,
        "platform": {"os": "linux"},
    }
    assert Descriptor(mt.OCI_LAYER, Digest.parse(dg("y")), 0).to_json() == {
        "mediaType": mt.OCI_LAYER,
        "digest": dg("y"),
        "size": 0,
    }


def test_as_descriptor_for_referrers() -> None:
    body = oci_manifest(
        artifactType="application/vnd.example", annotations={"k": "v"}, subject=EMPTY
    )
    raw = enc(body)
    manifest = parse_manifest(mt.OCI_MANIFEST, raw)
    assert manifest.as_descriptor().to_json() == {
        "mediaType": mt.OCI_MANIFEST,
        "digest": str(manifest.digest),
        "size": len(raw),
        "annotations": {"k": "v"},
        "artifactType": "application/vnd.example",
    }


# --- foreign layers ---------------------------------------------------------------------------


def test_docker_foreign_layer_excluded_from_blobs() -> None:
    foreign = desc(mt.DOCKER_FOREIGN_LAYER, "win", urls=["https://example.com/layer"])
    manifest = parse(
        mt.DOCKER_MANIFEST, docker_manifest(layers=[foreign, desc(mt.DOCKER_LAYER, "l")])
    )
    assert [str(b.digest) for b in manifest.blobs] == [dg("config"), dg("l")]
    assert [str(f.digest) for f in manifest.foreign_layers] == [dg("win")]
    assert manifest.foreign_layers[0].urls == ("https://example.com/layer",)


def test_docker_foreign_layer_needs_urls() -> None:
    body = docker_manifest(layers=[desc(mt.DOCKER_FOREIGN_LAYER, "win")])
    assert "missing URL" in fails(ErrorCode.MANIFEST_INVALID, mt.DOCKER_MANIFEST, body).detail


@pytest.mark.parametrize("url", ["ftp://example.com/x", "https://example.com/x#frag", "relative"])
def test_foreign_layer_url_must_be_http(url: str) -> None:
    body = docker_manifest(layers=[desc(mt.DOCKER_FOREIGN_LAYER, "win", urls=[url])])
    assert "invalid URL" in fails(ErrorCode.MANIFEST_INVALID, mt.DOCKER_MANIFEST, body).detail


def test_oci_nondistributable_with_urls_excluded() -> None:
    layers = [
        desc(mt.OCI_LAYER_NONDISTRIBUTABLE_GZIP, "nd", urls=["https://example.com/nd"]),
        desc(mt.OCI_LAYER_NONDISTRIBUTABLE, "nd-no-url"),  # no URLs: must exist here
        desc(mt.OCI_LAYER_GZIP, "with-url", urls=["https://example.com/l"]),  # normal: must exist
    ]
    manifest = parse(mt.OCI_MANIFEST, oci_manifest(layers=layers))
    assert [str(b.digest) for b in manifest.blobs] == [
        dg("config"),
        dg("nd-no-url"),
        dg("with-url"),
    ]
    assert [str(f.digest) for f in manifest.foreign_layers] == [dg("nd")]


def test_oci_layer_url_checked() -> None:
    body = oci_manifest(layers=[desc(mt.OCI_LAYER, "l", urls=["file:///etc/passwd"])])
    fails(ErrorCode.MANIFEST_INVALID, mt.OCI_MANIFEST, body)


# --- media type resolution --------------------------------------------------------------------


def test_content_type_with_charset_param() -> None:
    manifest = parse(f"{mt.OCI_MANIFEST}; charset=utf-8", oci_manifest())
    assert manifest.media_type == mt.OCI_MANIFEST


def test_content_type_is_case_insensitive() -> None:
    manifest = parse(mt.DOCKER_MANIFEST.upper(), docker_manifest())
    assert manifest.media_type == mt.DOCKER_MANIFEST


def test_header_body_media_type_mismatch() -> None:
    fails(ErrorCode.MANIFEST_INVALID, mt.OCI_MANIFEST, oci_manifest(mediaType=mt.OCI_INDEX))
    fails(ErrorCode.MANIFEST_INVALID, mt.OCI_INDEX, oci_manifest())
    fails(ErrorCode.MANIFEST_INVALID, mt.DOCKER_MANIFEST, oci_manifest())
    fails(ErrorCode.MANIFEST_INVALID, mt.OCI_MANIFEST, docker_manifest())
    fails(ErrorCode.MANIFEST_INVALID, mt.DOCKER_LIST, oci_index())


def test_oci_body_media_type_optional_docker_required() -> None:
    body = oci_manifest()
    del body["mediaType"]
    assert parse(mt.OCI_MANIFEST, body).media_type == mt.OCI_MANIFEST
    index = oci_index()
    del index["mediaType"]
    assert parse(mt.OCI_INDEX, index).media_type == mt.OCI_INDEX
    docker = docker_manifest()
    del docker["mediaType"]
    fails(ErrorCode.MANIFEST_INVALID, mt.DOCKER_MANIFEST, docker)


def test_manifest_and_index_shapes_do_not_mix() -> None:
    # CVE-2021-41190: a document must not be both a manifest and an index.
    body = oci_manifest(manifests=[desc(mt.OCI_MANIFEST, "x")])
    assert "found index" in fails(ErrorCode.MANIFEST_INVALID, mt.OCI_MANIFEST, body).detail
    index = oci_index(layers=[desc(mt.OCI_LAYER, "x")])
    assert "found manifest" in fails(ErrorCode.MANIFEST_INVALID, mt.OCI_INDEX, index).detail


@pytest.mark.parametrize("content_type", [None, "", "application/json", "application/octet-stream"])
def test_fallback_uses_body_media_type(content_type: str | None) -> None:
    assert parse(content_type, docker_manifest()).media_type == mt.DOCKER_MANIFEST
    assert parse(content_type, oci_index()).media_type == mt.OCI_INDEX


def test_fallback_detection_without_media_type() -> None:
    body = oci_manifest()
    del body["mediaType"]
    assert parse(None, body).media_type == mt.OCI_MANIFEST
    index = oci_index()
    del index["mediaType"]
    manifest = parse("application/json", index)
    assert manifest.media_type == mt.OCI_INDEX
    assert manifest.is_index()


def test_fallback_cannot_detect() -> None:
    fails(ErrorCode.MANIFEST_INVALID, None, {"schemaVersion": 2})


def test_fallback_unknown_body_media_type() -> None:
    fails(ErrorCode.MANIFEST_INVALID, None, oci_manifest(mediaType="application/vnd.unknown+json"))


def test_unknown_content_type() -> None:
    error = fails(ErrorCode.MANIFEST_INVALID, "text/plain", oci_manifest())
    assert "unrecognized" in error.detail


def test_body_media_type_not_a_string() -> None:
    fails(ErrorCode.MANIFEST_INVALID, mt.OCI_MANIFEST, oci_manifest(mediaType=7))


# --- structural errors ------------------------------------------------------------------------


def test_missing_schema_version() -> None:
    body = oci_manifest()
    del body["schemaVersion"]
    fails(ErrorCode.MANIFEST_INVALID, mt.OCI_MANIFEST, body)


@pytest.mark.parametrize("version", [1, 3, "2", 2.0, True, None])
def test_wrong_schema_version(version: Any) -> None:
    fails(ErrorCode.MANIFEST_INVALID, mt.OCI_MANIFEST, oci_manifest(schemaVersion=version))
    fails(
        ErrorCode.MANIFEST_INVALID,
        mt.DOCKER_LIST,
        oci_index(mediaType=mt.DOCKER_LIST, schemaVersion=version),
    )


def test_bad_descriptor_digest_is_digest_invalid() -> None:
    body = oci_manifest(layers=[desc(mt.OCI_LAYER, "l") | {"digest": "sha256:nothex"}])
    error = fails(ErrorCode.DIGEST_INVALID, mt.OCI_MANIFEST, body)
    assert error.detail.startswith("layers[0].digest")


def test_unsupported_descriptor_digest_algorithm() -> None:
    body = oci_manifest(config=desc(mt.OCI_CONFIG, "c") | {"digest": "md5:" + "a" * 32})
    assert fails(ErrorCode.DIGEST_INVALID, mt.OCI_MANIFEST, body).detail.startswith("config.digest")


def test_sha512_descriptor_digest_accepted() -> None:
    body = oci_manifest(layers=[desc(mt.OCI_LAYER, "l") | {"digest": dg("l", "sha512")}])
    assert parse(mt.OCI_MANIFEST, body).blobs[1].digest.algorithm == "sha512"


@pytest.mark.parametrize("digest", [None, 5])
def test_missing_descriptor_digest_is_manifest_invalid(digest: Any) -> None:
    layer = desc(mt.OCI_LAYER, "l")
    layer["digest"] = digest
    error = fails(ErrorCode.MANIFEST_INVALID, mt.OCI_MANIFEST, oci_manifest(layers=[layer]))
    assert error.detail.startswith("layers[0].digest")


@pytest.mark.parametrize("size", [-1, 1.5, "10", None, True, 2**63])
def test_bad_size(size: Any) -> None:
    layer = desc(mt.OCI_LAYER, "l")
    layer["size"] = size
    error = fails(ErrorCode.MANIFEST_INVALID, mt.OCI_MANIFEST, oci_manifest(layers=[layer]))
    assert "size" in error.detail


def test_negative_size_names_the_field() -> None:
    body = oci_index(manifests=[desc(mt.OCI_MANIFEST, "a", -5)])
    assert fails(ErrorCode.MANIFEST_INVALID, mt.OCI_INDEX, body).detail.startswith("manifests[0]")


@pytest.mark.parametrize("media_type", [None, "", "noslash", "a/b/c", "/x", 5, "a b/c"])
def test_bad_descriptor_media_type(media_type: Any) -> None:
    body = oci_manifest(config={**desc(mt.OCI_CONFIG, "c"), "mediaType": media_type})
    assert "config.mediaType" in fails(ErrorCode.MANIFEST_INVALID, mt.OCI_MANIFEST, body).detail


def test_missing_config() -> None:
    body = oci_manifest()
    del body["config"]
    fails(ErrorCode.MANIFEST_INVALID, mt.OCI_MANIFEST, body)


@pytest.mark.parametrize(
    "extra",
    [
        {"layers": {}},
        {"layers": ["x"]},
        {"config": []},
        {"annotations": {"k": 1}},
        {"annotations": []},
        {"artifactType": 3},
        {"subject": "sha256:abc"},
        {"layers": [desc(mt.OCI_LAYER, "l", urls="https://x")]},
        {"layers": [desc(mt.OCI_LAYER, "l", platform="linux")]},
    ],
)
def test_wrongly_typed_fields(extra: dict[str, Any]) -> None:
    fails(ErrorCode.MANIFEST_INVALID, mt.OCI_MANIFEST, oci_manifest(**extra))


def test_index_manifests_must_be_list() -> None:
    fails(ErrorCode.MANIFEST_INVALID, mt.OCI_INDEX, oci_index(manifests={"a": 1}))


def test_not_json() -> None:
    fails(ErrorCode.MANIFEST_INVALID, mt.OCI_MANIFEST, b"{not json")
    fails(ErrorCode.MANIFEST_INVALID, mt.OCI_MANIFEST, b"")


@pytest.mark.parametrize("raw", [b"[]", b'"str"', b"2", b"null", enc([oci_manifest()])])
def test_not_an_object(raw: bytes) -> None:
    fails(ErrorCode.MANIFEST_INVALID, mt.OCI_MANIFEST, raw)


def test_not_utf8() -> None:
    raw = enc(oci_manifest(annotations={"k": "v"})).replace(b'"v"', b'"\xff\xfe"')
    fails(ErrorCode.MANIFEST_INVALID, mt.OCI_MANIFEST, raw)


def test_too_large() -> None:
    body = oci_manifest(annotations={"pad": "x" * m.MAX_MANIFEST_SIZE})
    fails(ErrorCode.MANIFEST_TOO_LARGE, mt.OCI_MANIFEST, body)


def test_exactly_at_limit_is_accepted() -> None:
    raw = enc(oci_manifest(annotations={"pad": ""}))
    raw = raw.replace(b'"pad": ""', b'"pad": "' + b"x" * (m.MAX_MANIFEST_SIZE - len(raw)) + b'"')
    assert len(raw) == m.MAX_MANIFEST_SIZE
    assert parse_manifest(mt.OCI_MANIFEST, raw).size == m.MAX_MANIFEST_SIZE


# --- digests ----------------------------------------------------------------------------------


def test_digest_is_of_exact_bytes() -> None:
    a = enc(oci_manifest())
    b = json.dumps(oci_manifest(), separators=(",", ":")).encode()
    assert parse_manifest(mt.OCI_MANIFEST, a).digest != parse_manifest(mt.OCI_MANIFEST, b).digest
    assert (
        str(parse_manifest(mt.OCI_MANIFEST, b).digest) == "sha256:" + hashlib.sha256(b).hexdigest()
    )


def test_sha512_digest_algorithm() -> None:
    raw = enc(oci_manifest())
    manifest = parse_manifest(mt.OCI_MANIFEST, raw, digest_algorithm="sha512")
    assert manifest.digest == Digest("sha512", hashlib.sha512(raw).hexdigest())


def test_unknown_digest_algorithm() -> None:
    fails(ErrorCode.DIGEST_INVALID, mt.OCI_MANIFEST, oci_manifest(), digest_algorithm="md5")


def test_accepts_bytearray_and_memoryview() -> None:
    raw = enc(oci_manifest())
    assert parse_manifest(mt.OCI_MANIFEST, bytearray(raw)).raw == raw  # type: ignore[arg-type]
    assert parse_manifest(mt.OCI_MANIFEST, memoryview(raw)).raw == raw  # type: ignore[arg-type]


# --- schema1 gate -----------------------------------------------------------------------------

SCHEMA1_BODY = {
    "schemaVersion": 1,
    "name": "library/x",
    "tag": "latest",
    "architecture": "amd64",
    "fsLayers": [{"blobSum": dg("a")}],
    "history": [{"v1Compatibility": "{}"}],
}


@pytest.mark.parametrize("content_type", [mt.SCHEMA1, mt.SCHEMA1_SIGNED, None, "application/json"])
def test_schema1_disabled_is_rejected(content_type: str | None) -> None:
    body = dict(SCHEMA1_BODY, signatures=[])
    error = fails(ErrorCode.MANIFEST_INVALID, content_type, body)
    assert error.detail == "manifest type unsupported"


def test_schema1_unsigned_when_enabled() -> None:
    raw = enc(SCHEMA1_BODY)
    manifest = parse_manifest(mt.SCHEMA1, raw, schema1_enabled=True)
    assert manifest.media_type == mt.SCHEMA1
    assert manifest.digest == Digest.from_bytes(raw)
    assert manifest.blobs == (Descriptor(mt.SCHEMA1_LAYER, Digest.parse(dg("a")), -1),)
    assert manifest.manifests == () and manifest.config is None and manifest.subject is None
    assert manifest.artifact_type is None


def test_schema1_detected_without_header() -> None:
    manifest = parse(None, SCHEMA1_BODY, schema1_enabled=True)
    assert manifest.media_type == mt.SCHEMA1


def test_schema1_signed_header_without_signatures() -> None:
    fails(ErrorCode.MANIFEST_INVALID, mt.SCHEMA1_SIGNED, SCHEMA1_BODY, schema1_enabled=True)


def test_schema1_header_with_v2_body_media_type() -> None:
    body = dict(SCHEMA1_BODY, mediaType=mt.DOCKER_MANIFEST)
    fails(ErrorCode.MANIFEST_INVALID, mt.SCHEMA1, body, schema1_enabled=True)


def test_media_type_sets() -> None:
    assert mt.INDEX_MEDIA_TYPES == {mt.OCI_INDEX, mt.DOCKER_LIST}
    assert mt.MANIFEST_MEDIA_TYPES >= mt.INDEX_MEDIA_TYPES | mt.SCHEMA1_MEDIA_TYPES
    assert mt.OCI_EMPTY_DIGEST == str(Digest.from_bytes(b"{}"))
