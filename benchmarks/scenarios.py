"""The scenarios of the benchmark, (a) to (h), each run once per server per round.

A scenario gets a freshly started target (fastreg, Distribution or, for pulls, nginx) on an empty
root, does its unmeasured setup (pushing what it will pull), and measures one or more figures
with ``Run.measure``, which also records the server's CPU seconds and peak RSS for that phase.
Figures are "higher is better" rates so the ratio fastreg / Distribution reads the same way on
every row.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from benchmarks import clients
from benchmarks.clients import Blob, Check, MiB, SmallBlob
from benchmarks.servers import Meter, Usage

GiB = 1024 * MiB


@dataclass(frozen=True)
class Sizes:
    """Everything that ``--quick`` shrinks."""

    push: tuple[int, ...] = (256 * MiB, GiB)
    chunked: int = GiB
    chunks: tuple[int, ...] = (8 * MiB, 32 * MiB)
    pull: int = GiB
    pull_parallel: tuple[int, int] = (8, 256 * MiB)
    seconds: float = 10.0
    manifest_clients: tuple[int, ...] = (1, 16, 64)
    head_clients: int = 64
    small: tuple[int, int, int] = (500, 64 * 1024, 32)  # count, size, concurrency
    blobs_per_manifest: int = 10
    tags: int = 1000
    tag_concurrency: int = 16
    list_clients: int = 16
    streams: tuple[int, int] = (8, GiB)  # (h): uploads at once, size of each
    pull_sha256: bool = True  # --pull-check length: count bytes only (is the client the limit?)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(push=(16 * MiB, 64 * MiB), chunked=64 * MiB, chunks=(4 * MiB, 16 * MiB),
                   pull=64 * MiB, pull_parallel=(8, 16 * MiB), seconds=2.0,
                   small=(100, 64 * 1024, 32), tags=100, streams=(8, 64 * MiB))


def size_label(n: int) -> str:
    return f"{n // GiB} GiB" if n >= GiB and n % GiB == 0 else f"{n // MiB} MiB"


@dataclass
class Target:
    """A running server the clients talk to; nginx only serves blob files."""

    kind: str
    port: int
    pid: int
    workdir: Path
    repo: str = "bench/app"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def blob_path(self, blob: Blob) -> str:
        if self.kind == "nginx":
            return f"/blobs/{blob.digest.split(':', 1)[1]}"
        return f"/v2/{self.repo}/blobs/{blob.digest}"

    def provide(self, blob: Blob) -> None:
        """Make ``blob`` pullable: push it, or put the file where nginx serves it."""
        if self.kind == "nginx":
            www = self.workdir / "www"
            www.mkdir(exist_ok=True)
            blob.write_to(www / blob.digest.split(":", 1)[1])
        else:
            clients.push_monolithic(self.port, self.repo, blob)


@dataclass
class Run:
    """One scenario on one target: the figures it measured and what the server used."""

    target: Target
    figures: dict[str, float] = field(default_factory=dict)
    usage: dict[str, Usage] = field(default_factory=dict)

    def measure(self, key: str, fn: Callable[[], object]) -> float:
        """Run ``fn`` metered; returns its wall seconds (the caller turns it into a rate)."""
        meter = Meter(self.target.pid).start()
        started = time.perf_counter()
        try:
            fn()
        finally:
            elapsed = time.perf_counter() - started
            self.usage[key] = meter.stop()
        return elapsed

    def rate(self, key: str, fn: Callable[[], float]) -> None:
        """``fn`` returns a rate itself (wrk, ab)."""
        box: list[float] = []
        self.measure(key, lambda: box.append(fn()))
        self.figures[key] = box[0]


@dataclass(frozen=True)
class Row:
    key: str
    title: str
    unit: str


@dataclass(frozen=True)
class Scenario:
    letter: str
    rows: tuple[Row, ...]
    body: Callable[[Sizes, Run], None]
    nginx: bool = False  # also measured against nginx serving the file (filesystem only)


# --------------------------------------------------------------------------- (a) (b) (h) push


def _a(s: Sizes, run: Run) -> None:
    for i, size in enumerate(s.push):
        blob = Blob(100 + i, size)
        _ = blob.digest  # computed before the clock starts
        t = run.measure(f"a{i + 1}",
                        partial(clients.push_monolithic, run.target.port, "bench/a", blob))
        run.figures[f"a{i + 1}"] = size / MiB / t


def _b(s: Sizes, run: Run) -> None:
    blob = Blob(200, s.chunked)
    _ = blob.digest
    for i, chunk in enumerate(s.chunks):
        repo = f"bench/b{i}"
        t = run.measure(f"b{i + 1}",
                        partial(clients.push_chunked, run.target.port, repo, blob, chunk))
        run.figures[f"b{i + 1}"] = s.chunked / MiB / t
        _delete_blob(run.target, repo, blob)  # the next chunk size must upload it again


def _delete_blob(target: Target, repo: str, blob: Blob) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=60)
    try:
        conn.request("DELETE", f"/v2/{repo}/blobs/{blob.digest}")
        resp = conn.getresponse()
        resp.read()
        if resp.status != 202:
            raise clients.CheckFailed(f"DELETE blob: HTTP {resp.status}")
    finally:
        conn.close()


def _h(s: Sizes, run: Run) -> None:
    count, size = s.streams
    blobs = [Blob(800 + i, size) for i in range(count)]
    for b in blobs:
        _ = b.digest
    jobs: list[tuple[object, ...]] = [
        (clients.push_monolithic, run.target.port, f"bench/h{i}", b) for i, b in enumerate(blobs)
    ]
    t = run.measure("h1", lambda: clients.run_parallel(jobs))
    run.figures["h1"] = count * size / MiB / t


# --------------------------------------------------------------------------- (c) pull


def _c(s: Sizes, run: Run) -> None:
    target = run.target
    one = Blob(300, s.pull)
    streams, size = s.pull_parallel
    shared = Blob(301, size)
    target.provide(one)
    target.provide(shared)
    t = run.measure("c1", lambda: clients.pull(target.port, target.blob_path(one), one,
                                               s.pull_sha256))
    run.figures["c1"] = s.pull / MiB / t
    jobs: list[tuple[object, ...]] = [
        (clients.pull, target.port, target.blob_path(shared), shared, s.pull_sha256)
        for _ in range(streams)
    ]
    t = run.measure("c2", lambda: clients.run_parallel(jobs))
    run.figures["c2"] = streams * size / MiB / t


# --------------------------------------------------------------------------- (d) (e) small reads


def _push_image(run: Run, repo: str, tag: str) -> tuple[SmallBlob, str]:
    """A one-layer image; returns the layer and the manifest digest."""
    config, layer = clients.small_blobs(2, 64 * 1024, f"image-{repo}")
    manifest = clients.image_manifest(config, [layer])

    async def push() -> None:
        pusher = clients.AsyncPusher(run.target.url, 2)
        try:
            await asyncio.gather(pusher.push_blob(repo, config), pusher.push_blob(repo, layer))
            await pusher.put_manifest(repo, tag, manifest)
        finally:
            await pusher.close()

    clients.run_async(push)
    return layer, "sha256:" + hashlib.sha256(manifest).hexdigest()


def _d(s: Sizes, run: Run) -> None:
    _, digest = _push_image(run, "bench/app", "latest")
    url = f"{run.target.url}/v2/bench/app/manifests/latest"
    for i, conns in enumerate(s.manifest_clients):
        run.rate(f"d{i + 1}", partial(
            clients.wrk, url, connections=conns, seconds=s.seconds, workdir=run.target.workdir,
            headers={"Accept": clients.OCI_MANIFEST},
            check=Check(200, "docker-content-digest", digest)))


def _e(s: Sizes, run: Run) -> None:
    layer, _ = _push_image(run, "bench/app", "latest")
    url = f"{run.target.url}/v2/bench/app/blobs/{layer.digest}"

    def head_checked() -> float:
        # wrk 4.1 cannot read HEAD answers; ab checks every status and the length, and the
        # digest header is checked here before and after on as many connections.
        _check_head(run.target, layer, s.head_clients)
        rate = clients.ab(url, connections=s.head_clients, seconds=s.seconds, method="HEAD")
        _check_head(run.target, layer, s.head_clients)
        return rate

    run.rate("e1", head_checked)


def _check_head(target: Target, blob: SmallBlob, count: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=30)
    try:
        for _ in range(count):
            conn.request("HEAD", f"/v2/bench/app/blobs/{blob.digest}")
            resp = conn.getresponse()
            resp.read()
            got = resp.getheader("Docker-Content-Digest")
            if resp.status != 200 or got != blob.digest or resp.getheader(
                    "Content-Length") != str(len(blob.data)):
                raise clients.CheckFailed(f"HEAD blob: HTTP {resp.status} digest {got}")
    finally:
        conn.close()


# --------------------------------------------------------------------------- (f) (g) small writes


def _f(s: Sizes, run: Run) -> None:
    count, size, concurrency = s.small
    blobs = clients.small_blobs(count, size, "small")
    config = clients.small_blobs(1, 512, "small-config")[0]
    per = s.blobs_per_manifest
    manifests = [clients.image_manifest(config, blobs[i : i + per]) for i in range(0, count, per)]
    repo = "bench/small"

    async def push() -> None:
        pusher = clients.AsyncPusher(run.target.url, concurrency)
        try:
            await asyncio.gather(*(pusher.push_blob(repo, b) for b in [config, *blobs]))
            await asyncio.gather(*(pusher.put_manifest(repo, f"m{i:04d}", m)
                                   for i, m in enumerate(manifests)))
        finally:
            await pusher.close()

    t = run.measure("f1", lambda: clients.run_async(push))
    run.figures["f1"] = (count + len(manifests)) / t


def _g(s: Sizes, run: Run) -> None:
    repo = "bench/tags"
    config, layer = clients.small_blobs(2, 4096, "tags")
    tags = [f"t{i:04d}" for i in range(s.tags)]

    async def push_blobs() -> None:
        pusher = clients.AsyncPusher(run.target.url, 2)
        try:
            await asyncio.gather(pusher.push_blob(repo, config), pusher.push_blob(repo, layer))
        finally:
            await pusher.close()

    async def push_tags() -> None:
        pusher = clients.AsyncPusher(run.target.url, s.tag_concurrency)
        try:
            # one build per tag: distinct manifests, as a CI pipeline produces them
            await asyncio.gather(*(pusher.put_manifest(
                repo, tag, clients.image_manifest(config, [layer], note=tag)) for tag in tags))
        finally:
            await pusher.close()

    clients.run_async(push_blobs)
    t = run.measure("g1", lambda: clients.run_async(push_tags))
    run.figures["g1"] = s.tags / t
    base = run.target.url
    run.rate("g2", lambda: clients.wrk(
        f"{base}/v2/{repo}/tags/list", connections=s.list_clients, seconds=s.seconds,
        workdir=run.target.workdir, check=Check(200, body_contains=f'"{tags[-1]}"')))
    run.rate("g3", lambda: clients.wrk(
        f"{base}/v2/_catalog", connections=s.list_clients, seconds=s.seconds,
        workdir=run.target.workdir, check=Check(200, body_contains=f'"{repo}"')))


# --------------------------------------------------------------------------- the table of them


def scenarios(s: Sizes) -> list[Scenario]:
    streams, stream_size = s.pull_parallel
    h_count, h_size = s.streams
    count, size, conc = s.small
    return [
        Scenario("a", tuple(Row(f"a{i + 1}", f"monolithic push {size_label(n)}", "MiB/s")
                            for i, n in enumerate(s.push)), _a),
        Scenario("b", tuple(Row(f"b{i + 1}", f"chunked push {size_label(s.chunked)} in "
                                f"{size_label(c)} PATCHes", "MiB/s")
                            for i, c in enumerate(s.chunks)), _b),
        Scenario("c", (Row("c1", f"pull {size_label(s.pull)}, 1 stream", "MiB/s"),
                       Row("c2", f"pull {streams} x {size_label(stream_size)} in parallel",
                           "MiB/s")), _c, nginx=True),
        Scenario("d", tuple(Row(f"d{i + 1}", f"manifest GET by tag, {c} clients", "req/s")
                            for i, c in enumerate(s.manifest_clients)), _d),
        Scenario("e", (Row("e1", f"blob HEAD, {s.head_clients} clients", "req/s"),), _e),
        Scenario("f", (Row("f1", f"{count} x {size // 1024} KiB blobs + "
                           f"{count // s.blobs_per_manifest} manifests, {conc} clients",
                           "objects/s"),), _f),
        Scenario("g", (Row("g1", f"push {s.tags} tags to one repository", "tags/s"),
                       Row("g2", f"tags list ({s.tags} tags), {s.list_clients} clients", "req/s"),
                       Row("g3", f"catalog, {s.list_clients} clients", "req/s")), _g),
        Scenario("h", (Row("h1", f"{h_count} monolithic pushes of {size_label(h_size)} at once",
                           "MiB/s"),), _h),
    ]
