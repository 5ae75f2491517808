"""The shape of the package, checked: no import cycle among fastreg's modules, and the layers.

The import graph is read from the source with `ast` (nothing is imported): every `import` and
`from ... import` anywhere in a module counts, those under `if TYPE_CHECKING:` and inside functions
included, since a cycle that only a lazy or type-only import closes is still two modules that
cannot be understood (or moved) one without the other. `from package import name` is an edge to
the submodule `package.name` when there is one, else to the package; relative imports are resolved
against the importing module's package.

Layers (imports point `api -> registry -> storage`, STYLE.md): `fastreg.storage` knows nothing of
registries, HTTP routes or the server; `fastreg.registry` knows no HTTP server, no API, no access
control and no notifications (policy is decided there and asked by them); `fastreg.server` wires
the API, access control and notifications, and none of them imports it; and `fastreg.cli`, the
top, is imported by nothing else in fastreg.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "fastreg"

# Cycles outside issue 13's `modules` part, left to the helpers whose modules they are. Each entry
# is the set of modules of one strongly connected component, exactly. Empty this once they are
# gone: `test_known_cycles_are_still_there` fails for an entry that no longer matches a cycle.
KNOWN_CYCLES: tuple[frozenset[str], ...] = (
    # helper `objectstore`: each writer calls its driver's internals, each driver builds its writer
    frozenset({"fastreg.storage.azure.driver", "fastreg.storage.azure.writer"}),
    frozenset({"fastreg.storage.gcs.driver", "fastreg.storage.gcs.writer"}),
    frozenset({"fastreg.storage.s3.driver", "fastreg.storage.s3.writer"}),
    frozenset({"fastreg.storage.swift.driver", "fastreg.storage.swift.writer"}),
)

# (importer prefix, forbidden prefixes): a module under the first imports none of the others.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "fastreg.storage",
        ("fastreg.registry", "fastreg.api", "fastreg.server", "fastreg.auth", "fastreg.notify"),
    ),
    ("fastreg.registry", ("fastreg.api", "fastreg.server", "fastreg.auth", "fastreg.notify",
                          "aiohttp.web")),
    # the server wires the API, access control and notifications; none of them imports it
    ("fastreg.api", ("fastreg.server", "fastreg.auth", "fastreg.notify")),
    ("fastreg.auth", ("fastreg.server", "fastreg.notify")),
    ("fastreg.notify", ("fastreg.server", "fastreg.auth")),
)
# the command line is the top: only the `python -m fastreg` shim imports it
CLI = "fastreg.cli"
CLI_IMPORTERS = frozenset({"fastreg.__main__"})


@dataclass(frozen=True, slots=True)
class Import:
    target: str  # the fastreg module imported, or the dotted name of an outside one
    line: int


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _resolve(name: str, modules: Iterable[str]) -> str:
    """`name` itself when it is a fastreg module, else its longest prefix that is one."""
    known = set(modules)
    while name not in known and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _imports(module: str, path: Path) -> Iterator[Import]:
    modules = _modules()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(_resolve(alias.name, modules), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")
                if not is_package:
                    package = package[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield Import(_resolve(full if full in modules else base, modules), node.lineno)
                if not base.startswith("fastreg"):
                    yield Import(full, node.lineno)  # `from aiohttp import web` is aiohttp.web


@cache
def import_graph() -> dict[str, dict[str, int]]:
    """module -> {fastreg module it imports -> first line}."""
    graph: dict[str, dict[str, int]] = {}
    modules = _modules()
    for module, path in modules.items():
        edges = graph.setdefault(module, {})
        for imp in _imports(module, path):
            if imp.target in modules and imp.target != module:
                edges.setdefault(imp.target, imp.line)
    return graph


def components(graph: dict[str, dict[str, int]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                members = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    members.add(member)
                    if member == node:
                        break
                if len(members) > 1:
                    found.append(frozenset(members))
    return found


def cycle_in(graph: dict[str, dict[str, int]], members: frozenset[str]) -> list[str]:
    """One cycle through the component's first module, shortest first (breadth-first)."""
    start = min(members)
    paths = {start: [start]}
    queue = [start]
    for node in queue:
        for child in sorted(graph[node]):
            if child == start:
                return paths[node] + [start]
            if child in members and child not in paths:
                paths[child] = paths[node] + [child]
                queue.append(child)
    raise AssertionError(f"no cycle through {start}")


def describe(graph: dict[str, dict[str, int]], members: frozenset[str]) -> str:
    path = cycle_in(graph, members)
    hops = " -> ".join(f"{a} (line {graph[a][b]})" for a, b in itertools.pairwise(path))
    return f"{hops} -> {path[-1]}" + (
        f"  [component of {len(members)}: {', '.join(sorted(members))}]"
        if len(members) > len(path) - 1
        else ""
    )


def test_the_graph_sees_every_module() -> None:
    graph = import_graph()
    assert "fastreg.registry.manifeststore" in graph
    assert "fastreg.registry.manifests" in graph["fastreg.registry.manifeststore"]


def test_no_import_cycle() -> None:
    graph = import_graph()
    found = components(graph)
    for members in found:
        print(("known: " if members in KNOWN_CYCLES else "cycle: ") + describe(graph, members))
    new = [describe(graph, c) for c in found if c not in KNOWN_CYCLES]
    assert not new, "import cycles:\n" + "\n".join(new)


def test_known_cycles_are_still_there() -> None:
    found = components(import_graph())
    stale = [sorted(c) for c in KNOWN_CYCLES if c not in found]
    assert not stale, f"gone or changed, remove from KNOWN_CYCLES: {stale}"


@pytest.mark.parametrize(("importer", "forbidden"), LAYERS)
def test_layers(importer: str, forbidden: tuple[str, ...]) -> None:
    wrong = [
        f"{module}:{imp.line} imports {imp.target}"
        for module, path in _modules().items()
        if _within(module, importer)
        for imp in _imports(module, path)
        if any(_within(imp.target, f) for f in forbidden)
    ]
    assert not wrong, "\n".join(wrong)


def test_nothing_imports_the_cli() -> None:
    wrong = [
        f"{module}:{line} imports {target}"
        for module, edges in import_graph().items()
        if not _within(module, CLI) and module not in CLI_IMPORTERS
        for target, line in edges.items()
        if _within(target, CLI)
    ]
    assert not wrong, "\n".join(wrong)
