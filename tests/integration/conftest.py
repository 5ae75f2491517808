"""Fixtures for the real-client integration suite.

Starts real registry servers (CNCF Distribution's ``docker-registry`` and
``python -m fastreg``) on 127.0.0.1 ephemeral ports and drives them with a real
client (``skopeo``). Both servers read the same Distribution ``config.yml``.

Nothing here is skipped: missing tools are a hard failure, since CI installs them.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.auth.tokens import make_key, write_bundle, write_htpasswd
from tests.backends import BACKENDS

REPO_ROOT = Path(__file__).resolve().parents[2]

SKOPEO = "skopeo"
DISTRIBUTION = "docker-registry"

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
SKOPEO_TIMEOUT = 300.0

SERVER_KINDS = ("distribution", "fastreg")
PORT_ATTEMPTS = 3

# Every server process started by this suite, so nothing outlives the session
# even if a fixture teardown is skipped (e.g. a second Ctrl-C).
_LIVE: set[ServerProcess] = set()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_LIVE):
        server.stop()


# --------------------------------------------------------------------------- tools


def _require_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name!r} is not installed or not on PATH; the integration suite needs it "
            f"(Debian: apt-get install -y {package}).",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def skopeo_bin() -> str:
    return _require_tool(SKOPEO, "skopeo")


@pytest.fixture(scope="session")
def distribution_bin() -> str:
    return _require_tool(DISTRIBUTION, "docker-registry")


@pytest.fixture(autouse=True)
def _require_integration_tools(skopeo_bin: str, distribution_bin: str) -> None:
    """Every integration test needs both tools; fail loudly if either is missing."""


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    """An ephemeral TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _to_yaml(obj: Any, indent: int = 0) -> str:
    """Tiny block-style YAML emitter for nested dicts of scalars (config files)."""
    pad = "  " * indent
    lines: list[str] = []
    for key, value in obj.items():
        if isinstance(value, dict):
            if value:
                lines.append(f"{pad}{key}:")
                lines.append(_to_yaml(value, indent + 1))
            else:
                lines.append(f"{pad}{key}: {{}}")
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: {json.dumps(value)}")
        elif isinstance(value, bool):
            lines.append(f"{pad}{key}: {'true' if value else 'false'}")
        elif isinstance(value, (int, float)):
            lines.append(f"{pad}{key}: {value}")
        elif value is None:
            lines.append(f"{pad}{key}: null")
        else:
            lines.append(f"{pad}{key}: {json.dumps(str(value))}")
    return "\n".join(lines)


