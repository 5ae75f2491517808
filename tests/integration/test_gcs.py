"""Real servers on fake-gcs-server: skopeo round trips through fastreg's gcs driver, signed in
with a service account key (JWT grant to a local token endpoint) so blob pulls follow the
redirect to a V4 signed URL, or are proxied when `redirect.disable`; the layout is Distribution's
(`<rootdirectory>/docker/registry/v2/...`, no leading slash). Debian's `docker-registry` is built
without the gcs driver, so there is no same-bucket test against Distribution here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fakegcs import FakeGCS, TokenServer

from . import test_skopeo as core
from .images import dir_transport_blob_digests, dir_transport_manifest, make_oci_image

pytestmark = [pytest.mark.integration, pytest.mark.gcs]

ROUND_TRIPS = [
    core.test_copy_three_layer_oci_image_round_trip,
    core.test_copy_multi_arch_index_all,
    core.test_copy_docker_schema2,
    core.test_list_tags,
    core.test_delete_tag,
    core.test_zstd_layers,
]


@pytest.fixture
def gcs_config(fakegcs: FakeGCS, gcs_bucket: str, gcs_keyfile: Path) -> dict[str, Any]:
    return {"storage": {"gcs": fakegcs.parameters(gcs_bucket, keyfile=str(gcs_keyfile))}}


@pytest.mark.parametrize("case", ROUND_TRIPS, ids=lambda f: f.__name__.removeprefix("test_"))
def test_skopeo_round_trip_on_gcs(
    case: Callable[..., None], fastreg_server: Any, gcs_config: dict[str, Any], skopeo: Any,
    tmp_path: Path, gcs_token_server: TokenServer,
) -> None:  # fmt: skip
    registry = fastreg_server(tmp_path / "unused-root", gcs_config)
    case(registry, skopeo, tmp_path)
    assert gcs_token_server.grants, "fastreg never asked the token endpoint for a token"


def test_mount_proxied_and_distribution_layout(
    fastreg_server: Any, fakegcs: FakeGCS, gcs_bucket: str, skopeo: Any, tmp_path: Path,
) -> None:  # fmt: skip
    params = fakegcs.parameters(gcs_bucket, rootdirectory="/reg")  # anonymous: proxied
    registry = fastreg_server(tmp_path / "unused-root", {"storage": {"gcs": params}})
    img = make_oci_image(tmp_path / "src", "latest", layers=[2500, 3500])
    h = registry.host
    skopeo("copy", "--preserve-digests", f"oci:{tmp_path / 'src'}:latest", f"docker://{h}/t/a:1")
    skopeo("copy", "--preserve-digests", f"docker://{h}/t/a:1", f"docker://{h}/t/b:1")
    dst = tmp_path / "back"
    skopeo("copy", "--preserve-digests", f"docker://{h}/t/b:1", f"dir:{dst}")
    assert dir_transport_manifest(dst) == img.manifest_bytes
    assert dir_transport_blob_digests(dst) == set(img.blob_digests)
    names = set(fakegcs.object_names(gcs_bucket))
    for d in img.blob_digests:
        hexa = d.split(":")[1]
        assert f"reg/docker/registry/v2/blobs/sha256/{hexa[:2]}/{hexa}/data" in names
        assert f"reg/docker/registry/v2/repositories/t/b/_layers/sha256/{hexa}/link" in names
    assert not [n for n in names if "/_uploads/" in n or ".part-" in n]
