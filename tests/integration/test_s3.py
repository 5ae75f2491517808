"""Real servers on a real S3 (SeaweedFS): skopeo round trips through fastreg's s3 driver, the
same bucket served by fastreg and Debian's `docker-registry` (Distribution 2.8) in turn, and a
wrong secret key stopping fastreg at start.

Blob pulls follow the default redirect to a presigned SeaweedFS URL, for both servers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.seaweed import SeaweedFS

from . import test_skopeo as core
from .conftest import REPO_ROOT, ServerProcess, free_port, registry_config
from .test_interop import push_set, verify_set, verify_tags

pytestmark = [pytest.mark.integration, pytest.mark.s3]

#: The core issue's round trips, run once more with fastreg on S3. Left out: the cross-repository
#: one (it inspects the server's disk; mounts on S3 are in tests/api) and the 1 GiB one (on S3
#: that is the benchmark's job: benchmarks/s3_bigblob.py moves 6 GiB).
ROUND_TRIPS = [
    core.test_copy_three_layer_oci_image_round_trip,
    core.test_copy_multi_arch_index_all,
    core.test_copy_docker_schema2,
    core.test_list_tags,
    core.test_delete_tag,
    core.test_zstd_layers,
]


@pytest.fixture
def s3_config(
    seaweedfs: SeaweedFS, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """`extra_config` putting a server on the test's bucket (Distribution 2.8's s3 keys)."""
    # Distribution's aws-sdk-go panics on a custom CA bundle with its own transport; the endpoint
    # is plain http on loopback, so the servers (which inherit os.environ) go without it.
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    return {"storage": {"s3": seaweedfs.s3_parameters(s3_bucket)}}


@pytest.mark.parametrize("case", ROUND_TRIPS, ids=lambda f: f.__name__.removeprefix("test_"))
def test_skopeo_round_trip_on_s3(
    case: Callable[..., None],
    fastreg_server: Any,
    s3_config: dict[str, Any],
    skopeo: Any,
    tmp_path: Path,
) -> None:
    registry = fastreg_server(tmp_path / "unused-root", s3_config)
    case(registry, skopeo, tmp_path)


@pytest.mark.parametrize(
    ("first", "second"), [("fastreg", "distribution"), ("distribution", "fastreg")]
)
def test_same_bucket_served_by_both(
    first: str,
    second: str,
    server_factory: Callable[[str], Any],
    s3_config: dict[str, Any],
    seaweedfs: SeaweedFS,
    s3_bucket: str,
    skopeo: Any,
    tmp_path: Path,
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    a: ServerProcess = server_factory(first)(tmp_path / "a", s3_config)
    try:
        pushed = push_set(skopeo, a, work, "v1")
    finally:
        a.stop()
    keys = seaweedfs.keys(s3_bucket)
    assert any(k.startswith("docker/registry/v2/repositories/") for k in keys), keys[:20]
    assert any(k.startswith("docker/registry/v2/blobs/sha256/") for k in keys), keys[:20]
    assert not [k for k in keys if "/_uploads/" in k], f"{first} left upload state behind"

    b: ServerProcess = server_factory(second)(tmp_path / "b", s3_config)
    try:
        verify_set(skopeo, b, pushed, work)
        verify_tags(skopeo, b, pushed)
        more = push_set(skopeo, b, work, "v2")  # mixed writes on the same bucket
        verify_tags(skopeo, b, pushed + more)
    finally:
        b.stop()


def test_wrong_secret_key_fails_at_start(
    seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Path
) -> None:
    params = seaweedfs.s3_parameters(s3_bucket, secretkey="wrong-secret")
    cfg = tmp_path / "config.yml"
    cfg.write_text(registry_config(tmp_path, free_port(), {"storage": {"s3": params}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "AWS_"))}
    env["PYTHONPATH"] = str(REPO_ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "fastreg", "serve", str(cfg)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert "storage is not usable" in proc.stderr
    assert "secret key does not match the access key" in proc.stderr
    assert "Traceback" not in proc.stderr
