"""Render time of the template, and `inv --list` of a generated project against bare
`invoke --list` in the same virtualenv (the target: within 1.3x)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import TEMPLATE, generated_project, median, run, save, timed  # noqa: E402

REPEAT = 7


def main() -> None:
    from cookiecutter.main import cookiecutter

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        counter = iter(range(1000))
        render = timed(lambda: cookiecutter(str(TEMPLATE), no_input=True,
                                            output_dir=str(root / f"r{next(counter)}")), REPEAT)
        project = generated_project(root / "installed")
        venv = project / ".venv" / "bin"
        empty = root / "bare"  # bare invoke: the same venv, a tasks.py with one empty task
        empty.mkdir()
        (empty / "tasks.py").write_text("from invoke import task\n\n\n@task\n"
                                        "def hello(c):\n    pass\n")
        run([str(venv / "invoke"), "--list"], project)  # warm the bytecode caches
        run([str(venv / "invoke"), "--list"], empty)
        inv_list = timed(lambda: run([str(venv / "inv"), "--list"], project), REPEAT)
        bare_list = timed(lambda: run([str(venv / "invoke"), "--list"], empty), REPEAT)
    save("render", {
        "repeat": REPEAT,
        "render_with_hooks_s": median(render),
        "inv_list_s": median(inv_list),
        "bare_invoke_list_s": median(bare_list),
        "inv_list_over_bare": round(median(inv_list) / median(bare_list), 2),
    })


if __name__ == "__main__":
    main()
