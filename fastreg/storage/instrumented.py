"""The wrapper around every driver that times each call and counts failures (`wrapping.py`).

`instrument(driver, metrics)` is applied once in `create_app`; drivers stay unaware of metrics.
A missing path is an answer, not a failure, so `PathNotFound` is not counted as an error.
"""

from __future__ import annotations

import time
from typing import Protocol

from fastreg.storage.base import PathNotFound, StorageDriver, StorageError
from fastreg.storage.wrapping import Detail, WrappedDriver


class Metrics(Protocol):
    """What the wrapper records into: the application's `fastreg.server.metrics.Metrics`
    (declared here, so that storage imports nothing of the server)."""

    def storage_call(self, driver: str, action: str, seconds: float, failed: bool) -> None: ...


class _Timer:
    __slots__ = ("action", "driver", "started")

    def __init__(self, driver: InstrumentedDriver, action: str) -> None:
        self.driver = driver
        self.action = action
        self.started = 0.0

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        failed = isinstance(exc, StorageError) and not isinstance(exc, PathNotFound)
        self.driver.metrics.storage_call(
            self.driver.name, self.action, time.perf_counter() - self.started, failed
        )


class InstrumentedDriver(WrappedDriver):
    def __init__(self, inner: StorageDriver, metrics: Metrics) -> None:
        super().__init__(inner)
        self.metrics = metrics

    def watch(self, op: str, path: str, detail: Detail = None) -> _Timer:
        return _Timer(self, op)


def instrument(driver: StorageDriver, metrics: Metrics) -> StorageDriver:
    """Wrap ``driver`` once (a driver taken from another app is unwrapped first)."""
    if isinstance(driver, InstrumentedDriver):
        driver = driver.inner
    return InstrumentedDriver(driver, metrics)
