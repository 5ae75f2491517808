"""The storage backends the driver-parametrised suites run on: one row per driver.

The driver contract (tests/drivers), the API suite (tests/api) and the collection hooks all read
this table, so adding a driver is its package plus one row here. A row names the driver as
config.yml does (`storage.<name>`), the pytest marker of the tests that need its server (None:
it needs none, it runs everywhere, `make check` included), and how to get the driver's parameters
on a storage space of its own for one test: the session's server is started on first use (the
fixtures of tests/seaweed.py, azurite.py, fakegcs.py, swiftserver.py), then a fresh bucket or
container, or a fresh root directory in a shared bucket where a bucket costs a volume.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

#: (the test's request, its tmp_path) -> the driver's parameters on a fresh space
Params = Callable[[pytest.FixtureRequest, Path], dict[str, Any]]

#: The API protocol suites that also run on S3 (SeaweedFS). The others (names, auth,
#: notifications, debug...) do not depend on the storage driver; running them on S3 too would
#: add minutes.
S3_API_MODULES = frozenset(
    {"test_base", "test_blobs", "test_uploads", "test_manifests", "test_tags", "test_referrers",
     "test_s3"}
)
#: azure, gcs and swift take the blob and upload protocol suites (every driver operation;
#: ~15 s each in CI instead of ~40 s)
BLOB_API_MODULES = frozenset({"test_blobs", "test_uploads"})


@dataclass(frozen=True)
class Backend:
    name: str
    #: the marker of every test that needs this backend's server; None: a local driver
    marker: str | None
    params: Params
    #: the API modules that run on it (None: all of them)
    api_modules: frozenset[str] | None = None
    #: what the marker means (`pytest --markers`)
    about: str = ""

    @property
    def remote(self) -> bool:
        """Object storage behind a server: proxied by default in the API suite."""
        return self.marker is not None

    def param(self) -> Any:
        """This backend as a fixture parameter, carrying its marker and `backend(name)`."""
        marks = [pytest.mark.backend(self.name)]
        if self.marker:
            marks.append(getattr(pytest.mark, self.marker))
        return pytest.param(self.name, marks=marks, id=self.name)


def fresh_root() -> str:
    """A root directory of its own in a shared bucket (how registries share one)."""
    return f"/{uuid.uuid4().hex}/"


def _filesystem(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    return {"rootdirectory": str(tmp_path / "root")}


def _inmemory(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    return {}


def _s3(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    # SeaweedFS makes a volume per bucket (~0.3 s): one shared bucket, a root per test
    weed = request.getfixturevalue("seaweedfs")
    bucket = request.getfixturevalue("s3_shared_bucket")
    return dict(weed.s3_parameters(bucket, rootdirectory=fresh_root()))


def _oss(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    # OSS's S3-compatible API on the SeaweedFS (tests/oss.py); nothing talks to Alibaba Cloud
    from tests.oss import oss_parameters

    weed = request.getfixturevalue("seaweedfs")
    bucket = request.getfixturevalue("s3_shared_bucket")
    return oss_parameters(weed, bucket, rootdirectory=fresh_root())


def _azure(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    azurite = request.getfixturevalue("azurite")
    container = request.getfixturevalue("azure_container")
    return dict(azurite.parameters(container, rootdirectory="/suite/"))


def _gcs(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    # signed in (a service account key whose token endpoint is the session's), so url_for signs
    fakegcs = request.getfixturevalue("fakegcs")
    keyfile = request.getfixturevalue("gcs_keyfile")
    bucket = request.getfixturevalue("gcs_bucket")
    return dict(fakegcs.parameters(bucket, keyfile=str(keyfile), rootdirectory="/suite/"))


def _swift(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    swift = request.getfixturevalue("swift_server")
    container = request.getfixturevalue("swift_container")
    # listings in pages of 250: a listing of more than a page is in the contract suite
    return dict(swift.swift_parameters(container, prefix="/suite/", pagesize=250))


BACKENDS: tuple[Backend, ...] = (
    Backend("filesystem", None, _filesystem),
    Backend("inmemory", None, _inmemory),
    Backend("s3", "s3", _s3, S3_API_MODULES,
            "runs against a real SeaweedFS (tests/seaweed.py)"),
    Backend("azure", "azure", _azure, BLOB_API_MODULES,
            "runs against Azurite, the Azure Storage emulator (tests/azurite.py)"),
    Backend("gcs", "gcs", _gcs, BLOB_API_MODULES,
            "runs against fake-gcs-server (tests/fakegcs.py)"),
    Backend("swift", "swift", _swift, BLOB_API_MODULES,
            "runs against a one-node OpenStack Swift (tests/swiftserver.py)"),
    # the s3 driver built from OSS's keys: the blob suite shows the construction works end to
    # end (tests/api/test_oss.py adds its endpoint, redirect and 503 cases)
    Backend("oss", "oss", _oss, frozenset({"test_blobs"}),
            "the oss driver over SeaweedFS's S3 API (tests/oss.py), not Alibaba Cloud"),
)  # fmt: skip

BY_NAME = {b.name: b for b in BACKENDS}
#: every backend as a fixture parameter (the remote ones carry their marker)
PARAMS = [b.param() for b in BACKENDS]
