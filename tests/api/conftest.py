"""API tests: `create_app()` driven through aiohttp's test client, over each local driver."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient

from fastreg.app import create_app
from fastreg.config import parse_config
from fastreg.storage.base import StorageDriver

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


def config_text(root: Path, driver: str = "filesystem", **overrides: Any) -> str:
    storage: dict[str, Any] = {"delete": {"enabled": True}}
    storage[driver] = {"rootdirectory": str(root)} if driver == "filesystem" else {}
    doc: dict[str, Any] = {
        "version": "0.1",
        "log": {"level": "error"},
        "storage": storage,
        "http": {"addr": "127.0.0.1:0", "relativeurls": True},
    }
    for dotted, value in overrides.items():
        node = doc
        keys = dotted.split("__")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return yaml.safe_dump(doc)


@pytest.fixture(params=["filesystem", "inmemory"])
def driver_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_client(
    aiohttp_client: Callable[..., Awaitable[Client]], tmp_path: Path, driver_name: str
) -> MakeClient:
    """Build a client for a registry; keyword overrides use `a__b=value` for `a.b: value`."""

    async def make(*, driver: StorageDriver | None = None, **overrides: Any) -> Client:
        """``driver`` shares the storage of another client (needed for inmemory)."""
        config = parse_config(config_text(tmp_path / "root", driver_name, **overrides))
        return await aiohttp_client(create_app(config, driver))

    return make


@pytest.fixture
async def client(make_client: MakeClient) -> Client:
    return await make_client()


@pytest.fixture
def storage_root(tmp_path: Path) -> Path:
    """Root directory of the filesystem driver (empty/absent for inmemory)."""
    return tmp_path / "root"


def driver_of(client: Client) -> StorageDriver:
    from fastreg.api.context import REGISTRY

    return client.app[REGISTRY].driver
