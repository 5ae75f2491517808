"""Real servers on Azurite: skopeo round trips through fastreg's azure driver, blob pulls
following the redirect to a SAS URL (or proxied when `redirect.disable`), and the storage layout
Distribution 2.8 uses (blob names with a leading slash). Debian's `docker-registry` is built
without the azure driver, so there is no same-container test against Distribution here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.azurite import Azurite

from . import test_skopeo as core
from .images import dir_transport_blob_digests, dir_transport_manifest, make_oci_image

pytestmark = [pytest.mark.integration, pytest.mark.azure]

ROUND_TRIPS = [
    core.test_copy_three_layer_oci_image_round_trip,
    core.test_copy_multi_arch_index_all,
    core.test_copy_docker_schema2,
    core.test_list_tags,
    core.test_delete_tag,
    core.test_zstd_layers,
]


@pytest.fixture
def azure_config(azurite: Azurite, azure_container: str) -> dict[str, Any]:
    return {"storage": {"azure": azurite.parameters(azure_container)}}


@pytest.mark.parametrize("case", ROUND_TRIPS, ids=lambda f: f.__name__.removeprefix("test_"))
def test_skopeo_round_trip_on_azure(
    case: Callable[..., None], fastreg_server: Any, azure_config: dict[str, Any], skopeo: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    registry = fastreg_server(tmp_path / "unused-root", azure_config)
    case(registry, skopeo, tmp_path)


def test_mount_proxied_and_distribution_layout(
    fastreg_server: Any, azure_config: dict[str, Any], azurite: Azurite, azure_container: str,
    skopeo: Any, tmp_path: Path,
) -> None:  # fmt: skip
    config = {**azure_config, "storage": {**azure_config["storage"], "redirect": {"disable": True}}}
    registry = fastreg_server(tmp_path / "unused-root", config)
    img = make_oci_image(tmp_path / "src", "latest", layers=[2500, 3500])
    h = registry.host
    skopeo("copy", "--preserve-digests", f"oci:{tmp_path / 'src'}:latest", f"docker://{h}/t/a:1")
    skopeo("copy", "--preserve-digests", f"docker://{h}/t/a:1", f"docker://{h}/t/b:1")
    dst = tmp_path / "back"
    skopeo("copy", "--preserve-digests", f"docker://{h}/t/b:1", f"dir:{dst}")
    assert dir_transport_manifest(dst) == img.manifest_bytes
    assert dir_transport_blob_digests(dst) == set(img.blob_digests)
    names = set(azurite.blob_names(azure_container))
    for d in img.blob_digests:  # Distribution 2.8's blob names: the path, leading slash included
        hexa = d.split(":")[1]
        assert f"/docker/registry/v2/blobs/sha256/{hexa[:2]}/{hexa}/data" in names
        assert f"/docker/registry/v2/repositories/t/b/_layers/sha256/{hexa}/link" in names
    assert not [n for n in names if "/_uploads/" in n]
