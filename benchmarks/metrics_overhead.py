"""What the metrics cost per request: `GET /v2/` requests/s of `fastreg serve --workers 2` from
this tree against the same from another checkout (the code before a change to the metrics).

Starts both (each on its own empty filesystem root), then runs Debian's `wrk` against `/v2/` on
each, alternating, and prints each round, the medians and the ratio, in requests/s and in the
servers' CPU time per request (utime + stime of the supervisor and its workers over the run: on a
shared machine this moves much less with the other load than requests/s do). `/v2/` does no
storage call, so what differs is the request path itself: route, metrics, access log, headers.
The figures are printed, never asserted.

    apt-get install -y wrk
    git worktree add /tmp/fastreg-base main
    python benchmarks/metrics_overhead.py --baseline /tmp/fastreg-base [--rounds 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.clients import Check, wrk
from benchmarks.servers import cpu_seconds, start_registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", type=Path, required=True,
                        help="a checkout of fastreg to compare against")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install -y wrk)")
    work = Path(tempfile.mkdtemp(prefix="fastreg-metrics-bench-"))
    trees = {"before": args.baseline.resolve(), "after": REPO_ROOT}
    registries = {}
    try:
        for name, tree in trees.items():
            registries[name] = start_registry("fastreg", work / name, workers=args.workers,
                                              source=tree)
        rates: dict[str, list[float]] = {name: [] for name in trees}
        cpu_us: dict[str, list[float]] = {name: [] for name in trees}

        def run(name: str, seconds: int) -> float:
            url = f"http://127.0.0.1:{registries[name].port}/v2/"
            pid = registries[name].process.pid
            cpu = cpu_seconds(pid)
            rate = wrk(url, connections=args.connections, seconds=seconds, workdir=work,
                       check=Check(status=200))
            cpu_us[name].append((cpu_seconds(pid) - cpu) / (rate * seconds) * 1e6)
            return rate

        for name in trees:
            run(name, 1)  # warm up
            cpu_us[name].clear()
        for i in range(args.rounds):
            for name in trees:
                rates[name].append(run(name, args.seconds))
            print(f"round {i + 1}: before {rates['before'][-1]:9.1f} req/s "
                  f"{cpu_us['before'][-1]:6.1f} us CPU/req   after {rates['after'][-1]:9.1f} "
                  f"req/s {cpu_us['after'][-1]:6.1f} us CPU/req", flush=True)
        before, after = statistics.median(rates["before"]), statistics.median(rates["after"])
        paired = statistics.median(a / b for a, b in zip(rates["after"], rates["before"],
                                                         strict=True))
        print(f"median:  before {before:9.1f} req/s   after {after:9.1f} req/s   "
              f"after/before = {after / before:.3f} ({(1 - after / before) * 100:+.1f}% slower); "
              f"median of per-round ratios {paired:.3f}", flush=True)
        cb, ca = statistics.median(cpu_us["before"]), statistics.median(cpu_us["after"])
        print(f"CPU per request: before {cb:.1f} us   after {ca:.1f} us   "
              f"({(ca / cb - 1) * 100:+.1f}%)", flush=True)
    finally:
        for registry in registries.values():
            registry.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
