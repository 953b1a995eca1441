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
