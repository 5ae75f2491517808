"""Resident memory under stalled and aborted uploads: fastreg and Distribution side by side.

The hostile client of issue 12 (finding 3): in each round it starts ``--count`` uploads, opens a
PATCH on each that announces a large Content-Length, sends ``--partial`` KiB of the body and then
stops (the PATCH stalls mid-body), and once all of them are stalled it resets every connection
(RST, SO_LINGER 0). For each server (started fresh on an empty filesystem root, the same
Distribution ``config.yml`` for both) it prints the RSS of the whole process tree (the sum over
the workers with ``--workers N``) before the rounds, while the PATCHes of a round are stalled
(and that minus the round's start, per stalled PATCH) and after each round, once nothing is in
flight. Figures are printed, never asserted (tests/integration/test_memory.py asserts a bound).

    python -m benchmarks.memory [--rounds 5] [--count 200] [--workers 1] [--servers fastreg]

Must not import fastreg: the servers are black boxes started as processes.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import socket
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.servers import Registry, process_tree, rss_kib, start_registry

KiB = 1024
MiB = 1024 * KiB
ANNOUNCED = 64 * MiB  # the Content-Length a stalled PATCH promises and never delivers
SETTLE_TIMEOUT = 20.0
SETTLE_SECONDS = 3.0  # longer than a server waits to return freed memory (fastreg: 1-2 s)


@dataclass
class Round:
    """RSS (MiB, the whole tree) while a round's PATCHes are stalled and once they are gone."""

    start: float
    during: float
    after: float
    count: int

    @property
    def per_patch_kib(self) -> float:
        return (self.during - self.start) * KiB / self.count


@dataclass
class Figures:
    kind: str
    before: float
    rounds: list[Round] = field(default_factory=list)
    fds_before: int = 0
    fds_after: int = 0


def rss_mib(pid: int) -> float:
    return rss_kib(pid)[0] / KiB


def open_fds(pid: int) -> int:
    total = 0
    for p in process_tree(pid):
        try:
            total += len(os.listdir(f"/proc/{p}/fd"))
        except OSError:
            pass
    return total


def settled_rss(pid: int, timeout: float = SETTLE_TIMEOUT) -> float:
    """The tree's RSS once it stops moving (``SETTLE_SECONDS`` within 1 MiB): the server has
    read what was sent, or has let go of what an aborted request held."""
    samples = [rss_mib(pid)]
    window = int(SETTLE_SECONDS / 0.2) + 1
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.2)
        samples.append(rss_mib(pid))
        recent = samples[-window:]
        if len(recent) == window and max(recent) - min(recent) < 1.0:
            break
    return samples[-1]


def start_uploads(port: int, repo: str, count: int) -> list[str]:
    """``count`` upload sessions (POST), their paths from Location; one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    paths = []
    try:
        for _ in range(count):
            conn.request("POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
            resp = conn.getresponse()
            resp.read()
            location = resp.getheader("Location") or ""
            if resp.status != 202 or "/v2/" not in location:
                raise RuntimeError(f"POST upload answered {resp.status} {location!r}")
            paths.append(location[location.index("/v2/"):])
    finally:
        conn.close()
    return paths


def stall(port: int, path: str, partial: bytes) -> socket.socket:
    """A PATCH that sends its headers and ``partial`` of ANNOUNCED bytes, then nothing more."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {ANNOUNCED}\r\n\r\n")
    sock.sendall(head.encode() + partial)
    return sock


