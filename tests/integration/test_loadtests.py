"""Short headless runs of every locust suite in loadtests/ against a real fastreg.

What is asserted is correctness under concurrency (no failed request, every kind of request the
suite is about was made), never a timing. A run against a read-only registry proves that the
suites' checks do report failures.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import REPO_ROOT, ServerFactory

pytestmark = pytest.mark.integration

RUN = REPO_ROOT / "loadtests" / "run.py"
RUN_TIME = "6s"  # 4 s ended inside the first round on a loaded machine

# suite -> request names (locust's "Name" column) its run must contain
SUITES = {
    "push": ["HEAD /v2/[repo]/blobs/[digest]", "POST /v2/[repo]/blobs/uploads/?mount",
             "PATCH [upload] (chunked)", "PATCH [upload] (streamed)",
             "PUT [upload]?digest", "PUT /v2/[repo]/manifests/[tag]"],
    "pull": ["GET /v2/[repo]/manifests/[tag]", "GET /v2/[repo]/blobs/[digest]"],
    "ci": ["GET /v2/[repo]/manifests/[tag]", "GET /v2/[repo]/blobs/[digest]",
           "PATCH [upload] (streamed)", "PUT /v2/[repo]/manifests/[tag]"],
    "release": ["PATCH [upload] (chunked)", "PUT [upload]?digest (monolithic)",
                "GET /v2/[repo]/tags/list", "GET /v2/[repo]/manifests/[tag]"],
}


def run_suite(suite: str, out: Path, *extra: str) -> tuple[int, str]:
    argv = [sys.executable, str(RUN), "--suite", suite, "--run-time", RUN_TIME, "--users", "4",
            "--spawn-rate", "4", "--out", str(out), *extra]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False,
                          cwd=REPO_ROOT)
    return proc.returncode, proc.stdout + proc.stderr


def stats(out: Path, suite: str) -> dict[str, tuple[int, int]]:
    """Request name -> (requests, failures), from locust's CSV."""
    with open(out / f"{suite}_stats.csv", newline="") as f:
        return {row["Name"]: (int(row["Request Count"]), int(row["Failure Count"]))
                for row in csv.DictReader(f)}


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_suite_runs_clean(suite: str, fastreg_server: ServerFactory, tmp_path: Path) -> None:
    server = fastreg_server(tmp_path / "root")
    out = tmp_path / "out"
    rc, output = run_suite(suite, out, "--host", server.url)
    table = stats(out, suite)
    requests, failures = table["Aggregated"]
    assert failures == 0, output[-4000:]
    assert rc == 0, output[-4000:]
    assert requests > 0
    missing = [name for name in SUITES[suite] if table.get(name, (0, 0))[0] == 0]
    assert not missing, f"{suite}: no {missing} in {sorted(table)}"
    assert (out / f"{suite}.html").stat().st_size > 0


def test_token_suite_on_its_own_fastreg(tmp_path: Path) -> None:
    """`make loadtest`'s path: run.py starts fastreg with the embedded token server itself."""
    out = tmp_path / "out"
    rc, output = run_suite("token", out)
    table = stats(out, "token")
    assert rc == 0, output[-4000:]
    assert table["Aggregated"][1] == 0, output[-4000:]
    tokens, _ = table.get("GET [token realm]", (0, 0))
    assert tokens > 0, f"no token was fetched: {sorted(table)}"
    assert table.get("GET /v2/[repo]/blobs/[digest]", (0, 0))[0] > 0


def test_failures_are_reported(fastreg_server: ServerFactory, tmp_path: Path) -> None:
    server = fastreg_server(tmp_path / "root",
                            {"storage": {"maintenance": {"readonly": {"enabled": True}}}})
    out = tmp_path / "out"
    rc, output = run_suite("push", out, "--host", server.url, "--run-time", "2s")
    assert rc != 0, output[-4000:]
    assert stats(out, "push")["Aggregated"][1] > 0
    assert "405" in output
