"""Location headers behind a proxy: `http.host` > `Forwarded` (RFC 7239) > `X-Forwarded-*` > the
request, scheme and host chosen separately, malformed claims passed over."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.api.conftest import Client, MakeClient
from tests.api.helpers import sha256

BLOB = b"forwarded"
Headers = dict[str, str] | list[tuple[str, str]]


@pytest.fixture
def driver_name() -> str:
    """Header handling does not depend on the storage driver: one is enough."""
    return "inmemory"


def own(client: Client) -> str:
    """The host[:port] the test client talks to, what a request without proxy headers names."""
    return f"{client.server.host}:{client.server.port}"


async def upload_location(client: Client, headers: Headers) -> str:
    resp = await client.post("/v2/repo/blobs/uploads/", headers=headers)
    assert resp.status == 202, await resp.text()
    """The `scheme://host[:port]` of the Location of a new upload (checked to name the upload)."""
    value = resp.headers["Location"]
    parts = urlsplit(value)
    assert parts.path.startswith("/v2/repo/blobs/uploads/"), value
    assert parts.path != "/v2/repo/blobs/uploads/", value
    assert value.startswith(f"{parts.scheme}://{parts.netloc}/v2/"), value
    return f"{parts.scheme}://{parts.netloc}"


# (headers sent, the scheme://host the Location must start with; "{own}" is the test server)
CASES = [
    pytest.param(
        {"Forwarded": "for=192.0.2.60;proto=https;host=example.com:8443"},
        "https://example.com:8443",
        id="forwarded-proto-and-host",
    ),
    pytest.param(
        {"Forwarded": 'for="[2001:db8::1]:4711";proto="https";host="example.com:8443"'},
        "https://example.com:8443",
        id="quoted-values",
    ),
    pytest.param(
        {"Forwarded": 'host="[2001:db8::7]:5000";proto=https'},
        "https://[2001:db8::7]:5000",
        id="ipv6-host",
    ),
    pytest.param(
        {"Forwarded": "Proto=HTTPS;HOST=Registry.Example.com"},
        "https://Registry.Example.com",
        id="names-case-insensitive-scheme-lowered",
    ),
    pytest.param(
        {"Forwarded": "proto=https;host=first.example, proto=http;host=second.example"},
        "https://first.example",
        id="first-element-only",
    ),
    pytest.param(
        [("Forwarded", "proto=https;host=first.example"), ("Forwarded", "host=second.example")],
        "https://first.example",
        id="first-header-line-only",
    ),
    pytest.param(
        {
            "Forwarded": "proto=https;host=forwarded.example",
            "X-Forwarded-Proto": "http",
            "X-Forwarded-Host": "x-forwarded.example",
        },
        "https://forwarded.example",
        id="forwarded-beats-x-forwarded",
    ),
    pytest.param(
        {"Forwarded": "proto=https", "X-Forwarded-Host": "x-forwarded.example"},
        "https://x-forwarded.example",
        id="each-part-separately",
    ),
    pytest.param(
        {"Forwarded": "for=192.0.2.60", "X-Forwarded-Proto": "https"},
        "https://{own}",
        id="forwarded-without-proto-or-host",
    ),
    pytest.param(
        {"X-Forwarded-Proto": "https, http", "X-Forwarded-Host": "a.example:444, b.example"},
        "https://a.example:444",
        id="x-forwarded-first-of-list",
    ),
    pytest.param(
        {"Forwarded": 'proto=https;host="evil.example/phish"', "X-Forwarded-Host": "ok.example"},
        "https://ok.example",
        id="malformed-host-passed-over",
    ),
    pytest.param(
        {"Forwarded": 'proto="ht tp";host="a b"'},
        "http://{own}",
        id="malformed-proto-and-host-ignored",
    ),
    pytest.param(
        {"X-Forwarded-Host": "evil.example@other", "X-Forwarded-Proto": "javascript:"},
        "http://{own}",
        id="malformed-x-forwarded-ignored",
    ),
    pytest.param({"Forwarded": ";;,=,"}, "http://{own}", id="garbage"),
    pytest.param({}, "http://{own}", id="no-proxy-headers"),
]


@pytest.mark.parametrize(("headers", "expected"), CASES)
async def test_upload_location(make_client: MakeClient, headers: Headers, expected: str) -> None:
    client = await make_client(http__relativeurls=False)
    assert await upload_location(client, headers) == expected.format(own=own(client))


async def test_blob_and_manifest_locations_follow_forwarded(make_client: MakeClient) -> None:
    client = await make_client(http__relativeurls=False)
    headers = {"Forwarded": "proto=https;host=registry.example:8443"}
    resp = await client.post(
        "/v2/repo/blobs/uploads/", params={"digest": sha256(BLOB)}, data=BLOB, headers=headers
    )
    assert resp.status == 201, await resp.text()
    assert resp.headers["Location"] == f"https://registry.example:8443/v2/repo/blobs/{sha256(BLOB)}"
    manifest = (
        b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
        b'"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"'
        + sha256(BLOB).encode()
        + b'","size":9},"layers":[]}'
    )
    resp = await client.put(
        "/v2/repo/manifests/v1",
        data=manifest,
        headers={**headers, "Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert resp.status == 201, await resp.text()
    assert resp.headers["Location"] == (
        f"https://registry.example:8443/v2/repo/manifests/{sha256(manifest)}"
    )


async def test_http_host_beats_forwarded(make_client: MakeClient) -> None:
    client = await make_client(http__relativeurls=False, http__host="https://registry.example.com")
    headers = {"Forwarded": "proto=http;host=other.example", "X-Forwarded-Host": "x.example"}
    assert await upload_location(client, headers) == "https://registry.example.com"


async def test_relativeurls_ignore_forwarded(make_client: MakeClient) -> None:
    client = await make_client(http__relativeurls=True)
    resp = await client.post(
        "/v2/repo/blobs/uploads/", headers={"Forwarded": "proto=https;host=example.com"}
    )
    assert resp.status == 202
    assert resp.headers["Location"].startswith("/v2/repo/blobs/uploads/")
