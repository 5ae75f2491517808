"""Memory of a real fastreg process under PATCHes stalled mid-body and reset (issue 12, finding 3).

A reduced run of benchmarks/memory.py: 3 rounds of 100 uploads, each with a PATCH that sends
1.5 MiB of a 64 MiB body, stalls, and is reset by the client once all 100 are stalled. Before the
fix each stalled PATCH held 1.6 MiB and kept it after the reset (+480 MiB after 3 rounds).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from benchmarks.memory import rss_mib, run_rounds
from tests.integration.conftest import ServerFactory

pytestmark = pytest.mark.integration

ROUNDS, COUNT, PARTIAL_KIB = 3, 100, 1536
PER_STALLED_KIB = 1024 + 256  # one body batch being gathered (1 MiB), plus slack
RETURNED_WITHIN_MIB = 64


def test_stalled_then_reset_patches_hold_little_and_give_it_back(
    fastreg_server: ServerFactory, tmp_path: Path
) -> None:
    server = fastreg_server(tmp_path / "root")
    assert server.proc is not None
    pid = server.proc.pid
    before, rounds = run_rounds(pid, server.port, ROUNDS, COUNT, PARTIAL_KIB)
    worst = max(r.per_patch_kib for r in rounds)
    assert worst <= PER_STALLED_KIB, [(r.start, r.during, r.after) for r in rounds]
    # freed memory goes back to the kernel within a few seconds of the last reset
    deadline = time.monotonic() + 20
    while (after := rss_mib(pid)) - before >= RETURNED_WITHIN_MIB and time.monotonic() < deadline:
        time.sleep(0.2)
    assert after - before < RETURNED_WITHIN_MIB, (before, [(r.during, r.after) for r in rounds])
    assert server.alive()
