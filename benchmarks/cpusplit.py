"""Where the machine's CPU goes while a benchmark runs: seconds per kind of process.

The bench reports each registry's own CPU; on S3 scenarios SeaweedFS and the client share the
same 2 cores, and this shows how much each took. Run it beside the bench, e.g.

    python benchmarks/cpusplit.py 80 &
    python -m benchmarks.bench --storage s3 --scenarios f --rounds 3 --no-results

It samples /proc every half second and sums CPU seconds per kind (fastreg with its workers,
distribution, seaweedfs, redis, client), split by phase: while a Distribution server is up or
while none is (the bench runs one server at a time).
"""

from __future__ import annotations

import collections
import os
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")
KINDS = (("weed", "seaweedfs"), ("docker-registry", "distribution"), ("fastreg", "fastreg"),
         ("redis-server", "redis"), ("benchmarks.bench", "client"), ("wrk", "client"),
         ("ab ", "client"))  # fmt: skip


def sample() -> dict[int, tuple[str, int, float]]:
    """pid -> (cmdline, parent pid, CPU seconds) of every process."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        found[int(entry)] = (cmd, int(fields[1]), (int(fields[11]) + int(fields[12])) / HZ)
    return found


def kind_of(pid: int, procs: dict[int, tuple[str, int, float]]) -> str | None:
    """A process's kind, or its parent's (fastreg's spawned workers name no module)."""
    for _ in range(3):
        if pid not in procs:
            return None
        cmd, parent, _ = procs[pid]
        for needle, kind in KINDS:
            if needle in cmd:
                return kind
        pid = parent
    return None


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    totals: collections.Counter[tuple[str, str]] = collections.Counter()
    before = sample()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.5)
        now = sample()
        kinds = {pid: kind_of(pid, now) for pid in now}
        phase = "distribution up" if "distribution" in kinds.values() else "no distribution"
        for pid, (_, _, cpu) in now.items():
            if kinds[pid] and pid in before:
                totals[(phase, kinds[pid])] += cpu - before[pid][2]
        before = now
    for (phase, kind), cpu in sorted(totals.items()):
        print(f"{phase:16s} {kind:13s} {cpu:7.2f} CPU s")


if __name__ == "__main__":
    main()
