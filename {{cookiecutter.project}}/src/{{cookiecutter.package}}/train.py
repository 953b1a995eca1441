"""Hydra experiments: one training with overrides, or a sweep (`inv train`, `--multirun`).

`python -m {{ cookiecutter.package }}.train model=random_forest +experiment=...` runs one.

A thin `@hydra.main` wrapper over `run_experiment(cfg)` (as in lightning-hydra-template):
Hydra owns the command line, `--multirun` sweeps and the output directory
(outputs/<version>/<time>/), where the model and its metadata are written. Experiments
never touch released artifacts; `inv release` trains the released model.
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from {{ cookiecutter.package }}.config import CONF_DIR, to_plain
from {{ cookiecutter.package }}.errors import UserError
from {{ cookiecutter.package }}.ml import MAIN_METRIC
from {{ cookiecutter.package }}.ml.features import build_features
from {{ cookiecutter.package }}.ml.fitting import check_training_config, fit_and_evaluate


def read_training_trips(cfg: DictConfig) -> tuple[Any, dict]:
    """The configured data source's trips, shaped by the declared schema, with lineage:
    the pipeline's own reading (`steps.training_trips`), so an experiment and a release
    read the same rows."""
    from {{ cookiecutter.package }}.artifacts.data_sources import open_data_source
    from {{ cookiecutter.package }}.pipelines.steps import training_trips

    source = open_data_source(to_plain(cfg)["data_source"], str(cfg.env.artifact_root))
    trips, lineage, _ = training_trips(source, float(cfg.data.max_invalid_share))
    return trips, lineage


def run_experiment(cfg: DictConfig, output_dir: Path, overrides: list[str]) -> dict:
    """Train and evaluate the configured model; write model.pkl and metadata.json."""
    check_training_config(to_plain(cfg)["model"], cfg.data.n_trips, cfg.data.test_fraction)
    trips, lineage = read_training_trips(cfg)
    features = build_features(trips, cfg.features.rush_hours)
    model, metrics = fit_and_evaluate(
        features, to_plain(cfg)["model"], cfg.data.test_fraction, cfg.data.seed
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "model.pkl").write_bytes(pickle.dumps(model))
    metadata = {
        "version": str(cfg.version),
        "overrides": overrides,
        "main_metric": MAIN_METRIC,
        "metrics": metrics,
        "data": lineage,
        "config": to_plain(cfg),
    }
    (output_dir / "metadata.json").write_text(json.dumps(metadata, indent=2))
    return metadata


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        metadata = run_experiment(cfg, output_dir, list(hydra_cfg.overrides.task))
    except UserError as error:  # unreadable or invalid data: one line, no traceback
        sys.exit(f"error: {error}")
    except ValueError as error:
        sys.exit(f"error: invalid configuration: {error}")  # one line, no traceback
    print(f"{cfg.version} {metadata['overrides']}: {metadata['metrics']} -> {output_dir}")
    # The returned value is what Hydra sweepers (e.g. Optuna) minimise.
    return float(metadata["metrics"][MAIN_METRIC])


if __name__ == "__main__":
    main()
