"""Finish the generated project: drop files of options not chosen, lock, record, commit.

Two ways in, one result:
- ``cookiecutter``: the project gets its lock file (``uv lock``), a ``.cruft.json`` that
  records the template and its commit with the answers (so ``cruft check`` and ``cruft
  update`` work on it later), and a first commit: ``git status`` is clean.
- ``cruft create`` / ``cruft update``: cruft renders the template here too, once for the
  project and twice more for every update (the old and the new template commit, which it
  diffs). A ``.git`` folder in those renders breaks the diff (cruft issues #155, #309), and
  cruft writes ``.cruft.json`` itself after this hook, so under cruft (its ``_commit`` is
  in the context) the hook locks but leaves ``git init`` to the user, and says how.

Importable: the template's tests call these functions directly.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any


def files_to_remove(answers: dict[str, Any]) -> list[str]:
    """Paths (relative to the project) that belong to options the user did not choose."""
    remove = []
    if answers["license"] == "Proprietary":
        remove.append("LICENSE")
    if answers["ci"] == "none":
        remove.append(".github")
    return remove


def prune(project_dir: Path, answers: dict[str, Any]) -> None:
    for relative in files_to_remove(answers):
        path = project_dir / relative
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def under_cruft(answers: dict[str, Any]) -> bool:
    """cruft adds the template's commit to the context it renders with; cookiecutter does not."""
    return "_commit" in answers


NO_UV = ("WARNING: uv not found, so the project is not locked: install it with "
         "`pip install uv`, then run `uv lock` in the project and commit uv.lock.")


def find_uv() -> str | None:
    """uv on PATH, or beside the interpreter running cookiecutter (both in one venv or tool)."""
    beside = Path(sys.executable).parent / "uv"
    return shutil.which("uv") or (str(beside) if beside.is_file() else None)


def lock(project_dir: Path, project: str) -> bool:
    """`uv lock`: the project is committed with the lock CI, CD and the image install.

    A lock resolved from nothing lists some markers in another order than one re-resolved
    from an existing lock, which is what `inv bump` does: the second pass (re-resolving the
    project itself, every pin kept) writes the lock as every later bump will, so a bump's
    diff of uv.lock is the version line alone.
    """
    uv = find_uv()
    if uv is None:
        print(NO_UV, file=sys.stderr)
        return False
    for extra in ([], ["--upgrade-package", project]):
        result = subprocess.run([uv, "lock", "--quiet", *extra], cwd=project_dir,
                                capture_output=True, text=True)
        if result.returncode != 0:
            why = (result.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"WARNING: uv lock failed ({why}); run `uv lock` and commit uv.lock.",
                  file=sys.stderr)
            return False
    return True


def invocation_dir() -> Path:
    """Where cookiecutter was started: a relative template path is relative to it.

    The hook itself runs inside the new project, so its own working directory says nothing.
    """
    parent_cwd = Path(f"/proc/{os.getppid()}/cwd")
    if parent_cwd.exists():
        return parent_cwd.resolve()
    return Path(os.environ.get("PWD", os.getcwd()))


def template_commit(repo_dir: Path) -> str | None:
    """The commit of the template's git checkout, or None when it is not one."""
    if shutil.which("git") is None or not (repo_dir / "cookiecutter.json").is_file():
        return None
    result = subprocess.run(["git", "rev-parse", "--show-toplevel", "HEAD"], cwd=repo_dir,
                            capture_output=True, text=True)
    if result.returncode != 0:
        return None
    top, commit = result.stdout.split()
    return commit if Path(top).resolve() == repo_dir.resolve() else None


def template_url(template: str, repo_dir: Path) -> str:
    """Where cruft can clone the template again: the URL, or the local checkout's path."""
    if "://" in template or template.startswith("git@"):
        return template
    try:
        from cookiecutter.config import BUILTIN_ABBREVIATIONS
        from cookiecutter.repository import expand_abbreviations
    except ImportError:  # pragma: no cover - the hook runs in cookiecutter's interpreter
        return str(repo_dir.resolve())
    expanded = expand_abbreviations(template, BUILTIN_ABBREVIATIONS)
    return expanded if expanded != template else str(repo_dir.resolve())


def template_record(answers: dict[str, Any]) -> dict[str, Any] | None:
    """What `cruft create` would write to `.cruft.json`, for a project made by cookiecutter.

    None when the template is not a git checkout (a zip, a copy): there is no commit to
    update from, and a record without one would mislead `cruft check`.
    """
    if not answers.get("_repo_dir"):
        return None
    repo_dir = invocation_dir() / str(answers["_repo_dir"])  # an absolute path stays itself
    commit = template_commit(repo_dir)
    if commit is None:
        return None
    url = template_url(str(answers.get("_template", repo_dir)), repo_dir)
    context = {key: value for key, value in answers.items() if not key.startswith("_")}
    context.update({"_template": url, "_commit": commit})
    return {"template": url, "commit": commit, "checkout": None,
            "context": {"cookiecutter": context}, "directory": None}


def write_template_record(project_dir: Path, answers: dict[str, Any]) -> bool:
    record = template_record(answers)
    if record is None:
        print("WARNING: the template is not a git checkout; `cruft link <template>` "
              "records it later.", file=sys.stderr)
        return False
    # cruft's own format (indent 2, a final newline), so cruft rewrites it without noise.
    text = json.dumps(record, ensure_ascii=False, indent=2, separators=(",", ": ")) + "\n"
    (project_dir / ".cruft.json").write_text(text)
    return True


def init_git(project_dir: Path, author: str, email: str) -> bool:
    """`git init -b main` and a first commit; False (with a warning) when git is missing."""
    if shutil.which("git") is None:
        print("WARNING: git not found; run `git init -b main` yourself.", file=sys.stderr)
        return False
    identity = ["-c", f"user.name={author}", "-c", f"user.email={email}"]

    def git(*args: str) -> None:
        subprocess.run(["git", *identity, *args], cwd=project_dir, check=True,
                       stdout=subprocess.DEVNULL)

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-q", "--no-verify", "-m", "Initial commit from the ML release template")
    return True


def next_steps(answers: dict[str, Any]) -> str:
    steps = [f"Created {answers['project']} (version {answers['version']}).", "Next steps:",
             f"  cd {answers['project']}"]
    if under_cruft(answers):
        steps.append('  git init -b main && git add -A && git commit -m "Project from template"')
    steps += [
        "  uv sync                   # installs exactly uv.lock",
        "  uv run inv --list         # the release tasks",
        "  uv run inv release        # a full local release: image, features, model, workflows",
    ]
    return "\n".join(steps)


def main(raw_answers: str, project_dir: Path) -> int:
    answers = json.loads(raw_answers)
    prune(project_dir, answers)
    lock(project_dir, answers["project"])
    if not under_cruft(answers):
        write_template_record(project_dir, answers)
        init_git(project_dir, answers["author"], answers["email"])
    print(next_steps(answers))
    return 0


if __name__ == "__main__":
    sys.exit(main(r"""{{ cookiecutter | tojson }}""", Path.cwd()))
