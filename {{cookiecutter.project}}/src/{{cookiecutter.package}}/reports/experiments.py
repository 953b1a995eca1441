"""`inv experiments`: the local Hydra runs (`inv train`, `--multirun`), best first.

Each run wrote `metadata.json` (version, overrides, metrics) to its own folder under
`outputs/` or `multirun/`; this reads them back. Runs are local scratch work: they are never
released, and a folder without metadata (a run that failed) is listed as such.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from {{ cookiecutter.package }}.ml import MAIN_METRIC
from {{ cookiecutter.package }}.reports import tables

RUN_FOLDERS = ("outputs", "multirun")


@dataclass(frozen=True)
class Experiment:
    run: str  # the run's folder, relative to the project
    version: str
    overrides: list[str]
    metrics: dict[str, float]

    @property
    def score(self) -> float:
        """Lower is better (MAIN_METRIC is an error); a run without it sorts last."""
        return self.metrics.get(MAIN_METRIC, math.inf)


def find(project_root: Path) -> list[Experiment]:
    found = []
    for folder in RUN_FOLDERS:
        for path in sorted((project_root / folder).glob("**/metadata.json")):
            try:
                metadata = json.loads(path.read_text())
                metrics = {k: float(v) for k, v in metadata["metrics"].items()}
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # not one of ours, or half written by a run that died
            found.append(
                Experiment(
                    run=path.parent.relative_to(project_root).as_posix(),
                    version=str(metadata.get("version", "?")),
                    overrides=[str(o) for o in metadata.get("overrides", [])],
                    metrics=metrics,
                )
            )
    return sorted(found, key=lambda e: (e.score, e.run))


def show(project_root: Path, limit: int = 0) -> None:
    experiments = find(project_root)
    if not experiments:
        print("no experiments yet: `inv train` writes them to outputs/, `--multirun` to multirun/")
        return
    shown = experiments[:limit] if limit > 0 else experiments
    names = sorted({m for e in shown for m in e.metrics}, key=lambda m: (m != MAIN_METRIC, m))
    rows = [
        {
            "rank": str(rank),
            **{m: f"{e.metrics[m]:.4g}" if m in e.metrics else "-" for m in names},
            "version": e.version,
            "overrides": " ".join(e.overrides) or "(none)",
            "run": e.run,
        }
        for rank, e in enumerate(shown, start=1)
    ]
    title = f"{len(experiments)} experiments, best {MAIN_METRIC} first"
    tables.show(("rank", *names, "version", "overrides", "run"), rows, title=title)
