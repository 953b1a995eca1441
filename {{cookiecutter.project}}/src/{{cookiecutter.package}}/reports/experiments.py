"""`inv experiments`: the training runs, best first, ranked only against comparable runs.

Runs come from MLflow when tracking is on (`conf/tracking/`: every `inv train` job, each
trial of a search and each release's training), else from the folders Hydra wrote
(`outputs/`, `multirun/`: each run's `metadata.json`).

An error measured on another test set says nothing about which model is better: a run
scored on 4000 trips of 20000 is not ranked against one scored on 800 trips of 4000. Runs
are grouped by their test set (its size, the data it was cut from and the split) and
ranked within each group; the groups are shown apart, and the output says so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from {{ cookiecutter.package }}.artifacts.tracking import Tracker, scored_on
from {{ cookiecutter.package }}.errors import UserError
from {{ cookiecutter.package }}.ml import MAIN_METRIC
from {{ cookiecutter.package }}.reports import tables

RUN_FOLDERS = ("outputs", "multirun")
TRACKED_KINDS = ("experiment", "trial", "release")  # a sweep's own run holds no model


@dataclass(frozen=True)
class Experiment:
    run: str  # the run's folder, relative to the project, or its MLflow run name and id
    version: str
    overrides: list[str]
    metrics: dict[str, float]
    test_set: str = "unknown"  # what the metrics were measured on

    @property
    def score(self) -> float:
        """Lower is better (MAIN_METRIC is an error); a run without it sorts last."""
        return self.metrics.get(MAIN_METRIC, math.inf)


def find(project_root: Path) -> list[Experiment]:
    """The runs Hydra wrote under the project, best first."""
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
                    test_set=scored_on(metadata) if "config" in metadata else "unknown",
                )
            )
    return sorted(found, key=lambda e: (e.score, e.run))


def tracked(tracker: Tracker) -> list[Experiment]:
    """The finished training runs of the MLflow experiment, best first."""
    found = [
        Experiment(
            run=f"{run.name} ({run.run_id[:8]})",
            version=run.tags.get("version", "?"),
            overrides=run.tags.get(
                "overrides", f"(release {run.tags.get('version')})" if run.kind == "release" else ""
            ).split(),
            metrics=run.metrics,
            test_set=run.tags.get("test_set", "unknown"),
        )
        for run in tracker.runs()
        if run.kind in TRACKED_KINDS and run.status == "FINISHED"
    ]
    return sorted(found, key=lambda e: (e.score, e.run))


def named(experiments: Sequence[Experiment], run: str) -> Experiment:
    """The experiment `run` names, as `inv experiments` shows it in its run column: a run's
    folder, an MLflow run's name, or the first characters (6 or more) of its id."""
    wanted = run.strip().rstrip("/")

    def matches(experiment: Experiment) -> bool:
        name, _, shown_id = experiment.run.partition(" (")
        return wanted in (experiment.run, name) or (
            len(wanted) >= 6 and shown_id.rstrip(")").startswith(wanted[:8])
        )

    found = [experiment for experiment in experiments if matches(experiment)]
    if not found:
        raise UserError(f"no experiment {run!r}: `inv experiments` lists them (the run column)")
    if len(found) > 1:
        raise UserError(f"{run!r} names {len(found)} experiments: give its whole run column")
    if any(override.startswith("(") for override in found[0].overrides):
        raise UserError(
            f"{found[0].run} is a release's training: its settings are its version's conf/"
        )
    return found[0]


def comparable(experiments: Sequence[Experiment]) -> list[list[Experiment]]:
    """The runs grouped by test set, each group best first; the largest group first."""
    groups: dict[str, list[Experiment]] = {}
    for experiment in sorted(experiments, key=lambda e: (e.score, e.run)):
        groups.setdefault(experiment.test_set, []).append(experiment)
    return sorted(groups.values(), key=lambda g: (-len(g), g[0].score))


def show(experiments: Sequence[Experiment], limit: int = 0, source: str = "outputs/") -> None:
    if not experiments:
        print(
            f"no experiments in {source} yet: `inv train` writes them to outputs/, "
            "`--multirun` to multirun/"
        )
        return
    groups = comparable(experiments)
    if len(groups) > 1:
        print(
            f"{len(experiments)} experiments on {len(groups)} different test sets: "
            f"ranked within each, their {MAIN_METRIC} do not compare across them"
        )
    for group in groups:
        if len(groups) > 1:
            print(f"\ntest set: {group[0].test_set}")
        show_group(group, limit, source)


def show_group(group: Sequence[Experiment], limit: int, source: str) -> None:
    shown = group[:limit] if limit > 0 else group
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
    title = (
        f"{len(group)} experiments from {source}, best {MAIN_METRIC} first, on {group[0].test_set}"
    )
    tables.show(("rank", *names, "version", "overrides", "run"), rows, title=title)
