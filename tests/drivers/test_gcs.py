"""GCS specifics the shared suite cannot see: keys without a leading slash, compose of a
session's part into a large object, and nothing left behind by a session that was not committed."""

from __future__ import annotations

import os

import pytest

from fastreg.storage.factory import create_driver
from tests.fakegcs import FakeGCS

pytestmark = pytest.mark.gcs
CHUNK = 256 * 1024


async def test_appends_compose_and_abandoned_sessions_leave_nothing(
    fakegcs: FakeGCS, gcs_bucket: str
) -> None:
    params = fakegcs.parameters(gcs_bucket, chunksize=CHUNK, rootdirectory="/reg/")
    a, b = create_driver("gcs", params), create_driver("gcs", params)
    try:
        first = os.urandom(3 * CHUNK + 5)  # above a chunk: appends compose instead of re-sending
        w = await a.writer("/up/data", append=False)
        await w.write(first)
        await w.commit()
        await w.close()
        w = await b.writer("/up/data", append=True)
        await w.write(os.urandom(2 * CHUNK + 1))  # one chunk sent to the resumable upload
        await w.close()  # never committed
        assert await a.get_content("/up/data") == first
        w = await b.writer("/up/data", append=True)
        await w.write(b"tail")
        await w.commit()
        await w.close()
        assert await a.get_content("/up/data") == first + b"tail"
        assert fakegcs.object_names(gcs_bucket) == ["reg/up/data"]  # no part left, no slash
    finally:
        await a.close()
        await b.close()
