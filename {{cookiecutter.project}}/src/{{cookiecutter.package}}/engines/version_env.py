"""A released version's own Python environment on this machine: the local analogue of its image.

Built with uv from the version's wheel and locked requirements in the artifact store, under
`.version-envs/{version}-{digest}/`, and reused while it exists (uv's cache makes a rebuild
cheap). A build happens in a hidden `.partial` folder that is renamed into place when it is
complete, so a killed build never leaves something that passes for an environment; the next
build removes what a dead build left.

Which interpreter runs a version:
- a version whose code was published: its environment, always;
- the checkout's own version before its code is published (developing, the first step of a
  release): the current interpreter, i.e. the checkout's code;
- any other version: refused, there is no code to run it with.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from {{ cookiecutter.package }}.artifacts.code import CodeRecord, read_code, read_code_files
from {{ cookiecutter.package }}.artifacts.names import ReleaseNames
from {{ cookiecutter.package }}.artifacts.store import ArtifactStore, build_folder
from {{ cookiecutter.package }}.errors import ReleaseError

READY = "version-code.json"  # written last inside an environment: it is complete


def find_uv() -> str:
    """uv next to this interpreter (the dev group installs it), else on PATH."""
    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.is_file() else shutil.which("uv")
    if found is None:
        raise ReleaseError(
            "uv is needed to build a version's environment: `uv sync` or `poetry install` "
            "installs it with the dev group (or `pip install uv`)"
        )
    return found


def run_uv(failure: str, *command: str, cwd: Path | None = None) -> str:
    """Run a uv command: its standard output; ReleaseError `failure: <uv's last error
    line>` when it fails."""
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd)
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]
        raise ReleaseError(f"{failure}: {detail}")
    return result.stdout


class VersionEnvironments:
    def __init__(self, store: ArtifactStore, root: Path, checkout_version: str) -> None:
        self.store = store
        self.root = root
        self.checkout_version = checkout_version

    def python_for(self, names: ReleaseNames) -> str:
        """The interpreter that runs `names.version`'s code (building its environment)."""
        record = read_code(self.store, names)
        if record is None:
            if names.version == self.checkout_version:
                return sys.executable
            raise ReleaseError(
                f"version {names.version} has no published code in {names.artifact_root} "
                f"({names.code_record_key}): it cannot run without its own code"
            )
        return str(self.ensure(names, record) / "bin" / "python")

    def existing_python(self, names: ReleaseNames) -> str | None:
        """The interpreter of `names.version`'s environment if it is built, else None (no
        build here)."""
        record = read_code(self.store, names)
        if record is None or not (self.path(names, record) / READY).is_file():
            return None
        return str(self.path(names, record) / "bin" / "python")

    def path(self, names: ReleaseNames, record: CodeRecord) -> Path:
        return self.root / names.code_env_name(record.digest)

    def ensure(self, names: ReleaseNames, record: CodeRecord) -> Path:
        final = self.path(names, record)
        if (final / READY).is_file():
            return final

        def build(partial: Path) -> None:
            print(f"building the environment of {names.version} ({record.wheel_filename})")
            self._build(partial, record)
            (partial / READY).write_text(json.dumps(asdict(record), indent=2))

        return build_folder(final, build, lambda folder: (folder / READY).is_file())

    def _build(self, target: Path, record: CodeRecord) -> None:
        wheel, requirements = read_code_files(self.store, record)
        here = f"{sys.version_info.major}.{sys.version_info.minor}"
        python = sys.executable if record.python == here else record.python
        uv, failure = find_uv(), f"cannot build the environment of {record.version}"
        run_uv(failure, uv, "venv", "--quiet", "--relocatable", "--python", python, str(target))
        # The wheel and lock stay inside the environment: what it was built from, on disk.
        dist = target / "dist"
        dist.mkdir()
        whl, lock = dist / record.wheel_filename, dist / "requirements.lock"
        whl.write_bytes(wheel)
        lock.write_bytes(requirements)
        target_python = str(target / "bin" / "python")
        run_uv(failure, uv, "pip", "install", "--quiet", "--python", target_python, "-r", str(lock))
        run_uv(
            failure, uv, "pip", "install", "--quiet", "--python", target_python, "--no-deps",
            str(whl),
        )  # fmt: skip
