"""Start and stop the servers the benchmark compares, and measure what they cost.

Owns: writing each server's config (the same Distribution ``config.yml`` for fastreg and
``docker-registry``), starting it on a free 127.0.0.1 port, waiting until ``/v2/`` answers,
stopping it, and reading CPU seconds and RSS of its whole process tree from ``/proc``.
Also starts nginx (serving one file with sendfile, the pull reference) and SeaweedFS (the S3
back end). Must not import fastreg: the servers are black boxes started as processes.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


class ServerError(RuntimeError):
    """A server did not start, or died; the message carries the tail of its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- /proc


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (fastreg --workers forks its workers)."""
    out = [pid]
    i = 0
    while i < len(out):
        p = out[i]
        i += 1
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                children = Path(f"/proc/{p}/task/{task}/children").read_text().split()
                out.extend(int(c) for c in children)
        except OSError:
            continue
    return out


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """utime+stime of the live tree, plus what its reaped children used (cutime+cstime)."""
    ticks = 0
    for p in process_tree(pid):
        f = _stat_fields(p)
        if f is not None:
            # fields after the name start at index 0 = state; utime is field 14 -> index 11
            ticks += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return ticks / CLOCK_TICKS


def rss_kib(pid: int) -> tuple[int, int]:
    """(sum over the tree, largest single process) resident set, KiB."""
    total = largest = 0
    for p in process_tree(pid):
        f = _stat_fields(p)
        if f is None:
            continue
        rss = int(f[21]) * PAGE_KIB
        total += rss
        largest = max(largest, rss)
    return total, largest


@dataclass
class Usage:
    cpu_s: float
    peak_rss_mib: float  # largest single process (per worker)
    peak_total_rss_mib: float  # whole tree


class Meter:
    """CPU seconds and peak RSS of a process tree between ``start()`` and ``stop()``."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self._cpu0 = 0.0
        self._peak = (0, 0)
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._done.is_set():
            total, largest = rss_kib(self.pid)
            self._peak = (max(self._peak[0], total), max(self._peak[1], largest))
            self._done.wait(self.interval)

    def start(self) -> Meter:
        self._cpu0 = cpu_seconds(self.pid)
        self._peak = rss_kib(self.pid)
        self._done.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> Usage:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        cpu = cpu_seconds(self.pid) - self._cpu0
        return Usage(cpu, self._peak[1] / 1024, self._peak[0] / 1024)


# --------------------------------------------------------------------------- processes


@dataclass
class Process:
    """One started server process with its log file."""

    name: str
    argv: list[str]
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def spawn(self) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        # REGISTRY_* would override the config; AWS_CA_BUNDLE makes Distribution's AWS SDK
        # panic at start (it cannot load a bundle into its transport), and S3 here is plain HTTP.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("REGISTRY_") and k != "AWS_CA_BUNDLE"}
        env.update(self.env)
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(self.workdir),
            start_new_session=True,
        )

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise ServerError(f"{self.name} exited (code {code}):\n{self.log_tail()}")

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                # the whole session: a --workers parent that hangs must not leave workers behind
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=STOP_TIMEOUT)
        if self._log is not None:
            self._log.close()
            self._log = None


def wait_http(proc: Process, port: int, path: str, ok: tuple[int, ...] = (200, 401)) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        proc.check_alive()
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            c.close()
            if r.status in ok:
                return
            last = f"HTTP {r.status}"
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.1)
    proc.stop()
    raise ServerError(f"{proc.name} not ready on :{port}{path} ({last}):\n{proc.log_tail()}")


# --------------------------------------------------------------------------- registries


@dataclass(frozen=True)
class S3Target:
    """A bucket on the SeaweedFS S3 gateway (anonymous: the keys are placeholders)."""

    endpoint: str
    bucket: str
    region: str = "us-east-1"
    accesskey: str = "bench"
    secretkey: str = "bench"


def registry_config(port: int, root: Path | None, s3: S3Target | None,
                    redis_addr: str | None = None, *, accesslog: bool = False,
                    extra: str = "") -> str:
    """Distribution 2.8 ``config.yml``; both servers read it unchanged.

    With ``redis_addr`` (the S3 runs) blob descriptors are cached in Redis by both servers, as a
    deployment of several workers or hosts over one bucket does, and fastreg also caches tag
    lists there (`storage.cache.tags`, a key Distribution ignores). ``accesslog`` turns the access
    log on (the proxy bench counts an upstream's requests in it); ``extra`` is YAML appended as
    is (a `proxy:` section)."""
    if s3 is not None:
        storage = (
            "  s3:\n"
            f"    accesskey: {s3.accesskey}\n"
            f"    secretkey: {s3.secretkey}\n"
            f"    region: {s3.region}\n"
            f"    regionendpoint: {s3.endpoint}\n"
            f"    bucket: {s3.bucket}\n"
            "    secure: false\n"
            "    v4auth: true\n"
            "    chunksize: 10485760\n"
            "    rootdirectory: /registry\n"
            # Pulls are measured through the registry, not through SeaweedFS directly.
            "  redirect:\n"
            "    disable: true\n"
        )
    else:
        assert root is not None
        storage = f"  filesystem:\n    rootdirectory: {root}\n"
    cache = redis = ""
    if redis_addr is not None:
        cache = "  cache:\n    blobdescriptor: redis\n    tags: redis\n"
        redis = f"redis:\n  addr: {redis_addr}\n"
    return (
        "version: 0.1\n"
        f"log:\n  level: error\n  accesslog:\n    disabled: {'false' if accesslog else 'true'}\n"
        "storage:\n"
        f"{storage}"
        f"{cache}"
        "  delete:\n    enabled: true\n"
        "  maintenance:\n    uploadpurging:\n      enabled: false\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        f"{redis}"
        f"{extra}"
    )


