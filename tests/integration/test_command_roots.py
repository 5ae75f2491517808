"""`fastreg garbage-collect` and `fastreg migrate` given a root that does not exist or is not a
registry (fastreg/registry/roots.py says which is which): exit 1 with one line naming the root,
nothing written; real `fastreg` processes, as an operator runs them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.test_process import fastreg_command, one_line

pytestmark = pytest.mark.integration


def config(tmp_path: Path, root: Path) -> str:
    path = tmp_path / f"{root.name}.yml"
    path.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\n")
    return str(path)


def registry(root: Path) -> Path:
    """A registry with no push yet but its layout: what garbage-collect may run on."""
    (root / "docker/registry/v2/blobs").mkdir(parents=True)
    return root


def foreign(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("not a registry\n")
    return root


@pytest.mark.parametrize(("make", "says"), [
    (lambda root: root, "does not exist: not a registry"),
    (lambda root: (root / "lost+found").mkdir(parents=True), "holds nothing: not a registry"),
    (foreign, "holds files but no registry (no docker/registry/v2 below it)"),
])  # fmt: skip
def test_garbage_collect_on_no_registry_names_the_root(
    tmp_path: Path, make: Callable[[Path], object], says: str
) -> None:
    root = tmp_path / "root"
    make(root)
    result = fastreg_command("garbage-collect", config(tmp_path, root))
    assert result.returncode == 1, result.stdout + result.stderr
    assert one_line(result.stderr) == f"fastreg: garbage-collect: storage root {root} {says}"
    assert result.stdout == ""  # no "0 blobs marked"


def test_garbage_collect_on_a_registry_runs(tmp_path: Path) -> None:
    result = fastreg_command("garbage-collect", config(tmp_path, registry(tmp_path / "root")))
    assert result.returncode == 0, result.stderr
    assert "0 blobs marked" in result.stdout


def test_migrate_from_a_missing_source_names_it_and_writes_nothing(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    result = fastreg_command("migrate", config(tmp_path, src), config(tmp_path, dst))
    assert result.returncode == 1, result.stdout + result.stderr
    assert one_line(result.stderr) == f"fastreg: migrate: source {src} does not exist: not a registry"
    assert not dst.exists() and "copied" not in result.stdout


def test_migrate_into_nothing_or_a_registry_but_not_elsewhere(tmp_path: Path) -> None:
    src = registry(tmp_path / "src")
    for dst in (tmp_path / "new", registry(tmp_path / "reg")):  # missing: created
        result = fastreg_command("migrate", config(tmp_path, src), config(tmp_path, dst))
        assert result.returncode == 0, result.stderr
        assert "copied 0 blobs" in result.stdout
    dst = foreign(tmp_path / "home")
    result = fastreg_command("migrate", config(tmp_path, src), config(tmp_path, dst))
    assert result.returncode == 1, result.stdout + result.stderr
    assert one_line(result.stderr) == (
        f"fastreg: migrate: destination {dst} holds files but no registry "
        "(no docker/registry/v2 below it)"
    )
    assert sorted(p.name for p in dst.iterdir()) == ["etc"]
