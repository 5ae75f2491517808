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


# --- additions for the protocol tables ---------------------------------------------------------

API_VERSION = ("Docker-Distribution-API-Version", "registry/2.0")
SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
SCHEMA1_LAYER = "application/vnd.docker.container.image.rootfs.diff+x-gtar"
EMPTY_JSON = b"{}"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
UNKNOWN_DIGEST = "sha256:" + "0" * 64
UNKNOWN_UUID = "3f2a6c1e-0000-4000-8000-000000000000"
ROOT = "docker/registry/v2"


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


def location(resp: Any) -> str:
    """The Location header as a path + query the test client can follow (relative or absolute)."""
    from urllib.parse import urlsplit

    value = resp.headers["Location"]
    parts = urlsplit(value)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def start_upload(client: Client, name: str, **params: str) -> Any:
    resp = await client.post(f"/v2/{name}/blobs/uploads/", params=params or None)
    return resp


async def open_upload(client: Client, name: str, **params: str) -> str:
    """POST a new upload session; returns the Location to follow."""
    resp = await start_upload(client, name, **params)
    assert resp.status == 202, await resp.text()
    return location(resp)


async def expect_error(resp: Any, status: int, code: str) -> dict[str, Any]:
    """The response is an OCI error with this status and (first) code; returns the body."""
    text = await resp.text()
    assert resp.status == status, text
    assert resp.headers.get(API_VERSION[0]) == API_VERSION[1]
    body = orjson.loads(text)
    assert isinstance(body.get("errors"), list) and body["errors"], body
    assert body["errors"][0]["code"] == code, body
    assert isinstance(body["errors"][0].get("message", ""), str)
    return dict(body)


def image_index(
    children: list[tuple[str, bytes]],
    media_type: str = OCI_INDEX,
    platforms: list[dict[str, str]] | None = None,
    **extra: Any,
) -> bytes:
    """An index / manifest list over ``children`` given as (media type, manifest bytes)."""
    manifests = []
    for i, (child_type, body) in enumerate(children):
        d = descriptor(child_type, body)
        if platforms is not None:
            d["platform"] = platforms[i]
        manifests.append(d)
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type, "manifests": manifests}
    doc.update(extra)
    return orjson.dumps(doc)


async def push_artifact(
    client: Client,
    name: str,
    subject: tuple[str, bytes] | None,
    artifact_type: str | None = "application/vnd.example.sig",
    annotations: dict[str, str] | None = None,
    blob: bytes = b"artifact payload",
    config: tuple[str, bytes] | None = None,
) -> tuple[str, bytes, Any]:
    """Push an OCI artifact manifest (empty config by default); returns (digest, body, response)."""
    config_type, config_bytes = config if config is not None else (EMPTY, EMPTY_JSON)
    await push_blob(client, name, config_bytes)
    await push_blob(client, name, blob)
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(config_type, config_bytes),
        "layers": [descriptor("application/octet-stream", blob)],
    }
    if artifact_type is not None:
        doc["artifactType"] = artifact_type
    if subject is not None:
        doc["subject"] = descriptor(subject[0], subject[1])
    if annotations is not None:
        doc["annotations"] = annotations
    body = orjson.dumps(doc)
    digest = sha256(body)
    resp = await put_manifest(client, name, digest, body, OCI_MANIFEST)
    return digest, body, resp


def parse_link(value: str) -> str:
    """`<url>; rel="next"` -> url (path + query)."""
    from urllib.parse import urlsplit

    url, _, params = value.partition(";")
    assert 'rel="next"' in params.replace(" ", ""), value
    parts = urlsplit(url.strip().lstrip("<").rstrip(">"))
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def raw_request(
    client: Client,
    method: str,
    target: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> tuple[int, dict[str, str], bytes]:
    """Send a request with a byte-exact request target (no client-side URL normalisation)."""
    import asyncio

    server = client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    lines = [f"{method} {target} HTTP/1.1", f"Host: {server.host}:{server.port}",
             "Connection: close", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, payload = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed: dict[str, str] = {}
    for line in header_lines:
        key, _, value = line.partition(":")
        parsed[key.strip().lower()] = value.strip()
    if parsed.get("transfer-encoding", "").lower() == "chunked":
        out, rest = b"", payload
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2:]
        payload = out
    return int(status_line.split()[1]), parsed, payload
