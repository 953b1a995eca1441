"""The README's "Layout" section, made from the tree: every module and subpackage of the
package with the first sentence of its docstring. `tests/test_architecture.py` holds the
README equal to it; `python tests/readme_layout.py` writes it into the README."""

from __future__ import annotations

import ast
import re
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- layout:start -->\n", "<!-- layout:end -->"
COLUMN = 20  # where descriptions start
WIDTH = 92
# What is not a Python module says what it is here.
TOP = {
    "pyproject.toml": "the version, dependencies, tool settings",
    "tasks/": "invoke tasks, a module per concern (thin: flags -> package functions)",
    "conf/": "Hydra configuration",
    "src/hydra_plugins/": "the Optuna sweeper (Hydra finds sweepers in this namespace)",
}
DEPLOY = {
    "base": "the per-version Kubernetes objects (Deployment, Service, Ingress, autoscaler, "
    "disruption budget)",
    "grafana": "the serving dashboard",
    "openlineage": "the project's own OpenLineage facets (JSON Schema)",
    "prometheus": "scrape configs: local (`inv up`'s targets) and Kubernetes",
}


def summary(path: Path) -> str:
    """The first sentence of a module's docstring (its first paragraph, up to a period)."""
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    paragraph = " ".join(doc.split("\n\n", 1)[0].split())
    sentence = re.split(r"(?<=[.!?])\s", paragraph, maxsplit=1)[0]
    if not sentence:
        raise AssertionError(f"{path} has no docstring to describe it in the README")
    return sentence


def entry(name: str, text: str, indent: str = "") -> list[str]:
    name = f"{indent}{name}"
    lines = textwrap.wrap(text, WIDTH - COLUMN, break_on_hyphens=False)
    if len(name) >= COLUMN - 1:  # a long name: its description from the next line
        return [name, *(" " * COLUMN + line for line in lines)]
    return [name.ljust(COLUMN) + lines[0], *(" " * COLUMN + line for line in lines[1:])]


def layout(root: Path = ROOT) -> str:
    package = next(
        p
        for p in (root / "src").iterdir()
        if (p / "__init__.py").exists() and p.name != "hydra_plugins"
    )
    lines = [line for name, text in TOP.items() for line in entry(name, text)]
    lines.append(f"src/{package.name}/")
    for path in sorted(package.iterdir()):
        if path.suffix == ".py" and path.name != "__init__.py":
            lines += entry(path.name, summary(path), "  ")
        elif (path / "__init__.py").exists():
            modules = sorted(p.stem for p in path.glob("*.py") if p.name != "__init__.py")
            nested = sorted(f"{p.parent.name}/" for p in path.glob("*/__init__.py"))
            text = summary(path / "__init__.py") + " Modules: " + ", ".join(modules + nested)
            text += "."
            lines += entry(f"{path.name}/", text, "  ")
    for name in sorted(p.name for p in (root / "deploy").iterdir() if p.is_dir()):
        lines += entry(f"deploy/{name}/", DEPLOY[name])
    lines += entry("tests/", "pytest; `inv test`")
    return "```\n" + "\n".join(lines) + "\n```\n"


def in_readme(root: Path = ROOT) -> str:
    text = (root / "README.md").read_text()
    return text.split(START, 1)[1].split(END, 1)[0]


if __name__ == "__main__":
    readme = ROOT / "README.md"
    text = readme.read_text()
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    readme.write_text(before + START + layout() + END + after)
    print(f"wrote the layout into {readme}", file=sys.stderr)
