"""The container clients that pull through a mirror, each a private instance started by a test:
the Docker daemon (with its own managed containerd), a containerd driven by `ctr`, and rootful
podman. Each believes it pulls from docker.io; the mirror is configured the way its users do it:
dockerd's `--registry-mirror`, containerd's `hosts.toml` (`--hosts-dir`, so the `ns` query
parameter is sent), podman's `registries.conf` `[[registry.mirror]]`.

Nothing is shared with a system instance of these tools: every socket, state and data directory,
config file and pid file is under the test's own directory (dockerd's trust key too, through
`deprecated-key-path`; its empty plugin-discovery directory `/run/docker/plugins` is hard-coded),
so a running system docker or containerd service is neither used nor disturbed. Stopping takes
the whole process group down, unmounts what the daemon left mounted under its directory (dockerd
bind-mounts its data root onto itself, snapshotters mount layers while unpacking) and removes
the directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from tests.procs import LIVE, log_tail, spawn, terminate

READY_TIMEOUT = 60.0
COMMAND_TIMEOUT = 300.0
STOP_GRACE = 20.0

D = TypeVar("D", bound="Daemon")

PACKAGES = {"dockerd": "docker.io", "docker": "docker.io", "containerd": "containerd",
            "ctr": "containerd", "podman": "podman"}  # fmt: skip


def require(tool: str) -> str:
    """The tool's path; a hard failure when it is missing (CI installs it)."""
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool!r} is not installed (Debian: apt-get install -y {PACKAGES[tool]})",
                    pytrace=False)  # fmt: skip
    return path


def run(argv: Sequence[str], env: Mapping[str, str] | None = None,
        timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[bytes]:  # fmt: skip
    """Run a client command; an AssertionError with its output when it fails."""
    proc = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True,
                          env=dict(env) if env is not None else None, timeout=timeout,
                          check=False)  # fmt: skip
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} failed (exit {proc.returncode})\n--- stdout ---\n"
            f"{proc.stdout.decode(errors='replace')}\n--- stderr ---\n"
            f"{proc.stderr.decode(errors='replace')}"
        )
    return proc


# What each tool creates where it is told nothing else, hard-coded: dockerd its plugin-discovery
# directory; rootful podman containers/image's blob-info cache (/var/lib/containers/cache) and
# netavark's run directory, shared by every rootful podman on purpose. Removed after a test
# when the test created them, left alone when they were there before (a system instance's).
TRAILS = {
    "dockerd": (Path("/run/docker"),),
    "podman": (Path("/var/lib/containers"), Path("/run/containers")),
}


@contextlib.contextmanager
def no_trail(tool: str) -> Iterator[None]:
    """Remove, on exit, the hard-coded system paths of ``tool`` that did not exist on entry."""
    missing = [path for path in TRAILS[tool] if not path.exists()]
    try:
        yield
    finally:
        for path in missing:
            shutil.rmtree(path, ignore_errors=True)


def mount_points_under(root: Path) -> list[str]:
    """Mount points at or below ``root``, deepest first (from /proc/self/mountinfo)."""
    prefix = str(root.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        # field 5 is the mount point, with spaces and the like written as octal escapes
        point = line.split()[4].encode().decode("unicode_escape")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def unmount_all(root: Path) -> None:
    for point in mount_points_under(root):
        subprocess.run(["umount", "--lazy", point], check=False, capture_output=True)


@dataclass(eq=False)
class Daemon:
    """A daemon in a directory of its own; ``argv`` and ``probe`` are set by each kind."""

    name: str
    home: Path
    argv: list[str] = field(default_factory=list)
    probe: list[str] = field(default_factory=list)  # a command that succeeds once it serves
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.home / f"{self.name}.log"

    def output(self, tail: int = 20_000) -> str:
        return log_tail(self.log_path, tail)

    def start(self) -> None:
        self.proc = spawn(self.argv, self.home, self.log_path)
        LIVE.add(self)
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                self.stop()
                pytest.fail(f"{self.name} exited with {self.proc.returncode} before serving:\n"
                            f"{self.output()}", pytrace=False)  # fmt: skip
            probe = subprocess.run(self.probe, stdin=subprocess.DEVNULL, capture_output=True,
                                   timeout=30, check=False)  # fmt: skip
            if probe.returncode == 0:
                return
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"{self.name} not serving after {READY_TIMEOUT}s "
                            f"({probe.stderr.decode(errors='replace')}):\n{self.output()}",
                            pytrace=False)  # fmt: skip
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None:
            terminate([self.proc], STOP_GRACE, STOP_GRACE)
        LIVE.discard(self)
        unmount_all(self.home)

    def remove(self) -> None:
        """Stop, then delete everything the daemon wrote."""
        self.stop()
        unmount_all(self.home)
        shutil.rmtree(self.home, ignore_errors=True)


