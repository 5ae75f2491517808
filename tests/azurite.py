"""Azurite, Microsoft's Azure Storage emulator (blob service only), for the Azure driver tests.

Azurite comes from the npm registry (`npm install azurite`, pinned below) into `.cache/azurite`
under the repository the first time a session needs it; CI's `scripts/system-deps.sh test`
installs Node.js and npm. One `azurite-blob` process serves the whole session (`azurite`
fixture) on 127.0.0.1, in memory, with the well-known development account; every test gets a
fresh container (`azure_container`), deleted afterwards.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from fastreg.storage.azure.client import AzureAuth
from fastreg.storage.azure.params import AzureParams
from tests.procs import LIVE, free_port, log_tail, spawn, terminate

AZURITE_VERSION = "3.35.0"
REPO_ROOT = Path(__file__).resolve().parents[1]
CACHE = REPO_ROOT / ".cache" / "azurite"
ACCOUNT = "devstoreaccount1"  # Azurite's documented development account
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
READY_TIMEOUT = 60.0
INSTALL_TIMEOUT = 600.0
STOP_TIMEOUT = 10.0

def azurite_script() -> Path:
    """The blob service's entry point, installed into the cache on first use."""
    main = CACHE / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"
    if main.is_file():
        return main
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.fail(
            "Azurite needs Node.js and npm (Debian: apt-get install -y nodejs npm; "
            "scripts/system-deps.sh test installs them)",
            pytrace=False,
        )
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:  # one installer at a time (parallel sessions)
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not main.is_file():
            (CACHE / "package.json").write_text('{"private": true}\n')
            proc = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--no-save", "--loglevel=error",
                 f"azurite@{AZURITE_VERSION}"],
                cwd=CACHE, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                timeout=INSTALL_TIMEOUT, check=False,
            )  # fmt: skip
            if proc.returncode != 0 or not main.is_file():
                pytest.fail(
                    f"npm install azurite@{AZURITE_VERSION} failed ({proc.returncode}):\n"
                    f"{proc.stdout[-5000:]}\n{proc.stderr[-5000:]}",
                    pytrace=False,
                )
    return main


@dataclass(eq=False)
class Azurite:
    workdir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def service_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "azurite.log"

    def output(self, tail: int = 20_000) -> str:
        return log_tail(self.log_path, tail)

    def start(self) -> Azurite:
        script = azurite_script()
        self.port = self.port or free_port()
        argv = [
            shutil.which("node") or "node", str(script),
            "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
            "--inMemoryPersistence",
            "--skipApiVersionCheck", "--loose", "--disableProductStyleUrl",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k != "AZURITE_ACCOUNTS"}
        self.proc = spawn(argv, self.workdir, self.log_path, env)
        LIVE.add(self)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        """The blob service answers an authenticated request."""
        deadline = time.monotonic() + READY_TIMEOUT
        last = "no attempt"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                pytest.fail(
                    f"azurite exited with {self.proc.returncode}\n--- output ---\n{self.output()}",
                    pytrace=False,
                )
            try:
                self.request("GET", "", {"comp": "list"})
                return
            except (OSError, urllib.error.URLError) as exc:
                last = repr(exc)
            time.sleep(0.2)
        pytest.fail(f"Azurite not ready after {READY_TIMEOUT}s (last: {last})\n{self.output()}",
                    pytrace=False)  # fmt: skip

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            terminate([proc], STOP_TIMEOUT, STOP_TIMEOUT)
        LIVE.discard(self)

    # -- a synchronous client for fixtures and assertions ------------------------------------

    def params(self, container: str = "probe", **extra: Any) -> AzureParams:
        return AzureParams.parse(self.parameters(container, **extra))

    def request(self, method: str, container: str, query: dict[str, str]) -> bytes:
        """A Shared Key signed request on the account (``container`` "") or a container."""
        auth = AzureAuth(self.params(container or "probe"))
        url = auth.container_url(query) if container else URL(
            f"{self.service_url}/?" + "&".join(f"{k}={v}" for k, v in query.items()),
            encoded=True,
        )  # fmt: skip
        headers = {"Content-Length": "0"} if method in ("PUT", "DELETE") else {}
        auth.authorize(method, url, headers)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        req = urllib.request.Request(str(url), method=method, headers=headers)
        with opener.open(req, timeout=30) as resp:
            body: bytes = resp.read()
        return body

    def new_container(self) -> str:
        name = f"t-{uuid.uuid4().hex[:20]}"
        self.request("PUT", name, {"restype": "container"})
        return name

    def drop_container(self, name: str) -> None:
        self.request("DELETE", name, {"restype": "container"})

    def blob_names(self, container: str) -> list[str]:
        import xml.etree.ElementTree as ET

        body = self.request("GET", container, {"restype": "container", "comp": "list"})
        return [e.text or "" for e in ET.fromstring(body).iterfind("./Blobs/Blob/Name")]

    def parameters(self, container: str, **extra: Any) -> dict[str, Any]:
        """`storage.azure` parameters of a config.yml for this server."""
        return {
            "accountname": ACCOUNT,
            "accountkey": ACCOUNT_KEY,
            "container": container,
            "serviceurl": self.service_url,
            **extra,
        }


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    workdir = Path(tempfile.mkdtemp(prefix="fastreg-azurite-"))
    server = Azurite(workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def azure_container(azurite: Azurite) -> Iterator[str]:
    """A fresh container for one test, deleted afterwards."""
    name = azurite.new_container()
    try:
        yield name
    finally:
        try:
            azurite.drop_container(name)
        except Exception as exc:  # noqa: BLE001 - a failed cleanup must not hide the result
            print(f"could not remove container {name}: {exc!r}", file=sys.stderr)
