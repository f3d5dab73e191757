"""The shape of the code, held by tests (issue 11's measures) for every module under jitctl/:
no function over 60 lines, no module over 400, no import cycle, the Environment built only at
the hosts' roots, typer and rich only in the UI. Each test fails listing the offenders."""

from __future__ import annotations

import ast
from pathlib import Path

# ---- structure

PACKAGE = Path(__file__).resolve().parent.parent / "jitctl"
# The hosts: the only places that build an Environment (the one per run, or per process).
ENVIRONMENT_ROOTS = {"jitctl/cli/main.py", "jitctl/broker/aws_lambda.py"}
UI_PACKAGES = ("jitctl/cli/", "jitctl/demo/")  # the only code that may import typer or rich


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _where(path: Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()


def _imported(tree: ast.AST) -> list[tuple[str, int]]:
    """(dotted name, line) of every import at any depth: function-level ones and those under
    ``if TYPE_CHECKING:`` too. A type-only import is still a dependency a reader follows, and
    the layers hold only when it points downward as well (issue 22: the whole-house graph)."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [(f"{node.module}.{alias.name}", node.lineno) for alias in node.names]
    return names


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The jitctl module an imported name lives in (``jitctl.lifecycle.flow.issue`` -> ``jitctl.lifecycle.flow``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        targets = {_owner(imported, modules) for imported, _ in _imported(tree)}
        graph[name] = {target for target in targets if target and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            step = next(edges, None)
            if step is not None:
                if step not in index:
                    index[step] = low[step] = len(index)
                    stack.append(step)
                    on_stack.add(step)
                    work.append((step, iter(sorted(graph.get(step, ())))))
                elif step in on_stack:
                    low[node] = min(low[node], index[step])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_finds_a_cycle() -> None:
    """The check below can fail: a two-module loop and a longer one are both reported."""
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c", "a"}, "f": {"a"}}
    assert sorted(cycles(graph)) == [["a", "b"], ["c", "d", "e"]]


def test_no_import_cycles() -> None:
    """Every import counts: module-level, function-level and TYPE_CHECKING ones."""
    found = cycles(import_graph())
    assert not found, "import cycles in jitctl/: " + "; ".join(" <-> ".join(c) for c in found)


def _environment_built_at(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name == "Environment":
                lines.append(node.lineno)
    return lines


def test_environment_is_built_only_at_the_hosts_roots() -> None:
    """One Environment per run, built by the host and passed down; the core never builds one."""
    offenders = [
        f"{_where(path)}:{line}"
        for path in _modules().values()
        if _where(path) not in ENVIRONMENT_ROOTS
        for line in _environment_built_at(path)
    ]
    assert not offenders, "Environment( outside the hosts' roots: " + ", ".join(offenders)
    built = {_where(p) for p in _modules().values() if _environment_built_at(p)}
    assert built == ENVIRONMENT_ROOTS  # the roots do build it (else this test sees nothing)


def _all_imports(tree: ast.AST) -> list[tuple[str, int]]:
    """(module, line) of every import, TYPE_CHECKING ones included: the core needs none."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, node.lineno))
    return found


def test_core_imports_neither_typer_nor_rich() -> None:
    """Only the terminal host (cli/) and the demo may: the broker serves the same core."""
    offenders = [
        f"{_where(path)}:{line} imports {name}"
        for path in _modules().values()
        if not _where(path).startswith(UI_PACKAGES)
        for name, line in _all_imports(ast.parse(path.read_text(encoding="utf-8")))
        if name.split(".")[0] in ("typer", "rich")
    ]
    assert not offenders, "typer/rich outside jitctl/cli and jitctl/demo: " + ", ".join(offenders)


# ---- size

MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400


def test_no_function_over_60_lines():
    offenders = []
    for path in _modules().values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    offenders.append(f"{_where(path)}:{node.lineno} {node.name}: {lines} lines")
    assert not offenders, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(offenders)


def test_no_module_over_400_lines():
    offenders = []
    for path in _modules().values():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES:
            offenders.append(f"{_where(path)}: {lines} lines")
    assert not offenders, f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(offenders)


def test_module_families_live_in_their_packages() -> None:
    """A newcomer sees the architecture from the tree: `audit_x.py` beside `audit/` is a member
    of the audit family out of its package (issue 11, "packages by responsibility")."""
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    stray = [
        _where(path)
        for path in sorted(PACKAGE.glob("*.py"))
        if path.stem.split("_")[0] in packages and path.stem != "__init__"
    ]
    assert packages >= {"audit", "policy", "config", "oncall", "credentials", "revocation"}
    assert not stray, "modules outside their family's package: " + ", ".join(stray)


# The modules every layer may use; the rest of the top level must not lean on one another.
FOUNDATION = {"errors", "models", "timeutil", "sanitize", "jsonstrict", "filelock"}
# The run's holder (every layer reads it) and where the hosts assemble it.
HOLDERS = {"context", "wiring"}
MAX_TOP_LEVEL = 12


def _top_level() -> set[str]:
    return {p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")}


def top_level_families(graph: dict[str, set[str]], top: set[str]) -> list[str]:
    """Imports between top-level modules other than into the foundation or the holders: two
    loose modules that use each other are a family, and a family lives in a package."""
    free = FOUNDATION | HOLDERS
    return sorted(
        f"jitctl/{name}.py imports jitctl/{target.split('.')[1]}.py"
        for name in sorted(top - HOLDERS)
        for target in graph.get(f"jitctl.{name}", ())
        if target.count(".") == 1 and target.split(".")[1] in top - free
    )


def test_family_finder_finds_a_family() -> None:
    """The check below can fail: a top-level module leaning on another is reported."""
    graph = {"jitctl.flow": {"jitctl.decisions", "jitctl.models"}, "jitctl.decisions": set()}
    assert top_level_families(graph, {"flow", "decisions", "models"}) == [
        "jitctl/flow.py imports jitctl/decisions.py"
    ]


def test_the_top_level_is_small_and_holds_no_family() -> None:
    """Issue 22: a newcomer opening jitctl/ sees a dozen modules and the packages; families
    (found by what modules import, not by their names) live in their packages."""
    top = _top_level()
    assert len(top) <= MAX_TOP_LEVEL, f"{len(top)} modules at the top of jitctl/: {sorted(top)}"
    assert FOUNDATION | HOLDERS <= top  # the names this rule trusts still exist
    families = top_level_families(import_graph(), top)
    assert not families, "modules that belong in a package together: " + "; ".join(families)


def test_architecture_md_names_every_package_and_top_level_module() -> None:
    """ARCHITECTURE.md draws the tree: every package and top-level module is in it."""
    text = (PACKAGE.parent / "ARCHITECTURE.md").read_text(encoding="utf-8")
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    missing = [f"{name}/" for name in sorted(packages) if f"{name}/" not in text]
    missing += [name for name in sorted(_top_level()) if name not in text]
    assert not missing, "ARCHITECTURE.md does not name: " + ", ".join(missing)
