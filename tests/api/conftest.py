"""API tests: `create_app()` driven through aiohttp's test client, over each local driver."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient

from fastreg.config import parse_config
from fastreg.server.app import create_app
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


#: The protocol suites that also run on S3 (SeaweedFS). The others (names, auth, notifications,
#: debug...) do not depend on the storage driver; running them on S3 too would add minutes.
S3_MODULES = frozenset(
    {"test_base", "test_blobs", "test_uploads", "test_manifests", "test_tags", "test_referrers",
     "test_s3"}
)

#: Tests whose expectation cannot hold on object storage, with the reason (reported to the lead).
S3_DIFFERENCES = {
    # S3 has no empty directories: once the last manifest goes, `_manifests/` is gone and the tags
    # list answers NAME_UNKNOWN, exactly as Distribution's own s3 driver does.
    "test_repository_with_a_deleted_manifest_stays_listed": "no empty directories on S3",
}


#: Object-storage drivers: the API suite runs on them only for S3_MODULES, minus S3_DIFFERENCES.
REMOTE_DRIVERS = frozenset({"s3", "azure", "gcs", "swift", "oss"})
#: Drivers that run fewer API modules than S3_MODULES: azure and gcs take the blob and upload
#: protocol suites (every driver operation; ~15 s each in CI instead of ~40 s).
REMOTE_MODULES = {
    "azure": frozenset({"test_blobs", "test_uploads"}),
    "gcs": frozenset({"test_blobs", "test_uploads"}),
    # swift: the same two; oss is the s3 driver built from OSS's keys: the blob suite shows the
    # construction works end to end (test_oss adds its endpoint, redirect and 503 cases)
    "swift": frozenset({"test_blobs", "test_uploads"}),
    "oss": frozenset({"test_blobs"}),
}


@pytest.fixture(params=["filesystem", "inmemory", pytest.param("s3", marks=pytest.mark.s3),
                        pytest.param("azure", marks=pytest.mark.azure),
                        pytest.param("gcs", marks=pytest.mark.gcs),
                        pytest.param("swift", marks=pytest.mark.swift),
                        pytest.param("oss", marks=pytest.mark.oss)])
def driver_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the `s3` parameter of the API suite only for the modules in S3_MODULES."""
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_s3 = callspec is not None and callspec.params.get("driver_name") in REMOTE_DRIVERS
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        in_api = "tests/api/" in item.nodeid.replace("\\", "/")
        name = getattr(item, "originalname", item.name)
        remote = callspec.params.get("driver_name") if callspec is not None else None
        skip = module not in REMOTE_MODULES.get(remote, S3_MODULES) or name in S3_DIFFERENCES
        (dropped if on_s3 and in_api and skip else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.fixture
def make_client(
    aiohttp_client: Callable[..., Awaitable[Client]],
    tmp_path: Path,
    driver_name: str,
    request: pytest.FixtureRequest,
) -> MakeClient:
    """Build a client for a registry; keyword overrides use `a__b=value` for `a.b: value`."""
    s3: dict[str, Any] = {}
    if driver_name == "s3":  # a fresh root in the session's SeaweedFS bucket (tests/seaweed.py)
        weed = request.getfixturevalue("seaweedfs")
        bucket = request.getfixturevalue("s3_shared_bucket")
        s3 = weed.s3_parameters(bucket, rootdirectory=f"/{uuid.uuid4().hex}")
    remote: dict[str, Any] = {}
    if driver_name == "azure":  # a fresh container on the session's Azurite (tests/azurite.py)
        azurite = request.getfixturevalue("azurite")
        remote = {"storage__azure": azurite.parameters(request.getfixturevalue("azure_container"))}
    elif driver_name == "gcs":  # a fresh bucket on the session's fake-gcs-server (tests/fakegcs.py)
        gcs = request.getfixturevalue("fakegcs")
        remote = {"storage__gcs": gcs.parameters(request.getfixturevalue("gcs_bucket"))}
    elif driver_name == "swift":  # a fresh container on the session's Swift (tests/swiftserver.py)
        swift = request.getfixturevalue("swift_server")
        remote = {"storage__swift": swift.swift_parameters(request.getfixturevalue("swift_container"))}
    elif driver_name == "oss":  # OSS's S3-compatible API on the SeaweedFS bucket (tests/oss.py)
        from tests.oss import oss_parameters

        weed, bucket = request.getfixturevalue("seaweedfs"), request.getfixturevalue("s3_shared_bucket")
        remote = {"storage__oss": oss_parameters(weed, bucket, rootdirectory=f"/{uuid.uuid4().hex}")}

    async def make(*, driver: StorageDriver | None = None, **overrides: Any) -> Client:
        """``driver`` shares the storage of another client (needed for inmemory)."""
        if s3:  # proxy blobs by default so the protocol tests see the registry's own responses
            overrides = {"storage__s3": s3, "storage__redirect__disable": True, **overrides}
        if remote:  # proxied by default, as for s3
            overrides = {**remote, "storage__redirect__disable": True, **overrides}
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
