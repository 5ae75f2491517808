"""Real servers: skopeo round trips through fastreg's oss driver, on SeaweedFS's S3 API (OSS's
S3-compatible API is what the driver speaks; nothing here talks to Alibaba Cloud). Debian's
`docker-registry` is built without the oss driver, so there is no same-bucket Distribution test;
the key layout is the s3 driver's, which tests/integration/test_s3.py checks against Distribution.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.oss import oss_parameters
from tests.seaweed import SeaweedFS

from . import test_skopeo as core

pytestmark = [pytest.mark.integration, pytest.mark.oss]

ROUND_TRIPS = [core.test_copy_three_layer_oci_image_round_trip, core.test_delete_tag]


@pytest.mark.parametrize("case", ROUND_TRIPS, ids=lambda f: f.__name__.removeprefix("test_"))
def test_skopeo_round_trip_on_oss(
    case: Callable[..., None], fastreg_server: Any, seaweedfs: SeaweedFS, s3_bucket: str,
    skopeo: Any, tmp_path: Path,
) -> None:  # fmt: skip
    config = {"storage": {"oss": oss_parameters(seaweedfs, s3_bucket)}}
    registry = fastreg_server(tmp_path / "unused-root", config)
    case(registry, skopeo, tmp_path)
