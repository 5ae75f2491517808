"""`storage.oss` parameters pointing at the session's SeaweedFS (tests/seaweed.py).

The oss driver speaks OSS's S3-compatible API; the tests run it against SeaweedFS's S3 API through
an explicit `endpoint`, with Distribution's oss keys. Nothing here talks to Alibaba Cloud.
"""

from __future__ import annotations

from typing import Any

from tests.seaweed import SeaweedFS


def oss_parameters(seaweedfs: SeaweedFS, bucket: str, **extra: Any) -> dict[str, Any]:
    return {
        "accesskeyid": seaweedfs.access_key,
        "accesskeysecret": seaweedfs.secret_key,
        "region": "oss-cn-hangzhou",
        "endpoint": f"127.0.0.1:{seaweedfs.s3_port}",
        "secure": False,
        "bucket": bucket,
        **extra,
    }
