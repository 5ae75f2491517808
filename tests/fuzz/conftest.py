"""The fuzz's server and Hypothesis profiles.

`ci` (the default) is bounded and derandomized so `make test` stays fast and repeatable;
`fuzz` (`FASTREG_FUZZ_PROFILE=fuzz`, or `make fuzz`) runs many more examples from fresh random
seeds and keeps failing examples in `.hypothesis/` to replay them first next time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from tests.fuzz.wire import Wire, check_log
from tests.integration.conftest import ServerProcess
from tests.integration.test_process import start_fastreg
from tests.storage_check import check_storage

_COMMON = {
    "deadline": None,  # a real server on a shared machine: time says nothing here
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile(
    "ci", max_examples=40, stateful_step_count=25, derandomize=True, database=None, **_COMMON
)
settings.register_profile(
    "fuzz",
    max_examples=2000,
    stateful_step_count=60,
    database=DirectoryBasedExampleDatabase(".hypothesis/fuzz"),
    **_COMMON,
)
settings.load_profile(os.environ.get("FASTREG_FUZZ_PROFILE", "ci"))


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Wire]]:
    """A `fastreg serve` on 127.0.0.1: filesystem storage, deletes on, JSON log at info.

    At the end, the whole log must hold no error and the storage must be consistent."""
    work = tmp_path_factory.mktemp("fuzz")
    server = start_fastreg(
        work / "root", work, extra={"log": {"level": "info", "formatter": "json"}}
    )
    wire = Wire(server.port, server.log_path)
    try:
        yield server, wire
    finally:
        wire.close()
        server.stop()
    check_log("the run", wire.new_log_lines())
    assert check_storage(Path(server.root)) == []


@pytest.fixture(scope="module")
def wire(fuzz_server: tuple[ServerProcess, Wire]) -> Wire:
    return fuzz_server[1]


@pytest.fixture(scope="module")
def storage_root(fuzz_server: tuple[ServerProcess, Wire]) -> Path:
    return Path(fuzz_server[0].root)