# --------------------------------------------------------------------------- containerd


@dataclass(eq=False)
class Containerd(Daemon):
    """containerd without its CRI plugin, every path its own; ``ctr`` pulls with ``hosts_dir``."""

    ctr: str = "ctr"

    @property
    def socket(self) -> Path:
        return self.home / "containerd.sock"

    @property
    def hosts_dir(self) -> Path:
        return self.home / "certs.d"

    @classmethod
    def create(cls, home: Path, mirror: str) -> Containerd:
        home.mkdir(parents=True, exist_ok=True)
        config = home / "config.toml"
        config.write_text(
            "version = 2\n"
            f'root = "{home / "root"}"\n'
            f'state = "{home / "state"}"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\naddress = "{home / "containerd.sock"}"\n'
            f'[ttrpc]\naddress = "{home / "containerd.sock.ttrpc"}"\n'
            f'[debug]\naddress = "{home / "debug.sock"}"\n'
            # its default is /opt/containerd
            f'[plugins."io.containerd.internal.v1.opt"]\npath = "{home / "opt"}"\n'
        )
        # what a containerd user writes for a Docker Hub mirror: the mirror first, Docker Hub
        # as the server behind it (unreachable here: a pull that skips the mirror fails)
        hub = home / "certs.d" / "docker.io"
        hub.mkdir(parents=True)
        (hub / "hosts.toml").write_text(
            'server = "https://registry-1.docker.io"\n'
            f'[host."http://{mirror}"]\n  capabilities = ["pull", "resolve"]\n'
        )
        ctr = require("ctr")
        daemon = cls("containerd", home, ctr=ctr)
        daemon.argv = [require("containerd"), "--config", str(config)]
        daemon.probe = [ctr, "-a", str(home / "containerd.sock"), "version"]
        return daemon

    def __call__(self, *args: str) -> bytes:
        return run([self.ctr, "-a", str(self.socket), *args]).stdout

    def pull(self, ref: str) -> None:
        self("images", "pull", "--hosts-dir", str(self.hosts_dir), ref)

    def image_digest(self, ref: str) -> str:
        """The manifest digest ``ctr images ls`` lists for ``ref``."""
        for line in self("images", "ls").decode().splitlines()[1:]:
            cols = line.split()
            if cols and cols[0] == ref:
                return next(c for c in cols if c.startswith("sha256:"))
        raise AssertionError(f"{ref} not in `ctr images ls`")

    def content(self, digest: str) -> bytes:
        return self("content", "get", digest)


# --------------------------------------------------------------------------- docker


@dataclass(eq=False)
class Dockerd(Daemon):
    """dockerd with vfs storage, no iptables, no bridge, on a containerd of its own.

    Given no `--containerd`, dockerd would start one itself, but with the default
    `/opt/containerd` plugin directory; the `Containerd` below keeps every path private.
    """

    docker: str = "docker"
    containerd: Containerd | None = None

    @classmethod
    def create(cls, home: Path, mirror: str, containerd: Containerd) -> Dockerd:
        home.mkdir(parents=True, exist_ok=True)
        config = home / "daemon.json"
        # the trust key would otherwise be written to /etc/docker/key.json
        config.write_text(json.dumps({"deprecated-key-path": str(home / "key.json")}))
        sock = f"unix://{home / 'docker.sock'}"
        docker = require("docker")
        daemon = cls("dockerd", home, docker=docker, containerd=containerd)
        daemon.argv = [
            require("dockerd"), "--config-file", str(config), "--storage-driver=vfs",
            "--iptables=false", "--ip6tables=false", "--bridge=none",
            "--data-root", str(home / "data"), "--exec-root", str(home / "exec"),
            "-H", sock, "--pidfile", str(home / "docker.pid"),
            "--containerd", str(containerd.socket),
            "--registry-mirror", f"http://{mirror}", "--insecure-registry", mirror,
        ]  # fmt: skip
        daemon.probe = [docker, "-H", sock, "version"]
        return daemon

    def remove(self) -> None:
        super().remove()
        if self.containerd is not None:
            self.containerd.remove()

    def __call__(self, *args: str) -> bytes:
        return run([self.docker, "-H", f"unix://{self.home / 'docker.sock'}", *args]).stdout

    def inspect(self, ref: str) -> dict:
        return dict(json.loads(self("image", "inspect", ref))[0])


# --------------------------------------------------------------------------- podman


