"""`validation` against real servers: the same foreign-layer manifests pushed to Debian's
`docker-registry` 2.8 and to fastreg with the same configuration are accepted or refused alike.

The manifests are Docker schema2 with a `application/vnd.docker.image.rootfs.foreign.diff.tar.gzip`
layer carrying `urls` (a Windows base layer's shape), and OCI ones with a non-distributable layer.
Both servers name the layer's digest with MANIFEST_BLOB_UNKNOWN; Distribution answers 500 with two
UNKNOWN entries before it, fastreg 400 (registry/validation.py says why).
"""

from __future__ import annotations

import hashlib
import http.client
import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
LAYER_DIGEST = "sha256:" + hashlib.sha256(b"a windows base layer").hexdigest()
URLS = ["https://mcr.example/l", "https://good.example/x", "https://good.example/bad"]
CASES = {
    "default": None,
    "disabled": {"disabled": True},
    "enabled wins over disabled": {"enabled": True, "disabled": True},
    "allow and deny": {"manifests": {"urls": {"allow": [r"^https://good\.example/"], "deny": ["bad"]}}},
    "deny only": {"manifests": {"urls": {"deny": ["bad"]}}},
}


def request(host: str, method: str, path: str, body: bytes = b"",
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(host, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, dict(response.headers), data


def push_config(host: str) -> dict[str, Any]:
    config = b'{"architecture":"amd64","os":"windows","rootfs":{"type":"layers","diff_ids":[]}}'
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    status, headers, _ = request(host, "POST", "/v2/win/base/blobs/uploads/")
    assert status == 202
    location = headers["Location"].replace(f"http://{host}", "")
    join = "&" if "?" in location else "?"
    status, _, _ = request(host, "PUT", f"{location}{join}digest={digest}", config,
                           {"Content-Type": "application/octet-stream"})
    assert status == 201
    return {"size": len(config), "digest": digest}


def manifest(kind: str, config: dict[str, Any], url: str) -> tuple[str, bytes]:
    layer = {"size": 20, "digest": LAYER_DIGEST, "urls": [url]}
    if kind == "docker":
        media_type = "application/vnd.docker.distribution.manifest.v2+json"
        body = {"schemaVersion": 2, "mediaType": media_type,
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", **config},
                "layers": [{"mediaType": FOREIGN, **layer}]}
    else:
        media_type = "application/vnd.oci.image.manifest.v1+json"
        body = {"schemaVersion": 2, "mediaType": media_type,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
                "layers": [{"mediaType": NONDISTRIBUTABLE, **layer}]}
    return media_type, json.dumps(body).encode()


def outcomes(host: str, kind: str) -> dict[str, tuple[int, list[str]]]:
    """Per URL: the status of the manifest PUT and its error codes."""
    config = push_config(host)
    found: dict[str, tuple[int, list[str]]] = {}
    for i, url in enumerate(URLS):
        media_type, body = manifest(kind, config, url)
        status, _, data = request(host, "PUT", f"/v2/win/base/manifests/{kind}{i}", body,
                                  {"Content-Type": media_type})
        errors = json.loads(data)["errors"] if status >= 400 else []
        codes = [e["code"] for e in errors]
        if status >= 400:
            blob_unknown = [e for e in errors if e["code"] == "MANIFEST_BLOB_UNKNOWN"]
            assert [e["detail"] for e in blob_unknown] in (
                [LAYER_DIGEST], [{"digest": LAYER_DIGEST, "url": url}]
            ), errors
        found[url] = (status, codes)
    return found


@pytest.mark.parametrize("kind", ["docker", "oci"])
@pytest.mark.parametrize("case", list(CASES))
def test_layer_url_rules_are_distributions(
    distribution_server, fastreg_server, tmp_path: Path, case: str, kind: str
) -> None:
    section = CASES[case]
    extra = {"validation": section} if section else None
    theirs = outcomes(distribution_server(tmp_path / "d", extra).host, kind)
    ours = outcomes(fastreg_server(tmp_path / "f", extra).host, kind)
    accepted = {url for url, (status, _) in theirs.items() if status == 201}
    assert {url for url, (status, _) in ours.items() if status == 201} == accepted
    for url in set(URLS) - accepted:
        assert theirs[url] == (500, ["UNKNOWN", "UNKNOWN", "MANIFEST_BLOB_UNKNOWN"])
        assert ours[url] == (400, ["MANIFEST_BLOB_UNKNOWN"])


def test_expected_answers_of_distribution(distribution_server, tmp_path: Path) -> None:
    """The rules as documented in registry/validation.py, checked on Distribution itself."""
    def accepted(section: object) -> set[str]:
        extra = {"validation": section} if section else None
        server = distribution_server(tmp_path / str(len(list(tmp_path.iterdir()))), extra)
        return {u for u, (status, _) in outcomes(server.host, "docker").items() if status == 201}

    assert accepted(None) == set()
    assert accepted({"disabled": True}) == set(URLS)
    assert accepted(CASES["allow and deny"]) == {"https://good.example/x"}
    assert accepted(CASES["deny only"]) == {"https://mcr.example/l", "https://good.example/x"}


def test_a_refused_layer_url_names_the_url_and_setting(fastreg_server, tmp_path: Path) -> None:
    host = fastreg_server(tmp_path / "f").host
    media_type, body = manifest("docker", push_config(host), URLS[0])
    status, _, data = request(host, "PUT", "/v2/win/base/manifests/v1", body,
                              {"Content-Type": media_type})
    assert status == 400
    (error,) = json.loads(data)["errors"]
    assert error["message"] == (
        "layer URL refused: no URL is allowed without validation.manifests.urls.allow: "
        f"{URLS[0]}"
    )


def test_validation_disabled_still_checks_that_referenced_blobs_exist(
    fastreg_server, distribution_server, tmp_path: Path
) -> None:
    """`disabled` is no SkipDependencyVerification (that is only a pull-through cache's)."""
    for kind, factory in (("fastreg", fastreg_server), ("distribution", distribution_server)):
        host = factory(tmp_path / kind, {"validation": {"disabled": True}}).host
        missing = {"size": 3, "digest": "sha256:" + "1" * 64}
        media_type, body = manifest("docker", missing, URLS[0])
        status, _, data = request(host, "PUT", "/v2/win/base/manifests/v1", body,
                                  {"Content-Type": media_type})
        assert status == 400, kind
        codes = [(e["code"], e.get("detail")) for e in json.loads(data)["errors"]]
        assert codes[0][0] == "MANIFEST_BLOB_UNKNOWN", (kind, codes)
        assert "1" * 64 in json.dumps(codes[0][1]), (kind, codes)
