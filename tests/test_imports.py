"""Every module imports on its own, and the import graph has no cycles but the known ones (issue 12).

``python -c "import mem0_routed._ledger_sqlite"`` used to raise ImportError (partially initialized
module): a cycle patched by a bottom-of-file import worked only when something else imported the
other module first. (a) imports each module first thing in a fresh interpreter; (b) builds the
import graph from the source (module-level imports, ``if TYPE_CHECKING:`` ones included, imports
inside functions left out) and fails on any cycle not listed in ``KNOWN_CYCLES``.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import pkgutil
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

#: Cycles being removed elsewhere (issue 12, the Router facade); the integrator empties this list.
#: A cycle found must lie inside one of these sets: a new cycle, or one joining two of them, fails.
KNOWN_CYCLES: list[frozenset[str]] = []  # none left: a new cycle fails the test

PACKAGE = "mem0_routed"
_SPEC = importlib.util.find_spec(PACKAGE)  # finds the package without running it: a broken one still
assert _SPEC is not None and _SPEC.submodule_search_locations  # gets its report from the tests below
ROOT = Path(next(iter(_SPEC.submodule_search_locations))).resolve()
TIMEOUT_S = 300.0
Graph = dict[str, set[str]]


# --- (a) each module on its own ---------------------------------------------------------------------


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Every module of ``package`` and its source file, found with pkgutil without importing any."""
    out = {package: root / "__init__.py"}
    for info in pkgutil.iter_modules([str(root)]):
        name = f"{package}.{info.name}"
        if info.ispkg:
            out.update(module_files(root / info.name, name))
        else:
            out[name] = root / f"{info.name}.py"
    return out


def _env(pythonpath: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(pythonpath), os.environ.get("PYTHONPATH", "")]),
            "MEM0_TELEMETRY": "False", "MEM0_ROUTED_AUTOLOAD": "0"}  # fmt: skip


def import_each(names: Iterable[str], pythonpath: Path) -> dict[str, str]:
    """Import each module first thing in its own fresh interpreter, several at once; the failures
    as {module: last lines of stderr}."""
    env = _env(pythonpath)

    def run(name: str) -> tuple[str, str | None]:
        proc = subprocess.run([sys.executable, "-c", f"import {name}"], check=False, capture_output=True,
                              text=True, env=env, cwd=pythonpath, timeout=TIMEOUT_S)  # fmt: skip
        return name, None if proc.returncode == 0 else "\n".join(proc.stderr.strip().splitlines()[-3:])

    with ThreadPoolExecutor(max_workers=max(2, min(8, 2 * (os.cpu_count() or 1)))) as pool:
        return {name: err for name, err in pool.map(run, sorted(names)) if err is not None}


# One fresh interpreter loads the package's third-party dependencies (mem0 alone takes ~2 s), but no
# module of the package, then forks a child per module: each child imports its module first thing,
# as a fresh interpreter would, without paying for mem0 again. 57 modules: ~2 minutes as separate
# interpreters on two busy cores, a few seconds this way.
_FORK_SERVER = """
import importlib, json, os, sys, traceback
package, names, jobs = json.loads(sys.argv[1])

def ours(m):
    return m == package or m.startswith(package + ".")

def fork(work):  # the child writes what work() returns, or the end of its traceback, to a pipe
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        return pid, r
    os.close(r)
    try:
        code, out = 0, work()
    except BaseException:
        code, out = 1, "\\n".join(traceback.format_exc().strip().splitlines()[-3:])[:20000]
    with os.fdopen(w, "w") as f:
        f.write(out)
    os._exit(code)

def result(pid, r):
    with os.fdopen(r) as f:  # read to the end first: a long answer fills the pipe
        out = f.read()
    return out, os.waitpid(pid, 0)[1]

def probe():  # the modules importing the package loads, minus its own
    importlib.import_module(package)
    return json.dumps([m for m in sys.modules if not ours(m) and m != "__main__"])

out, status = result(*fork(probe))
if status:  # the package itself does not import: every module fails the same way
    print(json.dumps({package: out}))
    sys.exit(0)
for m in json.loads(out):
    try:
        importlib.import_module(m)
    except BaseException:
        pass
assert not [m for m in sys.modules if ours(m)], "a dependency imported the package itself"
failures, running = {}, {}

def reap():
    pid, status = os.wait()  # a child's message is short: it fits the pipe, so the child could exit
    name, r = running.pop(pid)
    with os.fdopen(r) as f:
        out = f.read()
    if status:
        failures[name] = out or f"exit status {status}"

for n in names:
    if len(running) >= jobs:
        reap()
    pid, r = fork(lambda n=n: importlib.import_module(n) and "")
    running[pid] = (n, r)
while running:
    reap()
print(json.dumps(failures))
"""


def import_each_forked(names: Iterable[str], pythonpath: Path, package: str) -> dict[str, str]:
    """Like ``import_each``, in forks of one interpreter that holds the dependencies but nothing of
    ``package``; the failures as {module: last lines of the traceback}."""
    args = json.dumps([package, sorted(names), max(2, 2 * (os.cpu_count() or 1))])
    proc = subprocess.run([sys.executable, "-c", _FORK_SERVER, args], check=False, capture_output=True,
                          text=True, env=_env(pythonpath), cwd=pythonpath, timeout=TIMEOUT_S)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    failures: dict[str, str] = json.loads(proc.stdout.strip().splitlines()[-1])
    return failures


