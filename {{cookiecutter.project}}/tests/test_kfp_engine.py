"""Dev/prod on Kubeflow Pipelines, against the v2beta1 API test double (see kfp_api_double)."""

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import SMALL, composed, snapshot
from kfp_api_double import KfpApiDouble

from {{ cookiecutter.package }}.artifacts import traffic
from {{ cookiecutter.package }}.artifacts.names import names_for
from {{ cookiecutter.package }}.engines.local import LocalEngine
from {{ cookiecutter.package }}.errors import ReleaseError
from {{ cookiecutter.package }}.release import retention
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.lifecycle import retire, rollback
from {{ cookiecutter.package }}.release.plan import release
from {{ cookiecutter.package }}.release.workflows import deploy_workflows
from {{ cookiecutter.package }}.reports.versions import table

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def kfp_api() -> Iterator[KfpApiDouble]:
    with KfpApiDouble() as double:
        yield double
    assert double.state.rejected == []


def dev_config(artifact_root: Path, host: str, *overrides: str):
    return composed(
        "dev",
        ["+env.kfp_poll_seconds=0.01", "env.builder=none", *SMALL, *overrides],
        {"env.artifact_root": str(artifact_root), "env.kfp_host": host},
    )


def context(cfg, root: Path, version: str) -> ReleaseContext:
    return ReleaseContext(cfg=cfg, names=names_for(cfg, version), project_root=root)


def test_two_versions_deploy_side_by_side(
    kfp_api: KfpApiDouble, artifact_root: Path, tmp_path: Path
) -> None:
    cfg = dev_config(artifact_root, kfp_api.host)
    for version in ("0.1.0", "0.2.0"):
        deploy_workflows(context(cfg, tmp_path, version), SHA)

    for workflow in ("training", "inference"):
        versions = kfp_api.pipeline_versions(f"{cfg.project}-{workflow}")
        # KFP's first upload makes an unnamed default version; ours are named by release.
        assert [v["display_name"] for v in versions] == [
            f"{cfg.project}-{workflow}",
            "0.1.0",
            "0.2.0",
        ]
    for version in ("0.1.0", "0.2.0"):
        inference = kfp_api.recurring_run(f"{cfg.project}-inference-v{version}")
        training = kfp_api.recurring_run(f"{cfg.project}-training-v{version}")
        assert inference["mode"] == training["mode"] == "ENABLE"
        # No user clusters in the recurring run: each run reads the traffic assignment.
        assert inference["runtime_config"].get("parameters") in (None, {})
        assert inference["trigger"] == {"periodic_schedule": {"interval_second": 600}}
        assert training["trigger"]["cron_schedule"]["cron"] == cfg.schedules.training.cron
        assert inference["max_concurrency"] == 1 and inference["no_catchup"] is True
        version_id = inference["pipeline_version_reference"]["pipeline_version_id"]
        uploaded = next(
            v
            for v in kfp_api.pipeline_versions(f"{cfg.project}-inference")
            if v["pipeline_version_id"] == version_id
        )
        assert uploaded["display_name"] == version
        defaults = uploaded["pipeline_spec"]["root"]["inputDefinitions"]["parameters"]
        assert json.loads(defaults["release"]["defaultValue"])["version"] == version
        images = {
            e["container"]["image"]
            for e in uploaded["pipeline_spec"]["deploymentSpec"]["executors"].values()
        }
        assert images == {f"{cfg.env.registry}/{cfg.project}:{version}"}
    experiments = {e["display_name"] for e in kfp_api.state.experiments.values()}
    assert experiments == {f"{cfg.project}-dev"}


