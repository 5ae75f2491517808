"""Client-side steps of the protocol, shared by the API tests."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient

Client = TestClient[web.Request, web.Application]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
EMPTY = "application/vnd.oci.empty.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def push_blob(client: Client, name: str, data: bytes) -> str:
    digest = sha256(data)
    resp = await client.post(f"/v2/{name}/blobs/uploads/", params={"digest": digest}, data=data)
    assert resp.status == 201, await resp.text()
    return digest


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


async def put_manifest(
    client: Client, name: str, reference: str, body: bytes, media_type: str = OCI_MANIFEST
) -> Any:
    return await client.put(
        f"/v2/{name}/manifests/{reference}", data=body, headers={"Content-Type": media_type}
    )


async def push_image(
    client: Client,
    name: str,
    tag: str | None,
    layers: list[bytes] | None = None,
    *,
    media_type: str = OCI_MANIFEST,
    config: bytes | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[str, bytes]:
    """Push config + layers + manifest; returns (manifest digest, manifest bytes)."""
    layers = layers if layers is not None else [b"layer-" + name.encode() + (tag or "").encode()]
    docker = media_type == DOCKER_MANIFEST
    config = config if config is not None else orjson.dumps({"architecture": "amd64", "os": "linux", "tag": tag})
    await push_blob(client, name, config)
    for layer in layers:
        await push_blob(client, name, layer)
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(DOCKER_CONFIG if docker else OCI_CONFIG, config),
        "layers": [descriptor(DOCKER_LAYER if docker else OCI_LAYER, layer) for layer in layers],
    }
    manifest.update(extra or {})
    body = orjson.dumps(manifest)
    digest = sha256(body)
    resp = await put_manifest(client, name, tag or digest, body, media_type)
    assert resp.status == 201, await resp.text()
    return digest, body


async def error_code(resp: Any) -> str:
    body = await resp.json(content_type=None)
    return str(body["errors"][0]["code"])