def _deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def registry_config(root: Path, port: int, extra: dict | None = None) -> str:
    """A Distribution 2.8 ``config.yml`` (also read verbatim by fastreg)."""
    body: dict = {
        "log": {"level": "warn"},
        "storage": {
            "filesystem": {"rootdirectory": str(root)},
            "delete": {"enabled": True},
        },
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    if extra:
        body = _deep_merge(body, extra)
        remote = {b.name for b in BACKENDS if b.remote}
        if remote & set(extra.get("storage", {})):  # one driver only: it replaces the filesystem
            del body["storage"]["filesystem"]
    # `version: 0.1` is written unquoted, exactly as Distribution's docs show it.
    return "version: 0.1\n" + _to_yaml(body) + "\n"


@dataclass(eq=False)
class ServerProcess:
    kind: str
    root: Path
    port: int
    config_path: Path
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _log_file: Any = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def output(self) -> str:
        """Everything the server printed so far (stdout and stderr interleaved)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self) -> ServerProcess:
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=str(self.config_path.parent),
            start_new_session=True,
        )
        _LIVE.add(self)
        try:
            wait_ready(self.url, READY_TIMEOUT, self)
        except BaseException:
            self.stop()
            raise
        return self

    def peak_rss(self) -> int:
        """Peak resident set size (bytes) of the server process and its children so far."""
        assert self.proc is not None and self.alive(), f"{self.kind} is not running"
        total = 0
        pids = [self.proc.pid]
        while pids:
            pid = pids.pop()
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except FileNotFoundError:
                continue
            m = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
            total += int(m.group(1)) * 1024 if m else 0
            pids.extend(int(c) for c in children)
        return total

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        _LIVE.discard(self)

    def __repr__(self) -> str:  # shows up in parametrized failure output
        return f"<{self.kind} {self.url} root={self.root}>"


def wait_ready(url: str, timeout: float, server: ServerProcess | None = None) -> None:
    """Poll ``GET {url}/v2/`` until it answers 200 (or 401).

    Fails at once, with the server's captured output, if the process dies.
    """
    # Never route loopback through an http_proxy from the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    last_err: str = "no attempt made"
    delay = 0.02
    while time.monotonic() < deadline:
        if server is not None and server.proc is not None and server.proc.poll() is not None:
            pytest.fail(
                f"{server.kind} exited with code {server.proc.returncode} before it was ready "
                f"(argv={server.argv}).\n--- server output ---\n{server.output()}",
                pytrace=False,
            )
        try:
            with opener.open(f"{url}/v2/", timeout=2) as resp:
                if resp.status == 200:
                    return
                last_err = f"HTTP {resp.status}"
        except urllib.error.HTTPError as e:
            if e.code == 401:
                return
            last_err = f"HTTP {e.code}"
        except (urllib.error.URLError, OSError) as e:
            last_err = repr(e)
        time.sleep(delay)
        delay = min(delay * 2, 0.25)
    out = server.output() if server is not None else ""
    pytest.fail(
        f"{url}/v2/ not ready after {timeout}s (last: {last_err}).\n--- server output ---\n{out}",
        pytrace=False,
    )


ServerFactory = Callable[..., ServerProcess]


_ACCESS_LINE = re.compile(r'^\S+ - \S+ \[[^]]*\] "[^"]*" (\d{3}) ')


def _interesting(log: str) -> str:
    """Server output minus routine access-log lines and Distribution's 404-on-HEAD noise."""
    keep = []
    dropped = 0
    for line in log.splitlines():
        m = _ACCESS_LINE.match(line)
        noise = (m is not None and int(m.group(1)) < 500) or (
            'msg="response completed with error"' in line
            and "http.response.status=404" in line
            and "http.request.method=HEAD" in line
        )
        if noise:
            dropped += 1
        else:
            keep.append(line)
    if dropped:
        keep.append(f"[{dropped} access-log / HEAD-404 lines omitted; full log: see path above]")
    return "\n".join(keep)


SERVERS_KEY = pytest.StashKey[list["ServerProcess"]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On failure, attach the output of every server the test started."""
    report = yield
    if report.failed:
        for server in item.stash.get(SERVERS_KEY, []):
            out = _interesting(server.output())
            if len(out) > 20_000:
                out = "...[truncated]...\n" + out[-20_000:]
            report.sections.append(
                (f"{server.kind} server output ({server.url}, log={server.log_path})", out)
            )
    return report


def _server_factory(
    kind: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[ServerFactory]:
    started: list[ServerProcess] = []
    request.node.stash.setdefault(SERVERS_KEY, [])

    def start(root_dir: str | os.PathLike[str], extra_config: dict | None = None) -> ServerProcess:
        root = Path(root_dir)
        root.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        # Both servers read REGISTRY_* env vars as config overrides: strays were dropped.
        env["PYTHONUNBUFFERED"] = "1"
        if kind == "fastreg":
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
            )
        for attempt in range(PORT_ATTEMPTS):
            work = tmp_path_factory.mktemp(f"{kind}-cfg")
            port = free_port()
            cfg = work / "config.yml"
            cfg.write_text(registry_config(root, port, extra_config))
            if kind == "distribution":
                argv = [shutil.which(DISTRIBUTION) or DISTRIBUTION, "serve", str(cfg)]
            elif kind == "fastreg":
                argv = [sys.executable, "-m", "fastreg", "serve", str(cfg)]
            else:
                raise ValueError(kind)
            server = ServerProcess(
                kind=kind,
                root=root,
                port=port,
                config_path=cfg,
                argv=argv,
                env=env,
                log_path=work / "server.log",
            )
            started.append(server)
            request.node.stash[SERVERS_KEY].append(server)
            try:
                return server.start()
            except pytest.fail.Exception:
                # free_port() is racy: another process may grab the port first.
                if attempt + 1 < PORT_ATTEMPTS and "address already in use" in server.output():
                    continue
                raise
        raise AssertionError("unreachable")

    try:
        yield start
    finally:
        for s in started:
            s.stop()


@pytest.fixture
def distribution_server(
    distribution_bin: str,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[ServerFactory]:
    """Factory: ``distribution_server(root_dir)`` -> running docker-registry."""
    yield from _server_factory("distribution", tmp_path_factory, request)


@pytest.fixture
def fastreg_server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[ServerFactory]:
    """Factory: ``fastreg_server(root_dir, extra_config=None)`` -> running fastreg."""
    yield from _server_factory("fastreg", tmp_path_factory, request)


@pytest.fixture
def server_factory(
    request: pytest.FixtureRequest,
    distribution_server: ServerFactory,
    fastreg_server: ServerFactory,
) -> Callable[[str], ServerFactory]:
    """``server_factory(kind)`` -> the factory for ``distribution`` or ``fastreg``."""

    def get(kind: str) -> ServerFactory:
        return {"distribution": distribution_server, "fastreg": fastreg_server}[kind]

    return get


@dataclass
class GCResult:
    returncode: int
    output: str
    marked: int
    blobs_eligible: int
    manifests_eligible: int

    @property
    def marked_digests(self) -> set[str]:
        return set(re.findall(r"marking (?:manifest|blob) (sha256:[0-9a-f]{64})", self.output))

    @property
    def eligible_digests(self) -> set[str]:
        return set(re.findall(r"eligible for deletion: (sha256:[0-9a-f]{64})", self.output))


@pytest.fixture
def distribution_gc(
    distribution_bin: str, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., GCResult]:
    """``distribution_gc(root, dry_run=False)``: Distribution's garbage collector on ``root``.

    Run it only while no server is serving ``root``. Fails on a non-zero exit.
    """

    def run(root: str | os.PathLike[str], dry_run: bool = False) -> GCResult:
        cfg = tmp_path_factory.mktemp("gc") / "config.yml"
        cfg.write_text(registry_config(Path(root), free_port()))
        argv = [distribution_bin, "garbage-collect", str(cfg)]
        if dry_run:
            argv.append("--dry-run")
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        proc = subprocess.run(
            argv,
            check=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            timeout=120,
        )
        if proc.returncode != 0:
            pytest.fail(
                f"{' '.join(argv)} failed (exit {proc.returncode}):\n{proc.stdout}",
                pytrace=False,
            )
        m = re.search(
            r"(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible for deletion",
            proc.stdout,
        )
        if m is None:
            pytest.fail(f"unexpected garbage-collect output:\n{proc.stdout}", pytrace=False)
        return GCResult(proc.returncode, proc.stdout, *(int(g) for g in m.groups()))

    return run


@pytest.fixture(params=SERVER_KINDS)
def registry(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    distribution_server: ServerFactory,
    fastreg_server: ServerFactory,
) -> ServerProcess:
    """A running registry of each kind (parametrized), on a fresh root."""
    kind = request.param
    factory = distribution_server if kind == "distribution" else fastreg_server
    return factory(tmp_path / f"{kind}-root")


# --------------------------------------------------------------------------- token issuer

SERVICE = "fastreg-it"
ISSUER = "fastreg-it-issuer"
ACL = """
rules:
  - users: [alice]
    repositories: ["alice/**", "shared/*", "library/*", "org/*"]  # the last two: Docker Hub's shape
    actions: [pull, push, delete]
  - users: ["*"]
    repositories: ["shared/*"]
    actions: [pull]
"""


def fastreg_env() -> dict[str, str]:
    """The environment of a `python -m fastreg` child: this checkout first, no stray REGISTRY_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return env


@pytest.fixture
def issuer_files(tmp_path: Path) -> dict[str, str]:
    key = make_key("rsa", cn="fastreg-it-issuer")
    (tmp_path / "token.key").write_bytes(key.pem())
    (tmp_path / "acl.yml").write_text(ACL)
    return {
        "key": str(tmp_path / "token.key"),
        "cert": write_bundle(tmp_path / "token.crt", key),
        "htpasswd": write_htpasswd(tmp_path / "htpasswd", {"alice": "alice-pw", "bob": "bob-pw"}),
        "acl": str(tmp_path / "acl.yml"),
    }


@pytest.fixture
def token_server(tmp_path: Path, issuer_files: dict[str, str]) -> Iterator[str]:
    """`fastreg token-server` on 127.0.0.1; yields its realm URL."""
    port = free_port()
    cfg = tmp_path / "tokenserver.yml"
    cfg.write_text(registry_config(tmp_path / "unused", port, {"auth": {"token": {
        "realm": f"http://127.0.0.1:{port}/token", "service": SERVICE, "issuer": ISSUER,
        "rootcertbundle": issuer_files["cert"],
        "tokenserver": {"key": issuer_files["key"], "htpasswd": issuer_files["htpasswd"],
                        "acl": issuer_files["acl"], "addr": f"127.0.0.1:{port}"},
    }}}))
    log = open(tmp_path / "tokenserver.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "fastreg", "token-server", str(cfg)],
                            stdout=log, stderr=subprocess.STDOUT, env=fastreg_env(),
                            start_new_session=True)
    realm = f"http://127.0.0.1:{port}/token"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, (tmp_path / "tokenserver.log").read_text()
            try:
                with opener.open(f"{realm}?service={SERVICE}", timeout=2) as resp:
                    assert json.loads(resp.read())["token"]
                    break
            except (urllib.error.URLError, OSError):
                assert time.monotonic() < deadline, (tmp_path / "tokenserver.log").read_text()
                time.sleep(0.1)
        yield realm
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def token_auth(realm: str, cert: str) -> dict:
    """The `auth.token` section of a registry trusting the issuer of ``token_server``."""
    return {"auth": {"token": {"realm": realm, "service": SERVICE, "issuer": ISSUER,
                               "rootcertbundle": cert}}}


# --------------------------------------------------------------------------- skopeo


class SkopeoError(AssertionError):
    pass


@dataclass
class Skopeo:
    """Runs skopeo hermetically: own HOME, empty auth file, permissive policy."""

    home: Path
    authfile: Path
    policy: Path
    registries_conf: Path
    registries_d: Path
    timeout: float = SKOPEO_TIMEOUT

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        env.update(
            HOME=str(self.home),
            XDG_RUNTIME_DIR=str(self.home / "run"),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            REGISTRY_AUTH_FILE=str(self.authfile),
            CONTAINERS_REGISTRIES_CONF=str(self.registries_conf),
            XDG_DATA_HOME=str(self.home / ".local" / "share"),
            TMPDIR=str(self.home / "tmp"),
            # As root, containers/image keeps its blob-info cache (which blob it saw where)
            # in /var/lib/containers/cache, shared by every run on the machine. Claiming a
            # non-root uid moves it under XDG_DATA_HOME above, private to this session.
            _CONTAINERS_ROOTLESS_UID="4242",
        )
        return env

    def argv(self, *args: str) -> list[str]:
        if not args:
            raise ValueError("skopeo needs a subcommand")
        sub, rest = args[0], list(args[1:])
        extra: list[str] = []
        if sub == "copy":
            positional = [a for a in rest if not a.startswith("-")]
            src, dst = positional[-2], positional[-1]
            if src.startswith("docker://"):
                extra.append("--src-tls-verify=false")
            if dst.startswith("docker://"):
                extra.append("--dest-tls-verify=false")
            extra += ["--authfile", str(self.authfile)]
        elif sub == "sync":
            # sync takes bare repository paths; --src/--dest name the transports.
            extra += ["--src-tls-verify=false", "--dest-tls-verify=false"]
            extra += ["--src-authfile", str(self.authfile), "--dest-authfile", str(self.authfile)]
        elif sub in ("inspect", "list-tags", "delete"):
            if any(a.startswith("docker://") for a in rest):
                extra.append("--tls-verify=false")
            extra += ["--authfile", str(self.authfile)]
        glob = ["--policy", str(self.policy), "--registries.d", str(self.registries_d)]
        return [SKOPEO, *glob, sub, *extra, *rest]

    def run(
        self, *args: str, check: bool = True, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = self.argv(*args)
        try:
            proc = subprocess.run(
                argv,
                check=False,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                env=self.env(),
                timeout=timeout or self.timeout,
            )
        except subprocess.TimeoutExpired as e:
            raise SkopeoError(
                f"skopeo timed out after {e.timeout}s: {' '.join(argv)}\n"
                f"--- stdout ---\n{e.stdout!r}\n--- stderr ---\n{e.stderr!r}"
            ) from None
        if check and proc.returncode != 0:
            raise SkopeoError(
                f"skopeo failed (exit {proc.returncode}): {' '.join(argv)}\n"
                f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
            )
        return proc

    __call__ = run

    # conveniences -----------------------------------------------------------

    def inspect_raw(self, ref: str) -> bytes:
        """Raw manifest bytes as served (text mode would be lossy for CRLF etc.)."""
        argv = self.argv("inspect", "--raw", ref)
        proc = subprocess.run(
            argv,
            check=False,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=self.env(),
            timeout=self.timeout,
        )
        if proc.returncode != 0:
            raise SkopeoError(
                f"skopeo failed (exit {proc.returncode}): {' '.join(argv)}\n"
                f"--- stdout ---\n{proc.stdout!r}\n--- stderr ---\n"
                f"{proc.stderr.decode(errors='replace')}"
            )
        return proc.stdout

    def inspect(self, ref: str) -> dict:
        return json.loads(self.run("inspect", ref).stdout)

    def list_tags(self, ref: str) -> list[str]:
        return list(json.loads(self.run("list-tags", ref).stdout)["Tags"] or [])


@pytest.fixture(scope="session")
def skopeo(skopeo_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    home = tmp_path_factory.mktemp("skopeo-home")
    for sub in ("run", ".config", "tmp"):
        (home / sub).mkdir()
    authfile = home / "auth.json"
    authfile.write_text("{}")
    policy = home / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    registries_conf = home / "registries.conf"
    registries_conf.write_text("")
    registries_d = home / "registries.d"
    registries_d.mkdir()
    return Skopeo(
        home=home,
        authfile=authfile,
        policy=policy,
        registries_conf=registries_conf,
        registries_d=registries_d,
    )


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A scratch dir removed at teardown (big blobs must not pile up in /tmp)."""
    d = Path(tempfile.mkdtemp(prefix="scratch-", dir=tmp_path))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