@pytest.mark.slow
def test_the_uploaded_training_spec_runs_locally(
    kfp_api: KfpApiDouble, artifact_root: Path, tmp_path: Path
) -> None:
    """The YAML Kubeflow Pipelines received is the YAML that is tested."""
    cfg = dev_config(artifact_root, kfp_api.host)
    # The checkout's version: a local run of any other needs that version's published code.
    ctx = context(cfg, tmp_path, str(cfg.version))
    version, other = ctx.names.version, "99.0.0"
    deploy_workflows(ctx, SHA)
    uploaded = next(
        v
        for v in kfp_api.pipeline_versions(f"{cfg.project}-training")
        if v["display_name"] == version
    )["pipeline_spec"]
    assert (
        yaml.safe_load((artifact_root / f"workflows/{version}/training.yaml").read_text())
        == uploaded
    )
    local = LocalEngine(ctx.store, tmp_path / ".kfp-local", ctx.environments)
    output = local.run(ctx.names, "training", yaml.safe_dump(uploaded), {}, 600)
    assert re.search(rf"models/{re.escape(version)}/model-[0-9a-f]+\.pkl$", output), output
    assert (artifact_root / f"models/{version}/metadata.json").exists()

    # The uploaded inference pipeline, run with its recurring run's parameters, serves the
    # clusters assigned when it starts: a new assignment needs no new upload.
    inference = next(
        v
        for v in kfp_api.pipeline_versions(f"{cfg.project}-inference")
        if v["display_name"] == version
    )["pipeline_spec"]
    parameters = kfp_api.recurring_run(f"{cfg.project}-inference-v{version}")["runtime_config"]
    posts = [r for r in kfp_api.state.requests if r[0] == "POST"]
    for clusters in ([0, 1, 2, 3], [6]):
        rest = [c for c in range(8) if c not in clusters]
        traffic.record(ctx.store, {version: clusters, other: rest}, 8, [version, other], "ab")
        run_id = f"ab-{len(clusters)}"
        arguments = {**(parameters.get("parameters") or {}), "run_id": run_id}
        local.run(ctx.names, "inference", yaml.safe_dump(inference), arguments, 600)
        batch = pd.read_parquet(artifact_root / ctx.names.predictions_key(run_id))
        # Scheduled runs draw a fresh batch (seed -1): a 50-trip batch misses one of the 8
        # clusters about 1% of the time, so nothing here depends on which clusters it drew.
        assert len(batch) == 50  # data.inference_batch_size: every trip, the rest in shadow
        assert (batch.served == batch.user_cluster.isin(clusters)).all()
    assert [r for r in kfp_api.state.requests if r[0] == "POST"] == posts


def test_redeploy_is_a_no_op_and_a_changed_pipeline_is_refused(
    kfp_api: KfpApiDouble, artifact_root: Path, tmp_path: Path
) -> None:
    cfg = dev_config(artifact_root, kfp_api.host)
    deploy_workflows(context(cfg, tmp_path, "0.1.0"), SHA)
    posts = [r for r in kfp_api.state.requests if r[0] == "POST"]
    deploy_workflows(context(cfg, tmp_path, "0.1.0"), SHA)
    assert [r for r in kfp_api.state.requests if r[0] == "POST"] == posts

    # Someone changes the pipeline without bumping the version: KFP refuses it too.
    changed = dev_config(artifact_root / "elsewhere", kfp_api.host, "data.n_trips=601")
    with pytest.raises(ReleaseError, match="exists with a different spec"):
        deploy_workflows(context(changed, tmp_path, "0.1.0"), SHA)
    assert [r for r in kfp_api.state.requests if r[0] == "POST"] == posts


def test_retire_and_rollback_flip_recurring_runs(
    kfp_api: KfpApiDouble, artifact_root: Path, tmp_path: Path
) -> None:
    cfg = dev_config(artifact_root, kfp_api.host)
    for version in ("0.1.0", "0.2.0"):
        ctx = context(cfg, tmp_path, version)
        deploy_workflows(ctx, SHA)
        ctx.store.write_text(ctx.names.release_record_key, "{}")  # released, untrained here

    def modes() -> dict[str, str]:
        return {r["display_name"]: r["mode"] for r in kfp_api.state.recurring_runs.values()}

    retire(context(cfg, tmp_path, "0.2.0"), "0.1.0")
    assert modes() == {
        f"{cfg.project}-training-v0.1.0": "DISABLE",
        f"{cfg.project}-inference-v0.1.0": "DISABLE",
        f"{cfg.project}-training-v0.2.0": "ENABLE",
        f"{cfg.project}-inference-v0.2.0": "ENABLE",
    }
    rollback(context(cfg, tmp_path, "0.2.0"), "0.1.0")
    assert modes() == {
        f"{cfg.project}-training-v0.1.0": "ENABLE",
        f"{cfg.project}-inference-v0.1.0": "ENABLE",
        f"{cfg.project}-training-v0.2.0": "DISABLE",
        f"{cfg.project}-inference-v0.2.0": "DISABLE",
    }
    assert len(kfp_api.state.recurring_runs) == 4  # disabled, never deleted


