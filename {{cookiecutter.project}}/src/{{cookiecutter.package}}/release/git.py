"""The few git facts a release needs: branch, cleanliness, HEAD, tags."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from {{ cookiecutter.package }}.errors import ReleaseError


class Git:
    def __init__(self, repo: Path) -> None:
        self.repo = repo

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            result = subprocess.run(
                ["git", *args], cwd=self.repo, capture_output=True, text=True, errors="replace"
            )
        except FileNotFoundError:
            raise ReleaseError("git is not installed") from None
        if check and result.returncode != 0:
            message = result.stderr.strip().splitlines()
            raise ReleaseError(
                f"git {' '.join(args)} failed: {message[0] if message else result.returncode}"
            )
        return result

    def branch(self) -> str:
        return self._run("rev-parse", "--abbrev-ref", "HEAD").stdout.strip()

    def head(self) -> str:
        return self._run("rev-parse", "HEAD").stdout.strip()

    def require_clean(self, advice: str) -> None:
        """Refuse when the working tree has changes: what is released is what is committed."""
        dirty = self.dirty_paths()
        if dirty:
            more = " ..." if len(dirty) > 3 else ""
            raise ReleaseError(
                f"working tree is not clean ({', '.join(dirty[:3])}{more}); {advice}"
            )

    def tree(self, rev: str) -> str:
        """The id of `rev`'s tree: equal trees mean the same content, whatever the history."""
        return self._run("rev-parse", rev + "^{tree}").stdout.strip()

    def files(self, rev: str, paths: tuple[str, ...]) -> str:
        """`rev`'s entries under `paths`, one `mode type object\tpath` line each, recursively:
        the same text means the same bytes at the same paths."""
        return self._run("ls-tree", "-r", "--full-tree", rev, "--", *paths).stdout

    def changed_paths(self, old: str, new: str, paths: tuple[str, ...]) -> list[str]:
        """Files under `paths` that differ between two commits."""
        out = self._run("diff", "--name-only", "--no-renames", old, new, "--", *paths).stdout
        return out.splitlines()

    def archive(self, rev: str) -> bytes:
        """The files of `rev` as a tar archive (what a clean checkout of it holds)."""
        result = subprocess.run(
            ["git", "archive", "--format=tar", rev], cwd=self.repo, capture_output=True
        )
        if result.returncode != 0:
            raise ReleaseError(f"git archive {rev} failed: {result.stderr.decode().strip()}")
        return result.stdout

    def dirty_paths(self) -> list[str]:
        lines = self._run("status", "--porcelain", "--untracked-files=normal").stdout
        return [line[3:] for line in lines.splitlines() if line.strip()]

    def tag_commit(self, tag: str) -> str | None:
        result = self._run(
            "rev-parse", "-q", "--verify", "refs/tags/" + tag + "^{commit}", check=False
        )
        return result.stdout.strip() or None

    def has_commit(self, sha: str) -> bool:
        return self._run("cat-file", "-e", sha + "^{commit}", check=False).returncode == 0

    def commit(self, message: str, *paths: str) -> None:
        self._run("add", "--", *paths)
        self._run("commit", "-q", "-m", message, "--", *paths)

    def unstage(self) -> None:
        self._run("reset", "-q")

    def create_tag(self, tag: str, message: str) -> None:
        result = self._run("tag", "-a", tag, "-m", message, check=False)
        if result.returncode != 0 and self._remove_stale_lock(f"refs/tags/{tag}"):
            result = self._run("tag", "-a", tag, "-m", message, check=False)
        if result.returncode != 0:
            detail = (result.stderr.strip().splitlines() or [str(result.returncode)])[0]
            raise ReleaseError(f"git tag {tag} failed: {detail}")

    def _remove_stale_lock(self, ref: str, older_than_s: float = 10.0) -> bool:
        """Remove the lock file a killed git left on `ref`, if nobody touched it lately.

        git writes `<ref>.lock` while it updates a ref and removes it at the end; a process
        killed in between leaves it, and every later update of that ref fails. A lock that
        old is no live git's (a tag update takes milliseconds).
        """
        git_dir = Path(self._run("rev-parse", "--git-dir").stdout.strip())
        lock = (git_dir if git_dir.is_absolute() else self.repo / git_dir) / f"{ref}.lock"
        try:
            if time.time() - lock.stat().st_mtime < older_than_s:
                return False
            lock.unlink()
        except FileNotFoundError:
            return False
        return True
