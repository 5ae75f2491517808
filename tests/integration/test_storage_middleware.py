"""`middleware.storage` on real processes: `redirect` and `cloudfront` send pulls to a real HTTP
server serving the storage root (tests/integration/cdn.py), skopeo follows the redirects and gets
the pushed bytes back; an unknown middleware name stops the start as in Distribution.
"""

from __future__ import annotations

import http.client
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .cdn import CDN, running
from .conftest import REPO_ROOT, registry_config
from .images import (
    assert_same_image,
    make_oci_image,
)

pytestmark = pytest.mark.integration


def get(host: str, path: str, method: str = "GET") -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(host, timeout=10)
    conn.request(method, path)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def push_and_pull(skopeo, server, tmp_path: Path) -> list[str]:  # type: ignore[no-untyped-def]
    """Push an image, pull it back through the redirects: byte-identical; its blob digests."""
    src = tmp_path / "src"
    img = make_oci_image(src, "latest", layers=[3000, 70_000])
    ref = f"docker://{server.host}/library/cdn:1"
    skopeo("copy", "--preserve-digests", f"oci:{src}:latest", ref)
    dst = tmp_path / "back"
    skopeo("copy", "--preserve-digests", ref, f"oci:{dst}:latest")
    assert_same_image(dst, src, img)
    return sorted(img.blob_digests)


def blob_path(digest: str) -> str:
    algorithm, hex_ = digest.split(":")
    return f"/docker/registry/v2/blobs/{algorithm}/{hex_[:2]}/{hex_}/data"


def test_redirect_middleware_sends_pulls_to_baseurl_and_skopeo_follows(
    fastreg_server, skopeo, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with running(CDN(root, prefix="/mirror")) as cdn:
        middleware = [{"name": "redirect", "options": {"baseurl": f"{cdn.url}/mirror/"}}]
        server = fastreg_server(root, {"middleware": {"storage": middleware}})
        digests = push_and_pull(skopeo, server, tmp_path)
        # every blob came from the static server, none through the registry
        assert {s.path for s in cdn.served if s.status == 200} >= {
            "/mirror" + blob_path(d) for d in digests
        }
        response = get(server.host, f"/v2/library/cdn/blobs/{digests[0]}")
        assert response.status == 307
        assert response.headers["Location"] == f"{cdn.url}/mirror{blob_path(digests[0])}"
        assert response.headers["Docker-Content-Digest"] == digests[0]
        # a blob the repository does not have is not redirected
        assert get(server.host, "/v2/library/cdn/blobs/sha256:" + "0" * 64).status == 404


def test_redirect_disable_still_wins_over_the_middleware(
    fastreg_server, skopeo, tmp_path: Path
) -> None:
    """As in Distribution: `storage.redirect.disable` turns every redirect off."""
    root = tmp_path / "root"
    with running(CDN(root)) as cdn:
        extra = {"middleware": {"storage": [{"name": "redirect", "options": {"baseurl": cdn.url}}]},
                 "storage": {"redirect": {"disable": True}}}
        server = fastreg_server(root, extra)
        digests = push_and_pull(skopeo, server, tmp_path)
        assert get(server.host, f"/v2/library/cdn/blobs/{digests[0]}").status == 200
        assert cdn.served == []


@pytest.fixture(scope="module")
def cloudfront_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_cloudfront_middleware_signed_urls_verify_and_skopeo_follows(
    fastreg_server, skopeo, tmp_path: Path, cloudfront_key: rsa.RSAPrivateKey
) -> None:
    root = tmp_path / "root"
    keyfile = tmp_path / "cloudfront.pem"
    keyfile.write_bytes(cloudfront_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ))
    cdn_spec = CDN(root, public_key=cloudfront_key.public_key(), keypairid="APKAEXAMPLE")
    with running(cdn_spec) as cdn:
        options = {"baseurl": cdn.url, "privatekey": str(keyfile), "keypairid": "APKAEXAMPLE",
                   "duration": "300s"}
        server = fastreg_server(root, {"middleware": {"storage": [{"name": "cloudfront",
                                                                    "options": options}]}})
        digests = push_and_pull(skopeo, server, tmp_path)
        assert {s.path for s in cdn.served if s.status == 200} >= {blob_path(d) for d in digests}
        assert all(s.status == 200 for s in cdn.served), cdn.served
        before = int(time.time())
        location = get(server.host, f"/v2/library/cdn/blobs/{digests[0]}").headers["Location"]
        after = int(time.time())
        parts = urlsplit(location)
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == cdn.url + blob_path(digests[0])
        expires = int(dict(p.split("=", 1) for p in parts.query.split("&"))["Expires"])
        assert before + 300 <= expires <= after + 300
        # the server refuses a URL whose signature does not match its resource
        tampered = location.replace(digests[0].split(":")[1], digests[1].split(":")[1])
        assert get(f"127.0.0.1:{cdn.port}", tampered.split(str(cdn.port), 1)[1]).status == 403


@pytest.mark.parametrize(
    ("section", "named"),
    [
        ({"storage": [{"name": "nosuch"}]}, "middleware.storage[0].name"),
        ({"registry": [{"name": "nosuch"}]}, "middleware.registry[0]"),
        ({"repository": [{"name": "nosuch"}]}, "middleware.repository[0]"),
    ],
)
def test_unknown_middleware_name_stops_the_start(
    tmp_path: Path, section: dict[str, object], named: str
) -> None:
    config = tmp_path / "config.yml"
    config.write_text(registry_config(tmp_path / "root", 5999, {"middleware": section}))
    proc = subprocess.run(
        [sys.executable, "-m", "fastreg", "serve", str(config)],
        check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)},
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "nosuch" in line]
    assert len(lines) == 1 and named in lines[0], proc.stderr
    assert "middleware registered with name: 'nosuch'" in lines[0]


def test_distribution_also_refuses_an_unknown_storage_middleware(
    distribution_bin: str, tmp_path: Path
) -> None:
    """What the rule above copies: docker-registry 2.8 panics, exit status 2."""
    config = tmp_path / "config.yml"
    config.write_text(registry_config(tmp_path / "root", 5999, {"middleware": {"storage": [{"name": "nosuch"}]}}))
    proc = subprocess.run([distribution_bin, "serve", str(config)], check=False, capture_output=True,
                          text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    assert "no storage middleware registered with name: nosuch" in proc.stdout + proc.stderr
