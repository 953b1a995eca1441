"""The compiled pipelines, run through kfp's local execution (the YAML that dev/prod upload)."""

import json
import pickle
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import snapshot

from {{ cookiecutter.package }}.artifacts import traffic
from {{ cookiecutter.package }}.artifacts.intervals import Interval
from {{ cookiecutter.package }}.artifacts.names import ReleaseNames, names_for
from {{ cookiecutter.package }}.config import load_config
from {{ cookiecutter.package }}.errors import ReleaseError
from {{ cookiecutter.package }}.pipelines import inference_steps
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.ticks import run_inference
from {{ cookiecutter.package }}.release.workflows import compile_spec, deploy_workflows, train_adhoc

SHA = "0123456789abcdef0123456789abcdef01234567"


def context(cfg, tmp_path: Path, version: str | None = None) -> ReleaseContext:
    return ReleaseContext(cfg=cfg, names=names_for(cfg, version), project_root=tmp_path)


def test_compiled_pipelines_run_in_the_versions_image(cfg, tmp_path: Path) -> None:
    ctx = context(cfg, tmp_path)
    for workflow in ("training", "inference"):
        spec = yaml.safe_load(compile_spec(ctx, workflow, SHA))
        assert spec["pipelineInfo"]["name"] == f"{cfg.project}-{workflow}"
        images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
        assert images == {f"localhost/{cfg.project}:{cfg.version}"}
        defaults = spec["root"]["inputDefinitions"]["parameters"]
        # The release identity travels as one parameter: the names, as JSON.
        assert ReleaseNames.from_json(defaults["release"]["defaultValue"]) == ctx.names


@pytest.mark.slow
def test_training_creates_features_model_and_metadata(
    cfg, tmp_path: Path, artifact_root: Path
) -> None:
    ctx = context(cfg, tmp_path)
    train_adhoc(ctx, SHA)
    names = ctx.names
    metadata = json.loads((artifact_root / names.model_metadata_key).read_text())
    assert metadata["version"] == cfg.version
    assert metadata["feature_version"] == cfg.version
    assert metadata["git_sha"] == SHA
    assert metadata["metrics"]["mae"] > 0
    assert metadata["config"]["model"]["_target_"] == "sklearn.linear_model.Ridge"
    assert metadata["training_rows"] == {"rows_seen": 600, "rows_used": 600, "sample": "all"}
    model = pickle.loads((artifact_root / metadata["model_key"]).read_bytes())
    assert hasattr(model, "predict")
    assert ctx.feature_store.read(names.feature_version).shape[0] == 600

    # A second training of the same version changes nothing and says so.
    before = snapshot(artifact_root)
    train_adhoc(ctx, SHA)
    assert snapshot(artifact_root) == before


@pytest.mark.slow
def test_publishing_over_a_released_model_is_refused(
    cfg, tmp_path: Path, artifact_root: Path
) -> None:
    ctx = context(cfg, tmp_path)
    train_adhoc(ctx, SHA)
    before = snapshot(artifact_root)
    spec = compile_spec(ctx, "training", SHA)
    with pytest.raises(ReleaseError, match="failed"):
        ctx.engine.run(ctx.names, "training", spec, {}, 600)
    after = {k: v for k, v in snapshot(artifact_root).items()}
    assert after == before


@pytest.mark.slow
def test_pinned_feature_version_is_reused(cfg, tmp_path: Path, artifact_root: Path) -> None:
    first = context(cfg, tmp_path)
    train_adhoc(first, SHA)
    features = artifact_root / first.names.features_key()
    created = features.stat().st_mtime_ns
    # The next release's checkout: version bumped, features pinned to the previous version.
    pinned = load_config(
        "local",
        [
            f"env.artifact_root={artifact_root}",
            "data.n_trips=600",
            "model=ridge",
            f"features.version={cfg.version}",
        ],
    )
    pinned.version = "99.0.0"
    second = context(pinned, tmp_path)
    assert second.names.feature_version == cfg.version
    train_adhoc(second, SHA)
    assert features.stat().st_mtime_ns == created
    assert not (artifact_root / "features/99.0.0").exists()
    metadata = json.loads((artifact_root / "models/99.0.0/metadata.json").read_text())
    assert metadata["feature_version"] == cfg.version


