"""The training and batch-inference pipelines, and their compilation for one version.

A version's pipelines are compiled once, with that version's image and parameter defaults;
the same YAML is run by kfp's local execution (env local) and uploaded to Kubeflow
Pipelines (dev, prod).
"""

# No `from __future__ import annotations` here: kfp reads the pipeline functions' annotations
# as types, not strings.
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from kfp import compiler, dsl

from {{ cookiecutter.package }}.artifacts.names import ReleaseNames, Workflow
from {{ cookiecutter.package }}.pipelines import components


def components_for(image: str) -> SimpleNamespace:
    """Every component, running in `image` (kfp itself is a dependency of that image)."""

    def make(func):
        return dsl.component(func, base_image=image, install_kfp_package=False)

    return SimpleNamespace(
        build_features=make(components.build_features),
        train_model=make(components.train_model),
        publish_model=make(components.publish_model),
        make_batch_features=make(components.make_batch_features),
        predict_batch=make(components.predict_batch),
    )


def training_pipeline(names: ReleaseNames, image: str):
    ops = components_for(image)

    @dsl.pipeline(
        name=names.pipeline_name("training"),
        description=f"Features and model of version {names.version}",
    )
    def training(
        project: str,
        version: str,
        feature_version: str,
        artifact_root: str,
        n_trips: int,
        seed: int,
        rush_hours: list,
        model_config: str,
        test_fraction: float,
        git_sha: str,
        config: str,
        storage: str,
    ) -> str:
        release = dict(
            project=project,
            version=version,
            feature_version=feature_version,
            artifact_root=artifact_root,
        )
        features = ops.build_features(
            **release, n_trips=n_trips, seed=seed, rush_hours=rush_hours, storage=storage
        )
        trained = ops.train_model(
            **release,
            model_config=model_config,
            test_fraction=test_fraction,
            seed=seed,
            storage=storage,
        ).after(features)
        published = ops.publish_model(
            **release,
            model=trained.outputs["model"],
            metrics=trained.outputs["Output"],
            git_sha=git_sha,
            config=config,
            storage=storage,
        )
        return published.output

    return training


def inference_pipeline(names: ReleaseNames, image: str):
    ops = components_for(image)

    @dsl.pipeline(
        name=names.pipeline_name("inference"),
        description=f"Batch predictions of version {names.version}",
    )
    def inference(
        project: str,
        version: str,
        feature_version: str,
        artifact_root: str,
        n_trips: int,
        seed: int,
        rush_hours: list,
        run_id: str,
        storage: str,
    ) -> str:
        release = dict(
            project=project,
            version=version,
            feature_version=feature_version,
            artifact_root=artifact_root,
        )
        batch = ops.make_batch_features(
            **release, n_trips=n_trips, seed=seed, rush_hours=rush_hours, storage=storage
        )
        predicted = ops.predict_batch(
            **release, run_id=run_id, storage=storage, features=batch.outputs["features"]
        )
        return predicted.output

    return inference


PIPELINES = {"training": training_pipeline, "inference": inference_pipeline}


def compile_workflow(
    workflow: Workflow, names: ReleaseNames, image: str, parameters: dict[str, Any]
) -> str:
    """The pipeline spec YAML of `workflow` for this version, parameters as defaults."""
    pipeline = PIPELINES[workflow](names, image)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / f"{workflow}.yaml"
        compiler.Compiler().compile(pipeline, str(path), pipeline_parameters=parameters)
        return path.read_text()
