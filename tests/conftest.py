"""Fixtures shared by every test directory (the servers behind the remote backends), and the
backend selection: `--backends NAME,...` runs only those rows of tests/backends.py, every test
marked for another backend deselected (`make check` runs the local ones)."""

from __future__ import annotations

import pytest

from tests.azurite import azure_container, azurite
from tests.backends import BACKENDS, BY_NAME
from tests.fakegcs import fakegcs, gcs_bucket, gcs_keyfile, gcs_token_server
from tests.seaweed import s3_bucket, s3_shared_bucket, seaweedfs
from tests.swiftserver import swift_container, swift_server

__all__ = [
    "azure_container", "azurite", "fakegcs", "gcs_bucket", "gcs_keyfile", "gcs_token_server",
    "s3_bucket", "s3_shared_bucket", "seaweedfs", "swift_container", "swift_server"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backends", default="", metavar="NAME,...",
        help=f"storage backends to run on (default: all of {', '.join(BY_NAME)})",
    )  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "backend(name): a parameter of a driver-parametrised suite")
    known = {line.split(":", 1)[0].split("(", 1)[0].strip() for line in config.getini("markers")}
    for backend in BACKENDS:  # a new backend's marker needs no line in pyproject.toml
        if backend.marker and backend.marker not in known:
            config.addinivalue_line("markers", f"{backend.marker}: {backend.about}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the tests of the backends left out by `--backends`: the parameters of the
    driver-parametrised suites and the tests marked for one backend."""
    chosen = {name.strip() for name in config.getoption("--backends").split(",") if name.strip()}
    if not chosen:
        return
    unknown = chosen - set(BY_NAME)
    if unknown:
        raise pytest.UsageError(f"--backends: unknown {', '.join(sorted(unknown))}")
    left_out = {b.marker for b in BACKENDS if b.marker and b.name not in chosen}
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        on = {m.args[0] for m in item.iter_markers("backend")}
        out = bool(on - chosen) or any(m.name in left_out for m in item.iter_markers())
        (dropped if out else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