def abort(sock: socket.socket) -> None:
    """Reset the connection (SO_LINGER 0): the server sees the PATCH fail mid-body."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@contextmanager
def stalled(port: int, repo: str, count: int, partial_kib: int) -> Iterator[None]:
    """``count`` uploads, each with a PATCH stalled mid-body, aborted when the block ends."""
    partial = os.urandom(partial_kib * KiB)
    socks: list[socket.socket] = []
    try:
        for path in start_uploads(port, repo, count):
            socks.append(stall(port, path, partial))
        yield
    finally:
        for sock in socks:
            abort(sock)


def run_rounds(pid: int, port: int, rounds: int, count: int, partial_kib: int,
               on_round: Callable[[int, Round], None] | None = None) -> tuple[float, list[Round]]:
    """RSS before the rounds, and each round's figures; the tree of ``pid`` serves ``port``."""
    before = start = settled_rss(pid)
    done: list[Round] = []
    for i in range(rounds):
        with stalled(port, "bench/memory", count, partial_kib):
            during = settled_rss(pid)
        result = Round(start, during, settled_rss(pid), count)
        done.append(result)
        start = result.after  # settled: where the next round starts
        if on_round is not None:
            on_round(i, result)
    return before, done


def measure(kind: str, args: argparse.Namespace, base: Path) -> Figures:
    workdir = base / kind
    reg: Registry = start_registry(kind, workdir, workers=args.workers)
    try:
        pid = reg.process.pid
        fds = open_fds(pid)

        def show(i: int, r: Round) -> None:
            print(f"  {kind:12} round {i + 1}: during {r.during:7.1f} MiB "
                  f"({r.per_patch_kib:6.0f} KiB per stalled PATCH)  after {r.after:7.1f} MiB",
                  file=sys.stderr, flush=True)

        before, rounds = run_rounds(pid, reg.port, args.rounds, args.count, args.partial, show)
        return Figures(kind, before, rounds, fds, open_fds(pid))
    finally:
        reg.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def table(figures: list[Figures], args: argparse.Namespace) -> str:
    lines = [
        (f"RSS in MiB (whole process tree; fastreg --workers {args.workers}), {args.rounds} "
         f"rounds of {args.count} PATCHes stalled after {args.partial} KiB of a "
         f"{ANNOUNCED // MiB} MiB body, then reset by the client"),
        "",
        "| server | before | " + " | ".join(
            f"round {i + 1} during / after" for i in range(args.rounds)) +
        " | KiB per stalled PATCH (max) | after - before | fds before / after |",
        "|---|---:|" + "---:|" * args.rounds + "---:|---:|---:|",
    ]
    for f in figures:
        cells = [f"{r.during:.0f} / {r.after:.0f}" for r in f.rounds]
        worst = max((r.per_patch_kib for r in f.rounds), default=0.0)
        growth = f.rounds[-1].after - f.before if f.rounds else 0.0
        lines.append(f"| {f.kind} | {f.before:.0f} | " + " | ".join(cells) +
                     f" | {worst:.0f} | {growth:+.0f} | {f.fds_before} / {f.fds_after} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory",
                                description=(__doc__ or "").split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--count", type=int, default=200, help="PATCHes stalled at once per round")
    p.add_argument("--partial", type=int, default=1536,
                   help="KiB of the body each PATCH sends before it stalls (default 1536)")
    p.add_argument("--workers", type=int, default=1, help="fastreg --workers (default 1)")
    p.add_argument("--servers", default="fastreg,distribution",
                   help="comma-separated among fastreg, distribution")
    p.add_argument("--tmp", type=Path, default=None,
                   help="where server roots go (default $BENCH_TMP or the system temp dir)")
    args = p.parse_args(argv)
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    if not kinds or set(kinds) - {"fastreg", "distribution"}:
        p.error(f"--servers: {args.servers!r}; use fastreg and/or distribution")
    if "distribution" in kinds and shutil.which("docker-registry") is None:
        sys.exit("bench-memory: docker-registry is missing (run ./scripts/system-deps.sh bench)")
    parent = args.tmp or Path(os.environ.get("BENCH_TMP") or tempfile.gettempdir())
    base = Path(tempfile.mkdtemp(prefix="fastreg-memory-", dir=parent))
    try:
        figures = [measure(kind, args, base) for kind in kinds]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(table(figures, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
