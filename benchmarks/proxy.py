"""The pull-through cache (issue 14): fastreg and Distribution as mirrors of one upstream.

The upstream is Debian's `docker-registry` (Distribution 2.8) on an empty filesystem root, with
one ``--size`` MiB blob pushed to it. For each mirror kind (fastreg ``--workers 2``, Distribution
in ``proxy:`` mode), started fresh on an empty root with the same ``config.yml``, it measures:

- direct: the blob pulled straight from the upstream (the reference of the cold pull);
- cold: the first pull through the mirror (fetched from the upstream while served), and the
  mirror's CPU seconds for it (its processes' user + system time, per GiB): on a machine whose
  cores the client, the upstream and the mirror share, CPU bounds the cold rate;
- warm: the next pull, from the mirror's storage, against the same pull from a plain registry
  of the same kind (not a mirror) holding the blob;
- cold x N: a fresh mirror, ``--clients`` clients pulling the cold blob at once: their aggregate
  rate (against one client's cold pull), and how many bytes the upstream served for it (from its
  access log).

Every pull checks the length and sha256. Figures are medians over ``--rounds`` and printed,
never asserted.

    python -m benchmarks.proxy [--size 1024] [--rounds 3] [--clients 8]

Must not import fastreg: the servers are black boxes started as processes.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import clients
from benchmarks.clients import Blob
from benchmarks.servers import Registry, cpu_seconds, start_registry

MiB = 1024 * 1024
REPO = "bench/proxy"
KINDS = ("fastreg", "distribution")


def _timed(fn: object, *args: object) -> float:
    t0 = time.perf_counter()
    fn(*args)  # type: ignore[operator]
    return time.perf_counter() - t0


def _own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)  # the client: pulls run in this process
    return r.ru_utime + r.ru_stime


def _budget(f: dict[str, list[float]], label: str, pids: list[int], fn: object, *args: object) -> float:
    """Time ``fn`` and record the CPU seconds the client and each of ``pids`` (upstream, then
    mirror) spent meanwhile, and how busy they kept the machine's cores; the wall time."""
    before = [_own_cpu(), *(cpu_seconds(p) for p in pids)]
    wall = _timed(fn, *args)
    spent = [b - a for a, b in zip(before, [_own_cpu(), *(cpu_seconds(p) for p in pids)])]
    for name, value in zip(("client", "upstream", "mirror"), spent):
        f.setdefault(f"{label} CPU {name}", []).append(value)
    f.setdefault(f"{label} busy %", []).append(100 * sum(spent) / (wall * (os.cpu_count() or 1)))
    return wall


def _upstream_bytes(upstream: Registry, digest: str) -> int:
    """Bytes of the blob the upstream answered with, summed over its access log's GET lines."""
    pattern = re.compile(rf'"GET /v2/{re.escape(REPO)}/blobs/{re.escape(digest)} HTTP/1\.1" 20[06] (\d+)')
    text = upstream.process.log_path.read_text(errors="replace")
    return sum(int(m.group(1)) for m in pattern.finditer(text))


def _mirror(kind: str, work: Path, upstream: Registry) -> Registry:
    return start_registry(kind, work, extra=f"proxy:\n  remoteurl: {upstream.url}\n")


