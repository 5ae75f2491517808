"""Collect the figures of every round and render the table (median per server, ratios).

The table is markdown: printed as is, and appended to ``benchmarks/RESULTS.md`` in a dated
section with the command that produced it and the machine (cores, CPU model).
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.scenarios import Row
from benchmarks.servers import Usage


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    figures: dict[str, dict[str, list[float]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    usage: dict[str, dict[str, list[Usage]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    errors: dict[str, dict[str, list[str]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list)))

    def add(self, key: str, kind: str, figure: float, usage: Usage | None) -> None:
        self.figures[key][kind].append(figure)
        if usage is not None:
            self.usage[key][kind].append(usage)

    def fail(self, key: str, kind: str, message: str) -> None:
        self.errors[key][kind].append(message)

    @property
    def failed(self) -> bool:
        return any(v for per in self.errors.values() for v in per.values())

    def median(self, key: str, kind: str) -> float | None:
        values = self.figures[key].get(kind)
        return statistics.median(values) if values else None

    def cpu(self, key: str, kind: str) -> float | None:
        values = [u.cpu_s for u in self.usage[key].get(kind, [])]
        return statistics.median(values) if values else None

    def rss(self, key: str, kind: str) -> float | None:
        values = [u.peak_rss_mib for u in self.usage[key].get(kind, [])]
        return max(values) if values else None


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def _cell(results: Results, key: str, kind: str) -> str:
    if results.errors[key].get(kind) and not results.figures[key].get(kind):
        return "FAIL"
    return _num(results.median(key, kind))


def table(results: Results) -> str:
    with_nginx = any(results.figures[r.key].get("nginx") for r in results.rows)
    head = ["", "scenario", "unit", "fastreg", "Distribution", "fastreg / Distribution"]
    if with_nginx:
        head += ["nginx sendfile", "fastreg / nginx"]
    head += ["CPU s fastreg", "CPU s Distribution", "peak RSS MiB fastreg",
             "peak RSS MiB Distribution"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in results.rows:
        f, d = results.median(row.key, "fastreg"), results.median(row.key, "distribution")
        cells = [row.key, row.title, row.unit, _cell(results, row.key, "fastreg"),
                 _cell(results, row.key, "distribution"), _ratio(f, d)]
        if with_nginx:
            n = results.median(row.key, "nginx")
            cells += [_cell(results, row.key, "nginx") if n is not None else "", _ratio(f, n)
                      if n is not None else ""]
        cells += [_num(results.cpu(row.key, "fastreg"), 2),
                  _num(results.cpu(row.key, "distribution"), 2),
                  _num(results.rss(row.key, "fastreg"), 0),
                  _num(results.rss(row.key, "distribution"), 0)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def error_lines(results: Results) -> list[str]:
    out = []
    for key, per in results.errors.items():
        for kind, messages in per.items():
            for m in messages:
                lines = [x for x in m.splitlines() if x.strip()]
                out.append(f"{key} {kind}: {' / '.join(lines[:3])[:400]}")
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def section(results: Results, *, storage: str, rounds: int, workers: int, notes: list[str],
            load: tuple[float, float]) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = "python -m benchmarks.bench " + shlex.join(sys.argv[1:])
    machine = f"{os.cpu_count()} cores, {cpu_model()}, {platform.system()} {platform.release()}"
    body = [
        f"## {now} - {storage}",
        "",
        f"- command: `{command}`",
        f"- machine: {machine}",
        (f"- load average (1 min) at start {load[0]:.1f}, at end {load[1]:.1f}: work besides "
         "the benchmark's own makes the figures noisy"),
        (f"- rounds: {rounds}, servers alternating; figures are medians, higher is better; "
         "CPU s is the server's (whole process tree) during the measured phase, median; "
         "peak RSS is the largest single server process (one fastreg worker), highest round"),
        (f"- fastreg `--workers {workers}`; Distribution: Debian `docker-registry` "
         f"{_distribution_version()}"),
        *[f"- {n}" for n in notes],
        "",
        table(results),
        "",
    ]
    errors = error_lines(results)
    if errors:
        body += ["Failures:", "", *[f"- {e}" for e in errors], ""]
    return "\n".join(body)


def _distribution_version() -> str:
    try:
        import subprocess

        out = subprocess.run(["docker-registry", "--version"], capture_output=True, text=True,
                             timeout=10, check=False)
        return out.stdout.split()[2] if len(out.stdout.split()) > 2 else out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "(version unknown)"


def append(path: Path, text: str) -> None:
    if not path.exists():
        path.write_text(
            "# Benchmark results\n\n"
            "Made by `make bench` (`python -m benchmarks.bench`); newest last. Each section names the\n"
            "command and the machine. Figures from a busy machine are noise: compare ratios from one\n"
            "section only, never across sections.\n\n")
    with path.open("a") as f:
        f.write(text + "\n")