@pytest.mark.slow
def test_deployed_inference_serves_the_clusters_assigned_when_it_runs(
    cfg, tmp_path: Path, artifact_root: Path
) -> None:
    ctx = context(cfg, tmp_path)
    train_adhoc(ctx, SHA)
    deploy_workflows(ctx, SHA)
    other = "9.9.9"  # another live version holds the rest: no gap, no overlap
    traffic.record(
        ctx.store,
        {cfg.version: [1, 2], other: [0, *range(3, 8)]},
        8,
        live=[cfg.version, other],
        reason="A/B",
    )
    run_inference(ctx, "batch-1")
    predictions = pd.read_parquet(artifact_root / ctx.names.predictions_key("batch-1"))
    # Scheduled runs draw a fresh batch (seed -1), which may miss a cluster: the checks hold
    # whatever clusters it drew. traffic.shadow: the other clusters' trips are predicted too.
    assert len(predictions) == 50  # data.inference_batch_size
    assert (predictions.served == predictions.user_cluster.isin([1, 2])).all()
    assert (predictions.model_version == cfg.version).all()
    assert [p.name for p in (artifact_root / "predictions").iterdir()] == [cfg.version]

    # The same compiled pipeline, after the assignment changed: the new clusters apply.
    traffic.record(
        ctx.store,
        {cfg.version: [5], other: [0, 1, 2, 3, 4, 6, 7]},
        8,
        live=[cfg.version, other],
        reason="shrink",
    )
    run_inference(ctx, "batch-2")
    second = pd.read_parquet(artifact_root / ctx.names.predictions_key("batch-2"))
    assert (second.served == (second.user_cluster == 5)).all()
    assert len(second) == len(predictions)

    # A version with no clusters predicts in shadow only; with traffic.shadow off, it writes
    # no predictions.
    traffic.record(ctx.store, {other: range(8)}, 8, live=[cfg.version, other], reason="off")
    run_inference(ctx, "batch-3")
    third = pd.read_parquet(artifact_root / ctx.names.predictions_key("batch-3"))
    assert not third.served.any() and len(third) == len(predictions)
    features = tmp_path / "batch.parquet"
    record, interval = str(tmp_path / "batch.json"), Interval.resolve()
    assert (
        inference_steps.make_batch_features(
            ctx.names, 50, 1, [7], str(features), record, interval, shadow=False
        )
        == 0
    )
    traffic.record(
        ctx.store,
        {cfg.version: [5], other: [0, 1, 2, 3, 4, 6, 7]},
        8,
        live=[cfg.version, other],
        reason="back",
    )
    inference_steps.make_batch_features(
        ctx.names, 50, 1, [7], str(features), record, interval, shadow=False
    )
    assert set(pd.read_parquet(features).user_cluster) == {5}
    schedules = ctx.engine.schedules(ctx.names)
    assert [(s.name, s.enabled) for s in schedules] == [
        (f"{cfg.project}-training-v{cfg.version}", True),
        (f"{cfg.project}-inference-v{cfg.version}", True),
    ]


def test_inference_of_an_undeployed_version_is_refused(cfg, tmp_path: Path) -> None:
    with pytest.raises(ReleaseError, match="no deployed inference workflow"):
        run_inference(context(cfg, tmp_path, version="42.0.0"))


@pytest.mark.slow
def test_training_against_a_gcs_emulator(cfg, tmp_path: Path, gcs_root: str) -> None:
    cfg.env.artifact_root = gcs_root
    ctx = context(cfg, tmp_path)
    train_adhoc(ctx, SHA)
    metadata = json.loads(ctx.store.read_text(ctx.names.model_metadata_key))
    assert metadata["model"] == f"{gcs_root}/{metadata['model_key']}"
    assert metadata["model_key"].startswith(f"models/{cfg.version}/model-")
    (manifest,) = [k for k in ctx.store.list("features/") if k.endswith("manifest.json")]
    assert manifest == ctx.names.features_key()
    parts = json.loads(ctx.store.read_text(manifest))["parts"]
    assert sorted(ctx.store.list("features/")) == sorted([manifest, *(p["key"] for p in parts)])
