"""fastreg against CNCF Distribution 2.8 (Debian's docker-registry): the benchmark of issue 6.

Each scenario runs several rounds; in every round each server is started fresh on an empty root
(a filesystem directory, or its own SeaweedFS bucket with ``--storage s3``), the same client drives
it, and the servers take turns going first. Prints a markdown table (medians, ratio fastreg /
Distribution, server CPU seconds and peak RSS) and appends it to benchmarks/RESULTS.md.

    python -m benchmarks.bench                         # everything on the filesystem, 3 rounds
    python -m benchmarks.bench --quick                 # small sizes, 1 round: checks the harness
    python -m benchmarks.bench --storage s3 --scenarios a,c,g
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from benchmarks import report
from benchmarks.scenarios import GiB as _GiB
from benchmarks.scenarios import Run, Scenario, Sizes, Target, scenarios
from benchmarks.seaweed import Weed
from benchmarks.seaweed import running as seaweed_running
from benchmarks.servers import ServerError, start_nginx, start_registry

REPO_ROOT = Path(__file__).resolve().parents[1]
TOOLS = {"docker-registry": "docker-registry", "wrk": "wrk", "ab": "apache2-utils",
         "redis-server": "redis-server",
         "nginx": "nginx"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench",
                                description=(__doc__ or "").split("\n")[0])
    p.add_argument("--storage", choices=("filesystem", "s3"), default="filesystem")
    p.add_argument("--rounds", type=int, default=None, help="rounds per scenario (3; --quick 1)")
    p.add_argument("--scenarios", default="a,b,c,d,e,f,g,h",
                   help="comma-separated letters among a..h (default: all)")
    p.add_argument("--quick", action="store_true", help="small sizes, short runs: a smoke test")
    p.add_argument("--seconds", type=float, default=None,
                   help="duration of each wrk/ab run (10; --quick 2)")
    p.add_argument("--workers", type=int, default=2, help="fastreg --workers (default 2)")
    p.add_argument("--pull-check", choices=("sha256", "length"), default="sha256",
                   help="how (c) checks pulled blobs; 'length' only to see whether the client's "
                        "hashing limits the pull rate")
    p.add_argument("--tmp", type=Path, default=None,
                   help="where server roots go (default $BENCH_TMP or the system temp dir)")
    p.add_argument("--results", type=Path, default=REPO_ROOT / "benchmarks" / "RESULTS.md",
                   help="markdown file the dated section is appended to")
    p.add_argument("--no-results", action="store_true", help="print the table only")
    args = p.parse_args(argv)
    letters = [x.strip() for x in args.scenarios.split(",") if x.strip()]
    unknown = sorted(set(letters) - set("abcdefgh"))
    if unknown or not letters:
        p.error(f"--scenarios: unknown {unknown or 'empty list'}; use letters a..h")
    args.letters = letters
    args.rounds = args.rounds or (1 if args.quick else 3)
    return args


# the tools each scenario runs besides the two registries
SCENARIO_TOOLS = {"c": ["nginx"], "d": ["wrk"], "e": ["ab"], "g": ["wrk"]}


def check_tools(letters: list[str], storage: str) -> None:
    need = ["docker-registry"] + [t for x in letters for t in SCENARIO_TOOLS.get(x, [])
                                  if not (t == "nginx" and storage == "s3")]
    if storage == "s3":
        need.append("redis-server")
    missing = [TOOLS[t] for t in need if shutil.which(t) is None and not Path(f"/usr/sbin/{t}")
               .exists()]
    if missing:
        sys.exit(f"bench: missing {' '.join(missing)} (run ./scripts/system-deps.sh bench)")


def disk_needed(sizes: Sizes, letters: list[str]) -> int:
    """The most one scenario keeps on disk at once (two copies: server root + page cache)."""
    per = {"a": sum(sizes.push), "b": sizes.chunked, "c": sizes.pull + sizes.pull_parallel[1],
           "h": sizes.streams[0] * sizes.streams[1]}
    return 2 * max([per.get(x, 0) for x in letters] + [_GiB // 4])


class Stoppable(Protocol):
    def stop(self) -> None: ...


@contextlib.contextmanager
def s3_backend(args: argparse.Namespace, base: Path) -> Iterator[Weed | None]:
    if args.storage != "s3":
        yield None
        return
    with seaweed_running(base / "seaweedfs") as weed:
        yield weed


def start_target(kind: str, workdir: Path, args: argparse.Namespace, weed: Weed | None,
                 bucket: str) -> tuple[Target, Stoppable]:
    """A fresh server of ``kind`` on an empty root (or bucket), and what stops it."""
    if kind == "nginx":
        www = workdir / "www"
        www.mkdir(parents=True)
        proc, port = start_nginx(workdir, www)
        return Target(kind, port, proc.pid, workdir), proc
    s3 = weed.bucket(bucket) if weed is not None else None
    reg = start_registry(kind, workdir, s3=s3, workers=args.workers)
    return Target(kind, reg.port, reg.process.pid, workdir), reg


def run_scenario(sc: Scenario, sizes: Sizes, args: argparse.Namespace, base: Path,
                 weed: Weed | None, results: report.Results) -> None:
    kinds = ["fastreg", "distribution"]
    if sc.nginx and args.storage == "filesystem":
        kinds.append("nginx")
    for rnd in range(args.rounds):
        order = kinds[rnd % len(kinds):] + kinds[: rnd % len(kinds)]
        for kind in order:
            workdir = base / f"{sc.letter}-{rnd}-{kind}"
            bucket = f"bench-{sc.letter}-{rnd}-{kind}-{os.getpid()}"
            label = f"({sc.letter}) round {rnd + 1}/{args.rounds} {kind}"
            print(f"  {label} ...", end="", flush=True, file=sys.stderr)
            started = time.monotonic()
            stopper: Stoppable | None = None
            run: Run | None = None
            try:
                target, stopper = start_target(kind, workdir, args, weed, bucket)
                run = Run(target)
                sc.body(sizes, run)
                print(f" {time.monotonic() - started:.0f}s", file=sys.stderr)
            except Exception as exc:  # noqa: BLE001 - a failed round is reported, others go on
                print(" FAILED", file=sys.stderr)
                traceback.print_exc(file=sys.stderr)
                msg = f"{type(exc).__name__}: {exc}"
                for row in sc.rows:
                    if run is None or row.key not in run.figures:
                        results.fail(row.key, kind, msg)
            finally:
                if stopper is not None:
                    stopper.stop()
                if weed is not None and kind != "nginx":
                    weed.drop_bucket(bucket)
                shutil.rmtree(workdir, ignore_errors=True)
                os.sync()  # the next server should not pay for this one's write-back
            if run is not None:
                for key, value in run.figures.items():
                    results.add(key, kind, value, run.usage.get(key))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.seconds:
        sizes = dataclasses.replace(sizes, seconds=args.seconds)
    if args.pull_check == "length":
        sizes = dataclasses.replace(sizes, pull_sha256=False)
    check_tools(args.letters, args.storage)
    chosen = [sc for sc in scenarios(sizes) if sc.letter in args.letters]
    tmp_parent = args.tmp or Path(os.environ.get("BENCH_TMP") or tempfile.gettempdir())
    tmp_parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(tmp_parent).free
    if free < disk_needed(sizes, args.letters):
        sys.exit(f"bench: {tmp_parent} has {free / _GiB:.1f} GiB free, needs about "
                 f"{disk_needed(sizes, args.letters) / _GiB:.1f} GiB (use --tmp)")
    results = report.Results(rows=[row for sc in chosen for row in sc.rows])
    load_start = os.getloadavg()[0]
    base = Path(tempfile.mkdtemp(prefix="fastreg-bench-", dir=tmp_parent))
    print(f"bench: {args.storage}, {args.rounds} round(s), scenarios {','.join(args.letters)}, "
          f"roots under {base}", file=sys.stderr)
    try:
        with s3_backend(args, base) as weed:
            for sc in chosen:
                run_scenario(sc, sizes, args, base, weed, results)
    except ServerError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(base, ignore_errors=True)
    quick = (f"--quick: small sizes, {args.rounds} round(s): a harness check, or a scenario "
             "too slow at full size, not the issue's sizes")
    notes = [quick] if args.quick else []
    if args.pull_check == "length":
        notes.append("--pull-check length: pulled blobs checked by length only, not hashed")
    if args.storage == "s3":
        notes.append("S3: one SeaweedFS (weed) on 127.0.0.1, a fresh bucket per server and "
                     "round; redirect.disable so pulls go through the registry")
        notes.append("caches: each server gets a fresh redis-server; both cache blob descriptors "
                     "there (`storage.cache.blobdescriptor: redis`), fastreg also tag lists "
                     "(`storage.cache.tags: redis`, default `tagsttl` 2s)")
    text = report.section(results, storage=args.storage, rounds=args.rounds,
                          workers=args.workers, notes=notes,
                          load=(load_start, os.getloadavg()[0]))
    print(text)
    if not args.no_results:
        report.append(args.results, text)
        print(f"bench: appended to {args.results}", file=sys.stderr)
    return 1 if results.failed else 0


if __name__ == "__main__":
    sys.exit(main())