def test_gc_deletes_a_swept_versions_recurring_runs_then_its_pipeline_versions(
    kfp_api: KfpApiDouble, artifact_root: Path, tmp_path: Path
) -> None:
    # No registry: images are test_image's (the template's tests, a registry on loopback).
    cfg = dev_config(artifact_root, kfp_api.host, "retention.keep_retired=0", "env.registry=")
    cfg.retention.grace_days = 0
    for version in ("0.1.0", "0.2.0"):
        ctx = context(cfg, tmp_path, version)
        deploy_workflows(ctx, SHA)
        ctx.store.write_text(ctx.names.release_record_key, "{}")  # released, untrained here
    ctx = context(cfg, tmp_path, "0.2.0")
    retire(ctx, "0.1.0")
    named = ctx.names_of("0.1.0").pipeline_version_name
    old = {
        f"{kind}/{item}"
        for kind, items in (
            ("recurringruns", [r for r, v in kfp_api.state.recurring_runs.items()
                               if v["display_name"].endswith("v0.1.0")]),
            ("versions", [v["pipeline_version_id"] for vs in kfp_api.state.versions.values()
                          for v in vs if v["display_name"] == named]),
        )
        for item in items
    }  # fmt: skip
    assert len(old) == 4

    planned = retention.gc(ctx, apply=True)["tombstoned"]["0.1.0"]
    assert [r.kind for r in planned] == ["workflow"] * 4
    assert {r.uri.rsplit("/", 2)[-2] for r in planned[:2]} == {"recurringruns"}
    assert {r.uri.rsplit("/", 1)[-1] for r in planned} == {o.split("/")[1] for o in old}
    assert all(r.uri.startswith(f"{kfp_api.host}/apis/v2beta1/") for r in planned)
    assert not [r for r in kfp_api.state.requests if r[0] == "DELETE"]  # tombstoned only

    retention.gc(ctx, apply=True)
    deletes = [path for method, path in kfp_api.state.requests if method == "DELETE"]
    assert [p.rsplit("/", 1)[-1] for p in deletes] == [r.uri.rsplit("/", 1)[-1] for r in planned]
    names = {r["display_name"] for r in kfp_api.state.recurring_runs.values()}
    assert names == {f"{cfg.project}-training-v0.2.0", f"{cfg.project}-inference-v0.2.0"}
    remaining = {v["display_name"] for vs in kfp_api.state.versions.values() for v in vs}
    assert ctx.names_of("0.1.0").pipeline_version_name not in remaining
    assert ctx.names.pipeline_version_name in remaining
    assert ctx.engine.holdings(ctx.names_of("0.1.0")) == []
    audit = snapshot(artifact_root)
    assert len([k for k in audit if k.startswith("retention/audit/0.1.0/")]) == 4
    # 0.2.0 still runs on its schedules, and a second sweep has nothing to do.
    assert retention.is_enabled(ctx, "0.2.0")
    assert retention.gc(ctx, apply=True)["swept"] == {}


@pytest.mark.heavy
def test_a_failed_adhoc_run_stops_the_release_before_any_schedule(
    kfp_api: KfpApiDouble, artifact_root: Path, git_repo: Path
) -> None:
    subprocess.run(["git", "checkout", "-q", "-b", "develop"], cwd=git_repo, check=True)
    cfg = dev_config(artifact_root, kfp_api.host)
    kfp_api.state.fail_runs_with = "train-model: OOMKilled"
    ctx = ReleaseContext(cfg=cfg, names=names_for(cfg), project_root=git_repo)
    with pytest.raises(ReleaseError, match="ended FAILED: train-model: OOMKilled"):
        release(ctx)
    assert len(kfp_api.state.runs) == 1
    assert kfp_api.state.recurring_runs == {}
    assert kfp_api.state.pipelines == {}
    assert not any(key.startswith(("workflows", "releases")) for key in snapshot(artifact_root))


def test_missing_host_is_a_clear_error(artifact_root: Path, tmp_path: Path) -> None:
    cfg = dev_config(artifact_root, "")
    with pytest.raises(ReleaseError, match="no Kubeflow Pipelines host for dev"):
        context(cfg, tmp_path, "0.1.0").engine.check()


def test_versions_table_reads_pipeline_versions_and_schedules_from_kfp(
    kfp_api: KfpApiDouble, artifact_root: Path, tmp_path: Path
) -> None:
    cfg = dev_config(artifact_root, kfp_api.host)
    for version in ("0.1.0", "0.2.0"):
        deploy_workflows(context(cfg, tmp_path, version), SHA)
    retire(context(cfg, tmp_path, "0.2.0"), "0.1.0")
    rows = [line.split() for line in table(context(cfg, tmp_path, "0.2.0")).splitlines()]
    # No model released here, so no metric columns.
    assert rows[0][:6] == ["version", "image", "code", "features", "workflows", "schedules"]
    assert [row[0] for row in rows[1:]] == ["0.1.0", "0.2.0"]
    assert rows[1][4:6] == ["training,inference", "training:off,inference:off"]
    assert rows[2][4:6] == ["training,inference", "training:on,inference:on"]
    # The engine, not the store, answers: a pipeline version deleted in KFP shows as missing.
    pipeline = next(
        p
        for p in kfp_api.state.pipelines.values()
        if p["display_name"] == f"{cfg.project}-inference"
    )
    kfp_api.state.versions[pipeline["pipeline_id"]] = [
        v for v in kfp_api.state.versions[pipeline["pipeline_id"]] if v["display_name"] != "0.1.0"
    ]
    rows = [line.split() for line in table(context(cfg, tmp_path, "0.2.0")).splitlines()]
    assert rows[1][4] == "training"
