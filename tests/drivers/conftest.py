"""One driver suite for every driver: the `driver` fixture runs it on each row of
tests/backends.py, built through the storage factory as the registry builds it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fastreg.storage.base import StorageDriver
from fastreg.storage.factory import create_driver
from tests.backends import BY_NAME, PARAMS


@pytest.fixture(params=PARAMS)
async def driver(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StorageDriver]:
    backend = BY_NAME[request.param]
    d = create_driver(backend.name, backend.params(request, tmp_path))
    yield d
    await d.close()
