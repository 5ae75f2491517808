"""The benchmark harness still runs: a --quick pass of the scenarios that need no load tool.

Checks that both servers start, every answer passes the clients' checks and the table is
complete; the figures themselves are never asserted (they are noise on a shared machine).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import REPO_ROOT

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("storage", ["filesystem", "s3"])
def test_quick_bench_fills_the_table(tmp_path: Path, storage: str) -> None:
    """On s3 this also proves Distribution starts on the harness's config, which carries
    fastreg's `storage.cache.tags` key and a Redis of its own."""
    results = tmp_path / "RESULTS.md"
    argv = [sys.executable, "-m", "benchmarks.bench", "--quick", "--scenarios", "a,f",
            "--storage", storage, "--tmp", str(tmp_path), "--results", str(results)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False,
                          cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = results.read_text()
    assert f"python -m benchmarks.bench --quick --scenarios a,f --storage {storage}" in text
    for key in ("a1", "a2", "f1"):
        row = re.search(rf"^\| {key} \|(.*)$", text, re.MULTILINE)
        assert row is not None, text
        cells = [c.strip() for c in row.group(1).split("|")]
        # scenario, unit, fastreg, Distribution, ratio, CPU s x2, RSS x2
        assert re.fullmatch(r"[\d,.]+", cells[2]) and re.fullmatch(r"[\d,.]+", cells[3]), row[0]
        assert re.fullmatch(r"[\d.]+x", cells[4]), row[0]
    assert list(tmp_path.glob("fastreg-bench-*")) == []  # roots are removed


def test_proxy_bench_fills_the_table() -> None:
    """benchmarks/proxy.py runs both mirrors against one upstream and reads the upstream's log:
    with 2 clients on a fresh fastreg mirror (2 workers) the upstream served the blob at most
    once per worker (one fetch per process); Distribution's count is only printed."""
    argv = [sys.executable, "-m", "benchmarks.proxy", "--size", "16", "--rounds", "1",
            "--clients", "2"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False,
                          cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rates, _, budget = proc.stdout.partition("CPU seconds of one pull")
    table = re.finditer(r"^\| (fastreg|distribution) \|(.*)\|$", rates, re.MULTILINE)
    rows = {m.group(1): [c.strip() for c in m.group(2).split("|")] for m in table}
    assert set(rows) == {"fastreg", "distribution"}, proc.stdout
    for cells in rows.values():
        assert all(re.fullmatch(r"[\d.]+x?", c) for c in cells), cells
    header = re.search(r"^\| mirror \|(.*)\|$", rates, re.MULTILINE)
    assert header is not None, proc.stdout
    columns = [c.strip() for c in header.group(1).split("|")]
    fastreg = dict(zip(columns, rows["fastreg"], strict=True))
    assert 16 <= float(fastreg["upstream MiB served for x N"]) <= 32, fastreg
    assert float(fastreg["mirror CPU s per GiB, cold"]) > 0, fastreg
    # the CPU of each party in one pull: the mirror has none in a direct pull
    cpu = {(m.group(1), m.group(2)): m.group(3).split(" | ") for m in re.finditer(
        r"^\| (fastreg|distribution) \| (direct|cold) \| (.*) \|$", budget, re.MULTILINE)}
    assert len(cpu) == 4, budget
    for (_, pull), (client, upstream, mirror, busy) in cpu.items():
        assert float(client) > 0 and float(upstream) > 0 and busy.endswith(" %"), cpu
        assert (mirror == "-") == (pull == "direct"), cpu