def test_every_module_imports_on_its_own_in_a_fresh_interpreter() -> None:
    names = [n for n in module_files(ROOT, PACKAGE) if not n.endswith(".__main__")]  # __main__ runs a CLI
    assert len(names) > 40 and f"{PACKAGE}.backends._base" in names  # the walk found the whole package
    if hasattr(os, "fork") and not os.environ.get("MEM0_ROUTED_FRESH_IMPORTS"):
        failures = import_each_forked(names, ROOT.parent, PACKAGE)
    else:  # no fork (Windows), or asked for: one whole interpreter per module, slower
        failures = import_each(names, ROOT.parent)
    assert not failures, "modules that fail when imported first:\n" + "\n".join(
        f"  python -c 'import {name}':\n{textwrap.indent(err, '    ')}" for name, err in failures.items()
    )


# --- (b) the import graph -----------------------------------------------------------------------------


class _ModuleLevelImports(ast.NodeVisitor):
    """Imports run when the module is imported: top level, under ``if``/``try``/``with`` (so
    ``if TYPE_CHECKING:`` too) and in class bodies; not inside functions, which run later."""

    def __init__(self) -> None:
        self.found: list[ast.Import | ast.ImportFrom] = []

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        pass

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        pass

    def visit_Lambda(self, node: ast.Lambda) -> None:
        pass

    def visit_Import(self, node: ast.Import) -> None:
        self.found.append(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.found.append(node)


def import_graph(files: Mapping[str, Path]) -> Graph:
    """{module: modules of the same package it imports at module level}."""
    graph: Graph = {name: set() for name in files}
    for name, path in files.items():
        visitor = _ModuleLevelImports()
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        is_pkg = path.name == "__init__.py"
        for node in visitor.found:
            if isinstance(node, ast.Import):
                graph[name].update(a.name for a in node.names if a.name in files)
                continue
            if node.level:
                parts = name.split(".") if is_pkg else name.split(".")[:-1]
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            for alias in node.names:  # "from .pkg import mod" imports the module, else the name's module
                target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base
                if target in files and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: Graph) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan): each holds a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def describe(graph: Graph, component: frozenset[str]) -> str:
    edges = [f"{a} -> {b}" for a in sorted(component) for b in sorted(graph[a] & component)]
    return f"cycle among {len(component)} modules:\n    " + "\n    ".join(edges)


def unknown_cycles(graph: Graph, known: Iterable[frozenset[str]]) -> list[frozenset[str]]:
    known = list(known)
    return [c for c in cycles(graph) if not any(c <= k for k in known)]


def test_no_import_cycles_but_the_known_ones() -> None:
    graph = import_graph(module_files(ROOT, PACKAGE))
    found = cycles(graph)
    for component in found:
        print(describe(graph, component))
    ledger = [c for c in found if any(m.startswith(f"{PACKAGE}._ledger") for m in c)]
    assert not ledger, "the ledger package must have no import cycle:\n" + "\n".join(
        describe(graph, c) for c in ledger
    )
    new = unknown_cycles(graph, KNOWN_CYCLES)
    assert not new, "new import cycles (not in KNOWN_CYCLES):\n" + "\n".join(describe(graph, c) for c in new)


# --- the checks themselves can fail -----------------------------------------------------------------


def _write_package(root: Path, files: Mapping[str, str]) -> Path:
    pkg = root / "cyclepkg"
    for rel, text in files.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(textwrap.dedent(text), encoding="utf-8")
    return pkg


#: The old ledger's shape: a store importing the base, the base importing the store at its bottom.
_OLD_LEDGER_SHAPE = {
    "__init__.py": "",
    "base.py": """
        def helper() -> int:
            return 1

        from .store import Store  # noqa: E402  (re-exported)
    """,
    "store.py": """
        from .base import helper

        class Store:
            pass
    """,
    "typed.py": """
        from typing import TYPE_CHECKING

        if TYPE_CHECKING:
            from .late import Late
    """,
    "late.py": """
        from .typed import TYPE_CHECKING

        def later() -> None:
            from .base import helper  # inside a function: runs after every import, no cycle
    """,
}


def test_the_checks_catch_the_old_ledger_cycle(tmp_path: Path) -> None:
    pkg = _write_package(tmp_path, _OLD_LEDGER_SHAPE)
    files = module_files(pkg, "cyclepkg")
    graph = import_graph(files)
    assert graph["cyclepkg.late"] == {"cyclepkg.typed"}  # the function-local import is left out
    assert set(cycles(graph)) == {frozenset({"cyclepkg.base", "cyclepkg.store"}),
                                  frozenset({"cyclepkg.typed", "cyclepkg.late"})}  # fmt: skip
    assert unknown_cycles(graph, [frozenset({"cyclepkg.base", "cyclepkg.store", "cyclepkg.x"})]) == [
        frozenset({"cyclepkg.typed", "cyclepkg.late"})
    ]
    names = ["cyclepkg.base", "cyclepkg.store", "cyclepkg.typed"]
    for failures in (import_each(names, tmp_path), import_each_forked(names, tmp_path, "cyclepkg")):
        assert list(failures) == ["cyclepkg.store"]  # importing the store first meets a half-made base
        assert "partially initialized module" in failures["cyclepkg.store"]
