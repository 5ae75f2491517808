"""A real one-node OpenStack Swift (Debian's `swift-*-server`) with TempAuth, for the swift tests.

`SwiftServer.start()` builds everything under a temporary directory (nothing in /etc): swift.conf
with its own hash prefix/suffix, account/container/object rings with one device each, the four
servers' configs (`mount_check = false`, `workers = 0`: one process each), and a memcached,
which TempAuth keeps its tokens in. Everything binds 127.0.0.1 on ports picked free a moment
before. The proxy runs tempauth (user `test:tester`, key `testing`, an admin of account
AUTH_test), tempurl, bulk, slo and dlo. One server serves the whole session (`swift_server`);
every test gets a fresh container (`swift_container`); the directory goes at the end.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.procs import LIVE, free_ports, log_tail, spawn, terminate

USER, KEY, ACCOUNT = "test:tester", "testing", "AUTH_test"
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 10.0
SERVERS = ("account", "container", "object", "proxy")
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy on loopback

_SWIFT_CONF = """[swift-hash]
swift_hash_path_suffix = fastreg-{suffix}
swift_hash_path_prefix = fastreg-{prefix}

[storage-policy:0]
name = Policy-0
default = yes
"""

_BACKEND_CONF = """[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {port}
workers = 0
devices = {devices}
mount_check = false
swift_dir = {swift_dir}
user = {user}
log_level = WARNING

[pipeline:main]
pipeline = {name}-server

[app:{name}-server]
use = egg:swift#{name}
"""

_PROXY_CONF = """[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {port}
workers = 0
swift_dir = {swift_dir}
user = {user}
log_level = WARNING

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl slo dlo tempauth copy proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
allow_account_management = true
account_autocreate = true

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = {key} .admin

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:{memcached}

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:bulk]
use = egg:swift#bulk

[filter:tempurl]
use = egg:swift#tempurl

[filter:slo]
use = egg:swift#slo

[filter:dlo]
use = egg:swift#dlo

[filter:copy]
use = egg:swift#copy
"""

_RINGS = """
import json, os, sys
from swift.common.ring import RingBuilder
etc, ports = sys.argv[1], json.loads(sys.argv[2])
for name, port in ports.items():
    builder = RingBuilder(6, 1, 1)
    builder.add_dev({"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1", "port": port,
                     "device": "d1", "weight": 100, "meta": ""})
    builder.rebalance()
    builder.save(os.path.join(etc, name + ".builder"))
    builder.get_ring().save(os.path.join(etc, name + ".ring.gz"))
"""

def _binary(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name!r} is not installed: the swift tests need a real Swift "
            f"(Debian: apt-get install -y {package})",
            pytrace=False,
        )
    return found


@dataclass(eq=False)
class SwiftServer:
    workdir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    _token: str = ""

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['proxy']}"

    @property
    def authurl(self) -> str:
        return f"{self.endpoint}/auth/v1.0"

    @property
    def storage_url(self) -> str:
        return f"{self.endpoint}/v1/{ACCOUNT}"

    def output(self, tail: int = 6_000) -> str:
        parts = []
        for name in ("memcached", *SERVERS):
            if text := log_tail(self.workdir / f"{name}.log", tail):
                parts.append(f"--- {name} ---\n{text}")
        return "\n".join(parts)

    def start(self) -> SwiftServer:
        etc, devices = self.workdir / "etc", self.workdir / "node"
        (devices / "d1").mkdir(parents=True, exist_ok=True)
        etc.mkdir(exist_ok=True)
        ports = free_ports(5)
        self.ports = dict(zip(("proxy", "account", "container", "object", "memcached"), ports))
        salt = uuid.uuid4().hex
        (etc / "swift.conf").write_text(_SWIFT_CONF.format(suffix=salt[:16], prefix=salt[16:]))
        self._build_rings(etc)
        for name in ("account", "container", "object"):
            conf = _BACKEND_CONF.format(port=self.ports[name], devices=devices, swift_dir=etc,
                                        user=getpass.getuser(), name=name)
            (etc / f"{name}-server.conf").write_text(conf)
        (etc / "proxy-server.conf").write_text(_PROXY_CONF.format(
            port=self.ports["proxy"], swift_dir=etc, user=getpass.getuser(), key=KEY,
            memcached=self.ports["memcached"],
        ))  # fmt: skip
        memcached = [_binary("memcached", "memcached"), "-l", "127.0.0.1",
                     "-p", str(self.ports["memcached"]), "-U", "0", "-m", "16"]  # fmt: skip
        if os.geteuid() == 0:
            memcached += ["-u", "root"]
        self._spawn("memcached", memcached)
        for name in SERVERS:
            binary = _binary(f"swift-{name}-server", f"swift-{name}")
            self._spawn(name, [binary, str(etc / f"{name}-server.conf"), "--verbose"])
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _build_rings(self, etc: Path) -> None:
        """The three rings, one device each, built in one run of swift's own RingBuilder (what
        `swift-ring-builder create/add/rebalance` runs; nine runs of that tool cost ~30 s)."""
        with open(_binary("swift-ring-builder", "swift"), "rb") as f:
            interpreter = f.readline().decode().removeprefix("#!").strip() or "python3"
        devices = {name: self.ports[name] for name in ("account", "container", "object")}
        proc = subprocess.run(
            [*interpreter.split(), "-c", _RINGS, str(etc), json.dumps(devices)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            pytest.fail(f"building the Swift rings failed:\n{proc.stdout}{proc.stderr}",
                        pytrace=False)

    def _spawn(self, name: str, argv: list[str]) -> None:
        self.procs[name] = spawn(argv, self.workdir, self.workdir / f"{name}.log")
        LIVE.add(self)

    def _wait_ready(self) -> None:
        """An authenticated object round trip works (proxy, account, container, object up)."""
        deadline = time.monotonic() + READY_TIMEOUT
        last = "no attempt"
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    pytest.fail(f"{name} exited with {proc.returncode}\n{self.output()}",
                                pytrace=False)
            try:
                self.call("PUT", "ready")
                self.call("PUT", "ready/probe", b"ok")
                if self.call("GET", "ready/probe") == b"ok":
                    return
            except (urllib.error.URLError, OSError) as exc:
                last = repr(exc)
            time.sleep(0.3)
        pytest.fail(f"Swift not ready after {READY_TIMEOUT}s (last: {last})\n{self.output()}",
                    pytrace=False)

    def token(self, renew: bool = False) -> str:
        if renew or not self._token:
            req = urllib.request.Request(self.authurl, headers={"X-Auth-User": USER,
                                                                "X-Auth-Key": KEY})
            with _OPENER.open(req, timeout=10) as resp:
                self._token = resp.headers["X-Auth-Token"]
        return self._token

    def call(self, method: str, path: str = "", body: bytes | None = None,
             headers: dict[str, str] | None = None) -> bytes:
        """One request on the test account (``path``: ``container[/object]``); the body back."""
        url = self.storage_url + (f"/{path}" if path else "")
        req = urllib.request.Request(url, data=body, method=method,
                                     headers={"X-Auth-Token": self.token(), **(headers or {})})
        with _OPENER.open(req, timeout=30) as resp:
            data: bytes = resp.read()
            return data

    def names(self, container: str, prefix: str = "") -> list[str]:
        """Every object name in ``container`` below ``prefix``."""
        names: list[str] = []
        marker = ""
        while True:
            query = urllib.parse.urlencode({"format": "json", "prefix": prefix, "marker": marker})
            page: list[dict[str, Any]] = json.loads(self.call("GET", f"{container}?{query}") or b"[]")
            if not page:
                return names
            names += [entry["name"] for entry in page]
            marker = page[-1]["name"]

    def new_container(self) -> str:
        name = f"t-{uuid.uuid4().hex[:20]}"
        self.call("PUT", name)
        return name

    def swift_parameters(self, container: str, **extra: Any) -> dict[str, Any]:
        """`storage.swift` parameters of a config.yml for this server (Distribution's keys)."""
        return {"authurl": self.authurl, "username": USER, "password": KEY,
                "container": container, **extra}

    def stop(self) -> None:
        procs, self.procs = self.procs, {}
        terminate(list(procs.values()), STOP_TIMEOUT, STOP_TIMEOUT)
        LIVE.discard(self)


@pytest.fixture(scope="session")
def swift_server() -> Iterator[SwiftServer]:
    """The session's Swift; its output is printed if it fails to start."""
    workdir = Path(tempfile.mkdtemp(prefix="fastreg-swift-"))
    server = SwiftServer(workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def swift_container(swift_server: SwiftServer) -> str:
    """A fresh container for one test; it goes with the server's directory at the end."""
    return swift_server.new_container()


__all__ = ["SwiftServer", "swift_container", "swift_server"]
