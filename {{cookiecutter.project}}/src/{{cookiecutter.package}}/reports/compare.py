"""`inv compare`: two released versions side by side.

Metrics (from each model's metadata), configuration (the resolved Hydra config each was
trained with, as a diff) and predictions on one fixed, labelled batch. The predictions are
computed by each version's own code in its own environment (`reports.fixed_batch`), so a
change in feature or prediction code shows up here as it would in production.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from packaging.version import Version

from {{ cookiecutter.package }}.artifacts import models
from {{ cookiecutter.package }}.artifacts.tracking import scored_on
from {{ cookiecutter.package }}.engines.workers import (
    capture_in_worker,
    hosts_a_worker,
    module_script,
)
from {{ cookiecutter.package }}.errors import UserError
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.reports import tables
from {{ cookiecutter.package }}.reports.versions import known_versions

# Differs between versions by definition, or names where rather than what.
IGNORED_CONFIG = ("version", "env.")
CHANGED_BY_MINUTES = 1.0


class CompareError(UserError):
    pass


@dataclass(frozen=True)
class Scored:
    version: str
    metrics: dict[str, float]
    config: dict[str, str]
    actual: np.ndarray
    predicted: np.ndarray
    test_set: str = ""  # what `metrics` were measured on (`tracking.scored_on`)

    @property
    def residuals(self) -> np.ndarray:
        return self.predicted - self.actual


@dataclass(frozen=True)
class Comparison:
    old: Scored
    new: Scored

    @property
    def metric_names(self) -> list[str]:
        return sorted(set(self.old.metrics) | set(self.new.metrics))

    @property
    def config_changes(self) -> list[tuple[str, str, str]]:
        keys = sorted(set(self.old.config) | set(self.new.config))
        return [
            (key, self.old.config.get(key, "-"), self.new.config.get(key, "-"))
            for key in keys
            if self.old.config.get(key) != self.new.config.get(key)
        ]

    def prediction_stats(self) -> list[tuple[str, str, str]]:
        rows = []
        for name, stat in (
            ("mean", np.mean),
            ("p10", lambda v: np.percentile(v, 10)),
            ("median", np.median),
            ("p90", lambda v: np.percentile(v, 90)),
        ):
            rows.append(
                (
                    f"{name} (min)",
                    f"{stat(self.old.predicted):.2f}",
                    f"{stat(self.new.predicted):.2f}",
                )
            )
        rows.append(
            (
                "mae on this batch",
                f"{np.mean(np.abs(self.old.residuals)):.3f}",
                f"{np.mean(np.abs(self.new.residuals)):.3f}",
            )
        )
        return rows

    def agreement(self) -> str:
        gap = np.abs(self.new.predicted - self.old.predicted)
        changed = float(np.mean(gap > CHANGED_BY_MINUTES))
        return (
            f"{len(gap)} trips: mean |difference| {gap.mean():.2f} min, max {gap.max():.2f} "
            f"min, {changed:.1%} differ by more than {CHANGED_BY_MINUTES:g} min"
        )


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{path}."))
        elif not path.startswith(IGNORED_CONFIG):
            flat[path] = shown_value(value)
    return flat


def shown_value(value: Any) -> str:
    """A config value as people read it: a float to 6 significant digits (0.05, not
    0.05000000000000001), anything else as JSON, text as itself."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value if isinstance(value, str) else json.dumps(value)


def _score_batch(
    ctx: ReleaseContext, python: str, environment: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """The fixed batch scored by the version's own code: in its warm worker when it has one
    (`engines.workers`), else in a new interpreter."""
    module = "{{ cookiecutter.package }}.reports.fixed_batch"
    idle_s = float(ctx.cfg.env.get("worker_idle_seconds", 0))
    if idle_s > 0 and hosts_a_worker(python):
        package = module.split(".")[0]
        cwd = str(Path(python).parent.parent)
        script = module_script(module)
        return capture_in_worker(python, package, script, environment, cwd, idle_s)
    return subprocess.run([python, "-m", module], capture_output=True, text=True, env=environment)


def score(ctx: ReleaseContext, version: str) -> Scored:
    names = ctx.names_of(version)
    if not models.released(ctx.store, names):
        raise CompareError(f"version {version} has no released model on {ctx.env}")
    metadata = models.read_metadata(ctx.store, names)
    python = ctx.environments.python_for(names)
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    environment.update(ARTIFACT_ROOT=names.artifact_root, MODEL_VERSION=version)
    result = _score_batch(ctx, python, environment)
    if result.returncode != 0:
        if "No module named '{{ cookiecutter.package }}.reports'" in result.stderr:
            raise CompareError(
                f"version {version}'s code predates `inv compare`: compare versions released since"
            )
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise CompareError(f"scoring {version} with its own code failed: {last}")
    batch = json.loads(result.stdout)
    return Scored(
        version=version,
        metrics={k: float(v) for k, v in metadata["metrics"].items()},
        config=flatten(metadata["config"]),
        actual=np.asarray(batch["actual"], dtype=float),
        predicted=np.asarray(batch["predicted"], dtype=float),
        test_set=scored_on(metadata),
    )


def released_before(ctx: ReleaseContext, version: str) -> str:
    """The newest version with a released model older than `version`."""
    older = [
        v
        for v in known_versions(ctx)
        if Version(v) < Version(version) and models.released(ctx.store, ctx.names_of(v))
    ]
    if not older:
        raise CompareError(f"no version released before {version} on {ctx.env}: say --base")
    return older[-1]


def compare(ctx: ReleaseContext, base: str = "", new: str = "") -> Comparison:
    new = new or ctx.names.version
    base = base or released_before(ctx, new)
    if base == new:
        raise CompareError(f"compare two different versions, not {base} with itself")
    return Comparison(old=score(ctx, base), new=score(ctx, new))


def change(old: float | None, new: float | None) -> str:
    if old is None or new is None:
        return "-"
    return f"{new - old:+.4g}"


def show(comparison: Comparison) -> None:
    old, new = comparison.old, comparison.new
    same = old.test_set == new.test_set
    tables.show(
        ("metric", old.version, new.version, "change"),
        [
            {
                "metric": m,
                old.version: f"{old.metrics[m]:.4g}" if m in old.metrics else "-",
                new.version: f"{new.metrics[m]:.4g}" if m in new.metrics else "-",
                "change": change(old.metrics.get(m), new.metrics.get(m)) if same else "-",
            }
            for m in comparison.metric_names
        ],
        title=f"metrics (test split): {old.version} -> {new.version}",
    )
    if not same:
        print(
            f"no change shown: {old.version} was evaluated on {old.test_set}, {new.version} on "
            f"{new.test_set}; the fixed batch below compares both on the same trips"
        )
    print()
    changes = comparison.config_changes
    if changes:
        tables.show(
            ("config", old.version, new.version),
            [{"config": k, old.version: a, new.version: b} for k, a, b in changes],
            title="configuration changes",
        )
    else:
        print("configuration: the same (env.* aside)")
    print()
    tables.show(
        ("predictions", old.version, new.version),
        [
            {"predictions": k, old.version: a, new.version: b}
            for k, a, b in comparison.prediction_stats()
        ],
        title="predictions on one fixed batch, each version with its own code",
    )
    print(comparison.agreement())
