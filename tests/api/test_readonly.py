"""`storage.maintenance.readonly.enabled`: every write endpoint -> 405 UNSUPPORTED, pulls work."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Client, MakeClient, driver_of
from tests.api.helpers import (
    OCI_MANIFEST,
    expect_error,
    open_upload,
    push_artifact,
    push_image,
    sha256,
)

BLOB = b"readonly layer"


@pytest.fixture
async def state(make_client: MakeClient) -> dict[str, Any]:
    """A registry populated through a writable server; the keys name what it holds."""
    writer = await make_client()
    digest, body = await push_image(writer, "repo", "v1", [BLOB])
    ref, _, resp = await push_artifact(writer, "repo", (OCI_MANIFEST, body))
    assert resp.status == 201
    upload = await open_upload(writer, "repo")
    return {"manifest": digest, "body": body.decode(), "blob": sha256(BLOB), "upload": upload,
            "referrer": ref, "_writer": writer}


@pytest.fixture
async def readonly(make_client: MakeClient, state: dict[str, Any]) -> Client:
    return await make_client(
        driver=driver_of(state["_writer"]), storage__maintenance__readonly__enabled=True
    )


# (method, path template, body)
WRITES = [
    ("POST", "/v2/repo/blobs/uploads/", b""),
    ("POST", "/v2/new/blobs/uploads/", b""),
    ("POST", f"/v2/repo/blobs/uploads/?digest={sha256(b'x')}", b"x"),
    ("POST", "/v2/other/blobs/uploads/?mount={blob}&from=repo", b""),
    ("POST", "/v2/other/blobs/uploads/?mount={blob}", b""),
    ("PATCH", "{upload}", b"chunk"),
    ("PUT", "{upload}?digest=" + sha256(b""), b""),
    ("DELETE", "{upload}", b""),
    ("PUT", "/v2/repo/manifests/v2", b"{body}"),
    ("PUT", "/v2/repo/manifests/{manifest}", b"{body}"),
    ("DELETE", "/v2/repo/manifests/v1", b""),
    ("DELETE", "/v2/repo/manifests/{manifest}", b""),
    ("DELETE", "/v2/repo/blobs/{blob}", b""),
]


@pytest.mark.parametrize(("method", "template", "data"), WRITES)
async def test_writes_are_unsupported(
    readonly: Client, state: dict[str, Any], method: str, template: str, data: bytes
) -> None:
    path = template.format(**state)
    body = state["body"].encode() if data == b"{body}" else data
    headers = {"Content-Type": OCI_MANIFEST} if "manifests" in path else {}
    resp = await readonly.request(method, path, data=body, headers=headers)
    await expect_error(resp, 405, "UNSUPPORTED")
    await assert_unchanged(readonly, state)


async def assert_unchanged(client: Client, state: dict[str, Any]) -> None:
    accept = {"Accept": OCI_MANIFEST}
    resp = await client.get("/v2/repo/manifests/v1", headers=accept)
    assert resp.status == 200
    assert (await resp.read()).decode() == state["body"]
    assert (await client.get(f"/v2/repo/blobs/{state['blob']}")).status == 200
    assert (await client.get(state["upload"])).status == 204
    assert (await (await client.get("/v2/repo/tags/list")).json())["tags"] == ["v1"]
    assert (await (await client.get("/v2/_catalog")).json())["repositories"] == ["repo"]


# (method, path template, headers, expected status)
PULLS = [
    ("GET", "/v2/", {}, 200),
    ("HEAD", "/v2/", {}, 200),
    ("GET", "/v2/repo/manifests/v1", {"Accept": OCI_MANIFEST}, 200),
    ("HEAD", "/v2/repo/manifests/v1", {"Accept": OCI_MANIFEST}, 200),
    ("GET", "/v2/repo/manifests/{manifest}", {"Accept": OCI_MANIFEST}, 200),
    ("HEAD", "/v2/repo/manifests/{manifest}", {"Accept": OCI_MANIFEST}, 200),
    ("GET", "/v2/repo/blobs/{blob}", {}, 200),
    ("HEAD", "/v2/repo/blobs/{blob}", {}, 200),
    ("GET", "/v2/repo/blobs/{blob}", {"Range": "bytes=0-3"}, 206),
    ("GET", "/v2/repo/tags/list", {}, 200),
    ("GET", "/v2/_catalog", {}, 200),
    ("GET", "/v2/repo/referrers/{manifest}", {}, 200),
    ("GET", "{upload}", {}, 204),
]


@pytest.mark.parametrize(("method", "template", "headers", "status"), PULLS)
async def test_pulls_keep_working(
    readonly: Client, state: dict[str, Any], method: str, template: str, headers: dict[str, str], status: int
) -> None:
    resp = await readonly.request(method, template.format(**state), headers=headers)
    assert resp.status == status, await resp.text()


async def test_pulled_content_is_intact(readonly: Client, state: dict[str, Any]) -> None:
    resp = await readonly.get(f"/v2/repo/blobs/{state['blob']}")
    assert await resp.read() == BLOB
    resp = await readonly.get(f"/v2/repo/referrers/{state['manifest']}")
    assert [m["digest"] for m in (await resp.json(content_type=None))["manifests"]] == [
        state["referrer"]
    ]