@dataclass
class Registry:
    """A running registry: ``kind`` is ``fastreg`` or ``distribution``."""

    kind: str
    port: int
    process: Process
    root: Path | None
    redis: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.stop()
        if self.redis is not None:
            self.redis.stop()


def start_registry(
    kind: str, workdir: Path, *, s3: S3Target | None = None, workers: int = 2,
    accesslog: bool = False, extra: str = "", source: Path = REPO_ROOT,
) -> Registry:
    """A fresh registry on an empty filesystem root under ``workdir`` (or on ``s3``, with a
    fresh redis-server of its own for the caches); fastreg's code from ``source``."""
    workdir.mkdir(parents=True, exist_ok=True)
    root = None if s3 is not None else workdir / "root"
    if root is not None:
        root.mkdir(exist_ok=True)
    redis, redis_addr = (start_redis(workdir) if s3 is not None else (None, None))
    port = free_port()
    cfg = workdir / "config.yml"
    cfg.write_text(registry_config(port, root, s3, redis_addr, accesslog=accesslog, extra=extra))
    if kind == "fastreg":
        argv = [sys.executable, "-m", "fastreg", "serve", "--workers", str(workers), str(cfg)]
        env = {"PYTHONPATH": str(source)}
    elif kind == "distribution":
        argv = [shutil.which("docker-registry") or "docker-registry", "serve", str(cfg)]
        env = {}
    else:
        raise ValueError(f"unknown server kind {kind!r}")
    proc = Process(kind, argv, workdir, env)
    try:
        proc.spawn()
        wait_http(proc, port, "/v2/")
        if kind == "fastreg" and workers > 1:
            _wait_workers(proc, workers)
    except BaseException:
        proc.stop()
        if redis is not None:
            redis.stop()
        raise
    return Registry(kind, port, proc, root, redis)


def start_redis(workdir: Path) -> tuple[Process, str]:
    """Debian's redis-server on a free port, nothing persisted: one per registry started."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    proc = Process("redis", [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)], workdir)
    proc.spawn()
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        proc.check_alive()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return proc, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.stop()
    raise ServerError(f"redis-server did not answer on port {port}:\n{proc.log_tail()}")


def _wait_workers(proc: Process, workers: int) -> None:
    """/v2/ answers once one worker listens; wait until all are up so none starts mid-run."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        proc.check_alive()
        listening = 0
        for pid in process_tree(proc.pid)[1:]:
            try:
                listening += _has_listen_socket(pid)
            except OSError:  # the process went away between the listing and the look
                pass
        if listening >= workers:
            return
        time.sleep(0.1)
    raise ServerError(f"fastreg: fewer than {workers} workers listening:\n{proc.log_tail()}")


def _has_listen_socket(pid: int) -> bool:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A = LISTEN
                return True
    return False


# --------------------------------------------------------------------------- nginx


def start_nginx(workdir: Path, www: Path) -> tuple[Process, int]:
    """Debian nginx serving the files of ``www`` at ``/blobs/`` with sendfile (the reference)."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    user = "user root;\n" if os.geteuid() == 0 else ""  # temp dirs are 0700
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"{user}worker_processes 2;\npid {workdir}/nginx.pid;\n"
        f"error_log {workdir}/nginx-error.log warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n"
        f"  client_body_temp_path {workdir}/body;\n  proxy_temp_path {workdir}/proxy;\n"
        f"  fastcgi_temp_path {workdir}/fcgi;\n  uwsgi_temp_path {workdir}/uwsgi;\n"
        f"  scgi_temp_path {workdir}/scgi;\n"
        f"  server {{\n    listen 127.0.0.1:{port};\n"
        f"    location = /v2/ {{ return 200 '{{}}'; }}\n"
        f"    location /blobs/ {{ alias {www}/; default_type application/octet-stream; }}\n"
        "  }\n}\n"
    )
    proc = Process("nginx", [nginx, "-p", str(workdir), "-c", str(conf), "-g", "daemon off;"],
                   workdir)
    proc.spawn()
    wait_http(proc, port, "/v2/", ok=(200,))
    return proc, port