@dataclass
class Podman:
    """Rootful podman on a storage of its own (vfs), with a registries.conf naming the mirror.

    Not a daemon: each command is a process. ``stop`` unmounts and removes its directory.
    """

    home: Path
    podman: str = "podman"

    @classmethod
    def create(cls, home: Path, mirror: str, prefix: str = "") -> Podman:
        """``prefix``: a path the mirror location carries (``mirror/docker.io``), if any."""
        for sub in ("root", "runroot", "tmp", "volumes"):
            (home / sub).mkdir(parents=True, exist_ok=True)
        (home / "registries.conf").write_text(
            'unqualified-search-registries = ["docker.io"]\n'
            '[[registry]]\nprefix = "docker.io"\nlocation = "registry-1.docker.io"\n'
            f'[[registry.mirror]]\nlocation = "{mirror}{prefix}"\ninsecure = true\n'
        )
        (home / "containers.conf").write_text(
            "[engine]\n"
            f'tmp_dir = "{home / "tmp"}"\nvolume_path = "{home / "volumes"}"\n'
            f'events_logger = "file"\nevents_logfile_path = "{home / "tmp" / "events.log"}"\n'
            'cgroup_manager = "cgroupfs"\n'
            f'[network]\nnetwork_config_dir = "{home / "networks"}"\n'
        )
        (home / "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\ngraphroot = "{home / "root"}"\n'
            f'runroot = "{home / "runroot"}"\n'
        )
        (home / "policy.json").write_text(
            json.dumps({"default": [{"type": "insecureAcceptAnything"}]})
        )
        return cls(home, require("podman"))

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.home),
            "TMPDIR": str(self.home / "tmp"),
            "CONTAINERS_REGISTRIES_CONF": str(self.home / "registries.conf"),
            "CONTAINERS_CONF": str(self.home / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(self.home / "storage.conf"),
        }

    def __call__(self, *args: str) -> bytes:
        argv = [self.podman, "--root", str(self.home / "root"),
                "--runroot", str(self.home / "runroot"), "--storage-driver", "vfs",
                "--tmpdir", str(self.home / "tmp"), *args]  # fmt: skip
        return run(argv, env=self.env()).stdout

    def pull(self, ref: str) -> None:
        self("pull", "--signature-policy", str(self.home / "policy.json"), ref)

    def inspect(self, ref: str) -> dict:
        return dict(json.loads(self("image", "inspect", ref))[0])

    def remove(self) -> None:
        unmount_all(self.home)
        shutil.rmtree(self.home, ignore_errors=True)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def rootful() -> None:
    """dockerd, containerd and rootful podman mount, chroot and own devices: root only."""
    if os.geteuid() != 0:
        pytest.skip("dockerd, containerd and rootful podman need root (CI runs as root)")


def short_home(name: str) -> Path:
    """A fresh directory with a short path: a unix socket's path is at most 107 bytes, and
    pytest's tmp_path plus containerd's own nesting exceeds that."""
    return Path(tempfile.mkdtemp(prefix=f"fastreg-it-{name}-", dir="/tmp"))


@pytest.fixture
def dockerd(rootful: None) -> Iterator[Callable[[str], Dockerd]]:
    """``dockerd(mirror_host)``: a running private dockerd whose registry mirror is that host."""
    def create(mirror: str) -> Dockerd:
        containerd = Containerd.create(short_home("containerd"), mirror)
        try:
            containerd.start()
        except BaseException:
            containerd.remove()
            raise
        return Dockerd.create(short_home("dockerd"), mirror, containerd)

    with no_trail("dockerd"):
        yield from _started(create)


@pytest.fixture
def containerd(rootful: None) -> Iterator[Callable[[str], Containerd]]:
    """``containerd(mirror_host)``: a running private containerd; its hosts.toml names it."""
    yield from _started(lambda mirror: Containerd.create(short_home("containerd"), mirror))


@pytest.fixture
def podman(rootful: None) -> Iterator[Callable[..., Podman]]:
    """``podman(mirror_host, prefix="")``: podman whose registries.conf mirrors docker.io there."""
    made: list[Podman] = []

    def make(mirror: str, prefix: str = "") -> Podman:
        made.append(Podman.create(short_home("podman"), mirror, prefix))
        return made[-1]

    with no_trail("podman"):
        yield make
        for p in made:
            p.remove()


def _started(create: Callable[[str], D]) -> Iterator[Callable[[str], D]]:
    daemons: list[D] = []

    def start(mirror: str) -> D:
        daemon = create(mirror)
        daemons.append(daemon)
        daemon.start()
        return daemon

    try:
        yield start
    finally:
        for daemon in daemons:
            daemon.remove()
