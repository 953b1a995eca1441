"""The package's floors (README, "Architecture"): each imports only from the floors below it,
and a module's file name says which floor it is on."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import {{ cookiecutter.package }}

PACKAGE = Path({{ cookiecutter.package }}.__file__).parent
NAME = PACKAGE.name
# Bottom to top. A unit is a subpackage or a top-level module of the package.
FLOORS: list[set[str]] = [
    {"errors", "version", "progress", "config", "config_writer", "targets", "background"},
    {"ml"},
    {"artifacts"},
    {"pipelines"},
    {"engines"},
    {"release", "serving"},
    {"reports"},
    {"train", "tracking_server"},  # entry points
]


def floor_of(unit: str) -> int:
    return next(i for i, units in enumerate(FLOORS) if unit in units)


def unit_of(path: Path) -> str:
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


def imported_units(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        modules = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == NAME:
                modules = [f"{NAME}.{alias.name}" for alias in node.names]
            else:
                modules = [node.module]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        found |= {m.split(".")[1] for m in modules if m.startswith(f"{NAME}.")}
    return found


def modules() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE]


def test_every_unit_has_a_floor() -> None:
    units = {unit_of(path) for path in modules()}
    assert units == set().union(*FLOORS)


def test_no_floor_imports_a_floor_above_it() -> None:
    upward = [
        f"{path.relative_to(PACKAGE)} imports {target}"
        for path in modules()
        for target in imported_units(path)
        if floor_of(target) > floor_of(unit_of(path))
    ]
    assert upward == []


def test_no_two_floors_share_a_file_name() -> None:
    names = Counter(path.name for path in modules() if path.name != "__init__.py")
    assert [name for name, count in names.items() if count > 1] == []


# -- small rooms (issue 55) -----------------------------------------------------------------
MAX_LINES = 350
TASKS = PACKAGE.parents[1] / "tasks"


def test_no_module_is_over_350_lines() -> None:
    """A module a person opens to change one thing holds one room: the package's and the
    tasks' modules stay at most MAX_LINES lines (split by responsibility, not by count)."""
    long = {
        str(path.relative_to(PACKAGE.parents[1])): lines
        for path in [*PACKAGE.rglob("*.py"), *TASKS.glob("*.py")]
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Each module of the package -> the package's modules it imports, wherever it imports
    them (at the top, in a function, for type checking only): read from the source."""
    known = {module_name(path) for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:  # `from pkg.pipelines import steps`: a module
                    submodule = f"{node.module}.{alias.name}"
                    found.add(submodule if submodule in known else node.module)
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
        graph[module_name(path)] = {m for m in found if m in known} - {module_name(path)}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_in_the_package() -> None:
    """No module imports, however indirectly, a module that imports it back (the step
    table is data: it imports nothing that imports it)."""
    # A package's __init__ that names its modules' classes (engines: the ENGINES lookup)
    # is how its own modules are found, not a cycle between rooms.
    graph = import_graph()
    assert cycles(graph) == []
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_task_modules_import_only_the_shared_plumbing() -> None:
    """`tasks/` modules import nothing from each other but `plumbing` (its __init__
    gathers them)."""
    crossing = []
    for path in TASKS.glob("*.py"):
        if path.name == "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or node.module == "tasks"):
                targets = [node.module] if node.module else [a.name for a in node.names]
                crossing += [f"{path.name} -> {t}" for t in targets if t != "plumbing"]
    assert crossing == []


def test_the_readmes_layout_is_the_tree() -> None:
    """The README's "Layout" section is what `tests/readme_layout.py` makes of the tree:
    a module added, moved or removed shows there (run it to write the section)."""
    from readme_layout import in_readme, layout

    assert in_readme() == layout(), "run `python tests/readme_layout.py` to rewrite it"
