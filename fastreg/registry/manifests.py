"""Manifests: parsing and validation of pushed manifests, and what they reference (their media
types are named in `mediatypes`).

This module owns the rules Distribution 2.8 applies to a manifest PUT (``UnmarshalManifest`` and
the OCI / schema2 / manifest-list / signed-schema1 handlers' checks that need no storage), plus
OCI 1.1 (``subject``, ``artifactType``). :func:`parse_manifest` turns the request's Content-Type
and byte-exact body into a :class:`Manifest` naming the blobs and child manifests that must exist
in the repository; checking that they do is the caller's job. It does no I/O and knows no HTTP.

Errors raised (all ``RegistryError``): MANIFEST_TOO_LARGE (body over 4 MiB), DIGEST_INVALID (a
descriptor digest or blobSum that is not a valid sha256/sha512 digest), NAME_INVALID (schema1
``name``), MANIFEST_UNVERIFIED (schema1 signature), MANIFEST_INVALID (everything else).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import orjson

from fastreg.registry.digests import Digest
from fastreg.registry.errors import ErrorCode, RegistryError
from fastreg.registry.mediatypes import (
    DOCKER_FOREIGN_LAYER,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    GENERIC_CONTENT_TYPES,
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_NONDISTRIBUTABLE,
    OCI_LAYER_NONDISTRIBUTABLE_GZIP,
    OCI_LAYER_NONDISTRIBUTABLE_ZSTD,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    SCHEMA1,
    SCHEMA1_LAYER,
    SCHEMA1_MEDIA_TYPES,
    SCHEMA1_SIGNATURES,
    SCHEMA1_SIGNED,
)

_NONDISTRIBUTABLE = frozenset(
    {OCI_LAYER_NONDISTRIBUTABLE, OCI_LAYER_NONDISTRIBUTABLE_GZIP, OCI_LAYER_NONDISTRIBUTABLE_ZSTD}
)
# OCI layer types whose URLs Distribution checks (ocimanifesthandler.go).
_OCI_URL_LAYERS = _NONDISTRIBUTABLE | {OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD}

MAX_MANIFEST_SIZE = 4 * 1024 * 1024
_MAX_SIZE = 2**63 - 1
# image-spec schema/defs-descriptor.json (RFC 6838 restricted names).
_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
)
_EMPTY: Mapping[str, str] = MappingProxyType({})


def _invalid(detail: str) -> RegistryError:
    return RegistryError(ErrorCode.MANIFEST_INVALID, detail=detail)


@dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI content descriptor as found in a manifest."""

    media_type: str
    digest: Digest
    size: int  # -1 when unknown (schema1 fsLayers)
    annotations: Mapping[str, str] | None = None
    artifact_type: str | None = None
    platform: Mapping[str, Any] | None = None
    urls: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        """OCI descriptor JSON; optional keys only when set."""
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.artifact_type is not None:
            out["artifactType"] = self.artifact_type
        if self.platform is not None:
            out["platform"] = dict(self.platform)
        return out


@dataclass(frozen=True, slots=True)
class Manifest:
    """A parsed, validated manifest and the content it references."""

    media_type: str  # effective media type: the Content-Type a GET answers with
    digest: Digest  # of raw (signed schema1: of the payload without signatures)
    raw: bytes  # byte-exact body as pushed; what GET serves
    blobs: tuple[Descriptor, ...]  # must exist as blobs: config + non-foreign layers, deduped
    manifests: tuple[Descriptor, ...]  # children of an index / list, in order
    subject: Descriptor | None
    artifact_type: str | None
    annotations: Mapping[str, str]
    config: Descriptor | None
    foreign_layers: tuple[Descriptor, ...] = ()  # layers with URLs that need not exist here
    # layers whose URLs `validation` rules on (foreign ones and OCI layers with URLs)
    url_layers: tuple[Descriptor, ...] = ()

    def is_index(self) -> bool:
        return self.media_type in INDEX_MEDIA_TYPES

    @property
    def size(self) -> int:
        return len(self.raw)

    def as_descriptor(self) -> Descriptor:
        """This manifest as a descriptor (what the referrers API lists)."""
        return Descriptor(
            self.media_type,
            self.digest,
            len(self.raw),
            self.annotations or None,
            self.artifact_type,
        )


# --- field helpers ----------------------------------------------------------------------------