def run(size: int, rounds: int, n: int, tmp: Path) -> dict[str, dict[str, list[float]]]:
    upstream = start_registry("distribution", tmp / "upstream", accesslog=True)
    blob = Blob(900, size)
    path = f"/v2/{REPO}/blobs/{blob.digest}"
    plain = {kind: start_registry(kind, tmp / f"plain-{kind}") for kind in KINDS}
    figures: dict[str, dict[str, list[float]]] = {}
    try:
        clients.push_monolithic(upstream.port, REPO, blob)
        for registry in plain.values():
            clients.push_monolithic(registry.port, REPO, blob)
        for r in range(rounds):
            for kind in (KINDS if r % 2 == 0 else KINDS[::-1]):
                f = figures.setdefault(kind, {"direct": [], "cold": [], "warm": [], "plain": [],
                                              "cold xN": [], "upstream MiB for xN": [],
                                              "cold CPU s/GiB": []})
                print(f"  round {r + 1}/{rounds} {kind} ...", file=sys.stderr, flush=True)
                wall = _budget(f, "direct", [upstream.process.pid], clients.pull, upstream.port, path, blob)
                f["direct"].append(size / MiB / wall)
                f["plain"].append(size / MiB / _timed(clients.pull, plain[kind].port, path, blob))
                mirror = _mirror(kind, tmp / f"{kind}-{r}", upstream)
                try:
                    cpu = cpu_seconds(mirror.process.pid)
                    pids = [upstream.process.pid, mirror.process.pid]
                    f["cold"].append(size / MiB / _budget(f, "cold", pids, clients.pull, mirror.port, path, blob))
                    time.sleep(0.5)  # the commit may end after the response
                    f["cold CPU s/GiB"].append((cpu_seconds(mirror.process.pid) - cpu) * MiB * 1024 / size)
                    f["warm"].append(size / MiB / _timed(clients.pull, mirror.port, path, blob))
                finally:
                    mirror.stop()
                    shutil.rmtree(tmp / f"{kind}-{r}", ignore_errors=True)
                before = _upstream_bytes(upstream, blob.digest)
                mirror = _mirror(kind, tmp / f"{kind}-{r}-n", upstream)
                try:
                    jobs = [(clients.pull, mirror.port, path, blob) for _ in range(n)]
                    t = _timed(clients.run_parallel, jobs)
                    f["cold xN"].append(n * size / MiB / t)
                    time.sleep(0.5)  # the access log line is written after the response
                    f["upstream MiB for xN"].append((_upstream_bytes(upstream, blob.digest) - before) / MiB)
                finally:
                    mirror.stop()
                    shutil.rmtree(tmp / f"{kind}-{r}-n", ignore_errors=True)
    finally:
        upstream.stop()
        for registry in plain.values():
            registry.stop()
    return figures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=1024, help="blob size in MiB (1024)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clients", type=int, default=8, help="clients of the cold x N pull (8)")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fastreg-proxy-bench-"))
    try:
        figures = run(args.size * MiB, args.rounds, args.clients, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{args.size} MiB blob, {args.rounds} rounds (medians), cold x N with {args.clients} clients\n")
    print("| mirror | direct from upstream MiB/s | cold MiB/s | cold / direct | warm MiB/s "
          "| plain registry MiB/s | warm / plain | cold x N aggregate MiB/s | x N / cold "
          "| upstream MiB served for x N | mirror CPU s per GiB, cold |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for kind, f in figures.items():
        m = {k: statistics.median(v) for k, v in f.items()}
        print(f"| {kind} | {m['direct']:.0f} | {m['cold']:.0f} | {m['cold'] / m['direct']:.2f}x "
              f"| {m['warm']:.0f} | {m['plain']:.0f} | {m['warm'] / m['plain']:.2f}x "
              f"| {m['cold xN']:.0f} | {m['cold xN'] / m['cold']:.2f}x "
              f"| {m['upstream MiB for xN']:.0f} | {m['cold CPU s/GiB']:.2f} |")
    print("\nCPU seconds of one pull (the client hashes what it reads; busy: all of them over "
          f"{os.cpu_count()} cores x the pull's wall time)\n")
    print("| mirror | pull | client CPU s | upstream CPU s | mirror CPU s | busy |")
    print("|---|---|---|---|---|---|")
    for kind, f in figures.items():
        m = {k: statistics.median(v) for k, v in f.items()}
        for label in ("direct", "cold"):
            mirror_cpu = f"{m[f'{label} CPU mirror']:.2f}" if f"{label} CPU mirror" in m else "-"
            print(f"| {kind} | {label} | {m[f'{label} CPU client']:.2f} | "
                  f"{m[f'{label} CPU upstream']:.2f} | {mirror_cpu} | {m[f'{label} busy %']:.0f} % |")
    for kind, f in figures.items():  # the spread behind each median
        print(f"\n{kind}: " + "; ".join(f"{k} " + " ".join(f"{x:.3g}" for x in v) for k, v in f.items()))

if __name__ == "__main__":
    main()
