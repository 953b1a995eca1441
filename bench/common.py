"""Shared by the benchmark scripts: timing, a generated and installed project, results."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1]
RESULTS = TEMPLATE / "bench" / "results"
TOOLS = Path(sys.executable).parent
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
                "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.com"}


def timed(action: Callable[[], object], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return samples


def median(samples: list[float]) -> float:
    return round(statistics.median(samples), 3)


def run(command: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True,
                          env={**os.environ, **GIT_IDENTITY, **env})


def generated_project(workdir: Path, template: Path = TEMPLATE) -> Path:
    """Render the default project into `workdir` (committed with its lock), install it."""
    from cookiecutter.main import cookiecutter

    project = Path(cookiecutter(str(template), no_input=True, output_dir=str(workdir)))
    run([str(TOOLS / "uv"), "sync", "--locked", "--quiet"], project)
    return project


def save(name: str, figures: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