def _optional_str(obj: Mapping[str, Any], key: str, field: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise _invalid(f"{field}.{key}: must be a string")
    return value


def _annotations(value: Any, field: str) -> Mapping[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _invalid(f"{field}: must be an object of strings")
    return MappingProxyType(dict(value))


def _urls(value: Any, field: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(u, str) for u in value):
        raise _invalid(f"{field}.urls: must be a list of strings")
    return tuple(value)


def _size(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"{field}.size: must be an integer")
    if not 0 <= value <= _MAX_SIZE:
        raise _invalid(f"{field}.size: must be between 0 and {_MAX_SIZE}")
    return value


def _media_type(value: Any, field: str) -> str:
    if not isinstance(value, str) or _MEDIA_TYPE.fullmatch(value) is None:
        raise _invalid(f"{field}.mediaType: missing or not a valid media type: {value!r}")
    return value


def parse_descriptor(obj: Any, field: str) -> Descriptor:
    """Validate one descriptor object; ``field`` names it in error details (e.g. ``layers[2]``)."""
    if not isinstance(obj, dict):
        raise _invalid(f"{field}: descriptor must be a JSON object")
    media_type = _media_type(obj.get("mediaType"), field)
    text = obj.get("digest")
    if not isinstance(text, str):
        raise _invalid(f"{field}.digest: missing or not a string")
    try:
        digest = Digest.parse(text)
    except RegistryError as exc:
        raise RegistryError(exc.code, detail=f"{field}.digest: {exc.detail}") from None
    platform = obj.get("platform")
    if platform is not None and not isinstance(platform, dict):
        raise _invalid(f"{field}.platform: must be an object")
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=_size(obj.get("size"), field),
        annotations=_annotations(obj.get("annotations"), f"{field}.annotations"),
        artifact_type=_optional_str(obj, "artifactType", field),
        platform=MappingProxyType(dict(platform)) if platform is not None else None,
        urls=_urls(obj.get("urls"), field),
    )


def _descriptor_list(body: Mapping[str, Any], key: str) -> tuple[Descriptor, ...]:
    items = body.get(key)
    if items is None:
        return ()
    if not isinstance(items, list):
        raise _invalid(f"{key}: must be a list")
    return tuple(parse_descriptor(item, f"{key}[{i}]") for i, item in enumerate(items))


def _dedup(descriptors: Iterable[Descriptor]) -> tuple[Descriptor, ...]:
    seen: dict[Digest, Descriptor] = {}
    for descriptor in descriptors:
        seen.setdefault(descriptor.digest, descriptor)
    return tuple(seen.values())


# --- media type resolution --------------------------------------------------------------------


def _header_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _detect(body: Mapping[str, Any]) -> str:
    """No usable Content-Type and no ``mediaType`` in the body: guess from the shape."""
    if body.get("schemaVersion") == 1 and "fsLayers" in body:
        return SCHEMA1_SIGNED if SCHEMA1_SIGNATURES in body else SCHEMA1
    if body.get("manifests") is not None:
        return OCI_INDEX
    if body.get("config") is not None or body.get("layers") is not None:
        return OCI_MANIFEST
    raise _invalid("cannot determine the manifest media type")


def _schema1_type(declared: str, body: Mapping[str, Any]) -> str:
    if SCHEMA1_SIGNATURES in body:
        return SCHEMA1_SIGNED
    if declared == SCHEMA1_SIGNED:
        raise _invalid("missing signature key")
    return SCHEMA1


def _resolve_media_type(content_type: str | None, body: Mapping[str, Any]) -> str:
    header = _header_type(content_type)
    body_type = body.get("mediaType")
    if body_type is not None and not isinstance(body_type, str):
        raise _invalid("mediaType: must be a string")
    if header in GENERIC_CONTENT_TYPES:
        if not body_type:
            return _detect(body)
        header = body_type
    if header not in MANIFEST_MEDIA_TYPES:
        raise _invalid(f"unrecognized manifest content type {header!r}")
    if header in SCHEMA1_MEDIA_TYPES:
        if body_type and body_type not in SCHEMA1_MEDIA_TYPES:
            raise _invalid(f"mediaType in manifest should be {header!r} not {body_type!r}")
        return _schema1_type(header, body)
    # Docker types require the body to repeat the media type; OCI types only "if present".
    required = header in (DOCKER_MANIFEST, DOCKER_LIST)
    if (body_type or required) and body_type != header:
        raise _invalid(f"mediaType in manifest should be {header!r} not {body_type!r}")
    return header


# --- per-type builders ------------------------------------------------------------------------


def _check_urls(layer: Descriptor, field: str) -> None:
    for url in layer.urls or ():
        try:
            parts = urlsplit(url)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or parts.fragment:
            raise _invalid(f"{field}: invalid URL on layer: {url!r}")


def _url_layer(media_type: str, layer: Descriptor, field: str) -> bool:
    """Whether Distribution checks this layer's URLs (then valid here: http or https, no
    fragment); a Docker foreign layer must have some."""
    if media_type == DOCKER_MANIFEST:
        if layer.media_type != DOCKER_FOREIGN_LAYER:
            return False
        if not layer.urls:
            raise _invalid(f"{field}: missing URL on layer")
    elif layer.media_type not in _OCI_URL_LAYERS:
        return False
    _check_urls(layer, field)
    return bool(layer.urls)


def _is_foreign(media_type: str, layer: Descriptor) -> bool:
    """Distribution's rule for layers that are fetched from their URLs, not this registry (asked
    of the layers `_url_layer` accepts)."""
    return media_type == DOCKER_MANIFEST or layer.media_type in _NONDISTRIBUTABLE


def _oci_extras(
    media_type: str, body: Mapping[str, Any]
) -> tuple[Descriptor | None, str | None, Mapping[str, str]]:
    """subject, artifactType and annotations (OCI types only; Docker types have none)."""
    if media_type not in (OCI_MANIFEST, OCI_INDEX):
        return None, None, _EMPTY
    subject = body.get("subject")
    return (
        parse_descriptor(subject, "subject") if subject is not None else None,
        _optional_str(body, "artifactType", "manifest"),
        _annotations(body.get("annotations"), "annotations") or _EMPTY,
    )


def _image_manifest(
    media_type: str, body: Mapping[str, Any], raw: bytes, digest: Digest
) -> Manifest:
    if body.get("manifests") is not None:
        raise _invalid("expected manifest but found index")
    if body.get("config") is None:
        raise _invalid("config: missing")
    config = parse_descriptor(body["config"], "config")
    layers = _descriptor_list(body, "layers")
    with_urls = [_url_layer(media_type, layer, f"layers[{i}]") for i, layer in enumerate(layers)]
    foreign = [u and _is_foreign(media_type, layer) for layer, u in zip(layers, with_urls)]
    subject, artifact_type, annotations = _oci_extras(media_type, body)
    return Manifest(
        media_type=media_type,
        digest=digest,
        raw=raw,
        blobs=_dedup([config, *(layer for layer, f in zip(layers, foreign) if not f)]),
        manifests=(),
        subject=subject,
        artifact_type=artifact_type or config.media_type,
        annotations=annotations,
        config=config,
        foreign_layers=tuple(layer for layer, f in zip(layers, foreign) if f),
        url_layers=tuple(layer for layer, u in zip(layers, with_urls) if u),
    )


def _index(media_type: str, body: Mapping[str, Any], raw: bytes, digest: Digest) -> Manifest:
    if body.get("config") is not None or body.get("layers") is not None:
        raise _invalid("expected index but found manifest")
    subject, artifact_type, annotations = _oci_extras(media_type, body)
    return Manifest(
        media_type=media_type,
        digest=digest,
        raw=raw,
        blobs=(),
        manifests=_descriptor_list(body, "manifests"),
        subject=subject,
        artifact_type=artifact_type,
        annotations=annotations,
        config=None,
    )


def _schema1_manifest(media_type: str, raw: bytes, digest_algorithm: str) -> Manifest:
    # schema1 verifies JWS signatures with cryptography (8 MiB per worker): loaded on first use
    from fastreg.registry import schema1

    parsed = schema1.parse_schema1(raw, signed=media_type == SCHEMA1_SIGNED)
    return Manifest(
        media_type=media_type,
        digest=Digest.from_bytes(parsed.canonical, digest_algorithm),
        raw=raw,
        blobs=tuple(Descriptor(SCHEMA1_LAYER, d, -1) for d in parsed.blob_sums),
        manifests=(),
        subject=None,
        artifact_type=None,
        annotations=_EMPTY,
        config=None,
    )


_Builder = Callable[[str, Mapping[str, Any], bytes, Digest], Manifest]


def _builder(media_type: str) -> _Builder:
    return _index if media_type in INDEX_MEDIA_TYPES else _image_manifest


def _load_body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _invalid(f"invalid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _invalid("manifest must be a JSON object")
    return body


def parse_manifest(
    content_type: str | None,
    raw: bytes,
    *,
    schema1_enabled: bool = False,
    digest_algorithm: str = "sha256",
) -> Manifest:
    """Parse and validate a pushed manifest; see the module docstring for the errors raised."""
    raw = bytes(raw)
    if len(raw) > MAX_MANIFEST_SIZE:
        raise RegistryError(
            ErrorCode.MANIFEST_TOO_LARGE,
            detail=f"manifest is {len(raw)} bytes, the limit is {MAX_MANIFEST_SIZE}",
        )
    body = _load_body(raw)
    media_type = _resolve_media_type(content_type, body)
    if media_type in SCHEMA1_MEDIA_TYPES:
        if not schema1_enabled:
            # Distribution: ErrSchemaV1Unsupported -> MANIFEST_INVALID "manifest type unsupported".
            raise _invalid("manifest type unsupported")
        return _schema1_manifest(media_type, raw, digest_algorithm)
    version = body.get("schemaVersion")
    if isinstance(version, bool) or not isinstance(version, int) or version != 2:
        raise _invalid(f"unrecognized manifest schema version {version!r}")
    digest = Digest.from_bytes(raw, digest_algorithm)
    return _builder(media_type)(media_type, body, raw, digest)
