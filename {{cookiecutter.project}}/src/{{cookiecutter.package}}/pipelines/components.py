"""kfp component functions: thin shims over `steps`, one per pipeline step.

kfp copies each function's source into a fresh module, so imports live inside the bodies.
Structured values (model and release config, where features and predictions are stored)
travel as JSON strings: kfp's dict parameters go through protobuf Struct, which turns every
integer into a float.
They are turned into components by `definitions.components_for(image)`: every step of a
version runs in that version's image.
"""

from kfp.dsl import Dataset, Input, Metrics, Model, Output


def build_features(
    project: str,
    version: str,
    feature_version: str,
    artifact_root: str,
    n_trips: int,
    seed: int,
    rush_hours: list,
    storage: str,
) -> str:
    from {{ cookiecutter.package }}.artifacts.names import ReleaseNames
    from {{ cookiecutter.package }}.pipelines import steps

    names = ReleaseNames(project, version, feature_version, artifact_root)
    return steps.ensure_features(
        names,
        n_trips,
        seed,
        rush_hours,
        steps.feature_store_of(names, storage),
        steps.data_source_of(names, storage, n_trips, seed),
        steps.max_invalid_share(storage),
    )


def train_model(
    project: str,
    version: str,
    feature_version: str,
    artifact_root: str,
    model_config: str,
    test_fraction: float,
    seed: int,
    storage: str,
    model: Output[Model],
    metrics: Output[Metrics],
) -> dict:
    """Fit and evaluate in one task: both need scikit-learn, which takes seconds to import."""
    import json

    from {{ cookiecutter.package }}.artifacts.names import ReleaseNames
    from {{ cookiecutter.package }}.pipelines import steps

    names = ReleaseNames(project, version, feature_version, artifact_root)
    features = steps.feature_store_of(names, storage)
    scores = steps.train_and_evaluate(
        names, json.loads(model_config), test_fraction, seed, model.path, features
    )
    for name, value in scores.items():
        metrics.log_metric(name, value)
    return scores


def publish_model(
    project: str,
    version: str,
    feature_version: str,
    artifact_root: str,
    model: Input[Model],
    metrics: dict,
    git_sha: str,
    config: str,
    storage: str,
) -> str:
    import json

    from {{ cookiecutter.package }}.artifacts.names import ReleaseNames
    from {{ cookiecutter.package }}.pipelines import steps

    names = ReleaseNames(project, version, feature_version, artifact_root)
    features = steps.feature_store_of(names, storage)
    return steps.publish_model(names, model.path, metrics, git_sha, json.loads(config), features)


def make_batch_features(
    project: str,
    version: str,
    feature_version: str,
    artifact_root: str,
    n_trips: int,
    seed: int,
    rush_hours: list,
    storage: str,
    features: Output[Dataset],
) -> int:
    from {{ cookiecutter.package }}.artifacts.names import ReleaseNames
    from {{ cookiecutter.package }}.pipelines import steps

    names = ReleaseNames(project, version, feature_version, artifact_root)
    return steps.make_batch_features(
        names,
        n_trips,
        seed,
        rush_hours,
        features.path,
        steps.data_source_of(names, storage, n_trips, seed),
        steps.max_invalid_share(storage),
        steps.shadow_of(storage),
    )


def predict_batch(
    project: str,
    version: str,
    feature_version: str,
    artifact_root: str,
    run_id: str,
    storage: str,
    features: Input[Dataset],
) -> str:
    from {{ cookiecutter.package }}.artifacts.names import ReleaseNames
    from {{ cookiecutter.package }}.pipelines import steps

    names = ReleaseNames(project, version, feature_version, artifact_root)
    return steps.predict_batch(names, features.path, run_id, steps.predictions_of(names, storage))
