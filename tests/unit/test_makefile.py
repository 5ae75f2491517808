"""What the Makefile's targets install, read from `make -n` (the commands make would run on a
machine with nothing installed yet: a virtualenv path that does not exist)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def planned(target: str, tmp_path: Path) -> list[str]:
    if shutil.which("make") is None:
        pytest.skip("no make")
    out = subprocess.run(
        ["make", "-n", "--no-print-directory", f"VENV={tmp_path / 'venv'}", target],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
        env={k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")},
    )  # fmt: skip
    return out.stdout.splitlines()


def test_loadtest_installs_only_what_locust_needs(tmp_path: Path) -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert [r for r in extras["loadtest"] if r.startswith("locust")], extras["loadtest"]
    commands = planned("loadtest", tmp_path)
    installs = [c for c in commands if "pip install" in c and " -e " in c]
    assert any("'.[loadtest]'" in c for c in installs), commands
    assert not any("[test]" in c for c in installs), commands  # no test extra (SeaweedFS, ...)
    deps = [c for c in commands if "system-deps.sh" in c]
    assert deps and all(c.endswith("system-deps.sh run") for c in deps), deps  # no Swift, nginx
    assert commands[-1].strip().endswith("loadtests/run.py"), commands
