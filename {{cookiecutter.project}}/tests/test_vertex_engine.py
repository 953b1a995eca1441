"""Dev/prod on Vertex AI Pipelines (`engine: vertex`), against the Vertex AI and Artifact
Registry test double (see vertex_api_double): the exact requests the real clients send."""

import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import SMALL, composed, snapshot
from vertex_api_double import VertexApiDouble

from {{ cookiecutter.package }}.artifacts.names import names_for
from {{ cookiecutter.package }}.engines.vertex import VertexEngine, vertex_cron
from {{ cookiecutter.package }}.engines.vertex_api import version_label
from {{ cookiecutter.package }}.errors import ReleaseError
from {{ cookiecutter.package }}.release import workflows
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.lifecycle import retire, rollback
from {{ cookiecutter.package }}.release.plan import release
from {{ cookiecutter.package }}.reports.versions import table
from {{ cookiecutter.package }}.version import PROJECT

SHA = "0123456789abcdef0123456789abcdef01234567"
ROOT = "gs://test-pipelines/root"


@pytest.fixture
def vertex() -> Iterator[VertexApiDouble]:
    with VertexApiDouble() as double:
        yield double
    assert double.state.rejected == []


def vertex_overrides(double: VertexApiDouble) -> list[str]:
    return [
        "env.engine=vertex",
        f"env.vertex.api_endpoint={double.endpoint}",
        f"env.vertex.templates={double.templates}",
        f"env.vertex.project={double.project}",
        f"env.vertex.location={double.location}",
        f"env.vertex.pipeline_root={ROOT}",
        "env.vertex.poll_seconds=0.01",
    ]


def dev_config(artifact_root: Path, double: VertexApiDouble, *overrides: str):
    return composed(
        "dev",
        ["env.builder=none", *SMALL, *vertex_overrides(double), *overrides],
        {"env.artifact_root": str(artifact_root)},
    )


def context(cfg, root: Path, version: str) -> ReleaseContext:
    return ReleaseContext(cfg=cfg, names=names_for(cfg, version), project_root=root)


def uploads(double: VertexApiDouble) -> list[tuple[str, str, object]]:
    return [r for r in double.calls("POST", double.repository) if r[1] == double.repository]


def test_deploy_uploads_tagged_templates_and_schedules_them_by_sha256_address(
    vertex: VertexApiDouble, artifact_root: Path, tmp_path: Path
) -> None:
    cfg = dev_config(artifact_root, vertex)
    ctx = context(cfg, tmp_path, "0.1.0")
    workflows.deploy_workflows(ctx, SHA)

    packages = vertex.state.packages
    assert set(packages) == {f"{PROJECT}-training", f"{PROJECT}-inference"}
    for workflow in ("training", "inference"):
        package = packages[f"{PROJECT}-{workflow}"]
        (digest,) = package["versions"]
        assert package["tags"] == {"v0-1-0": digest}
        stored = ctx.store.read_text(ctx.names.workflow_key(workflow))
        assert package["versions"][digest] == stored  # the released spec, byte for byte
        schedule = vertex.schedule(ctx.names.recurring_run_name(workflow))
        job = schedule["createPipelineJobRequest"]["pipelineJob"]
        # The sha256 address, never the tag.
        assert job["templateUri"] == f"{vertex.templates}/{PROJECT}-{workflow}/{digest}"
        assert job["runtimeConfig"]["gcsOutputDirectory"] == ROOT
        planned = next(s for s in workflows.planned_schedules(ctx) if s.workflow == workflow)
        assert job["runtimeConfig"].get("parameterValues", {}) == planned.parameters
        assert job["labels"] == {"project": PROJECT, "version": "v0-1-0", "workflow": workflow}
        assert job["serviceAccount"] == cfg.env.vertex.service_account
        assert schedule["cron"] == vertex_cron(planned)
        assert int(schedule["maxConcurrentRunCount"]) == 1  # an int64: a string in JSON
        assert schedule["state"] == "ACTIVE"
    assert vertex.schedule(f"{PROJECT}-training-v0.1.0")["cron"] == "0 3 */3 * *"
    assert vertex.schedule(f"{PROJECT}-inference-v0.1.0")["cron"] == "*/10 * * * *"
    assert len(uploads(vertex)) == 2

    # Deployed again: the same templates and schedules, nothing uploaded or created.
    before = len(vertex.state.requests)
    workflows.deploy_workflows(ctx, SHA)
    made = [r for r in vertex.state.requests[before:] if r[0] in ("POST", "DELETE")]
    assert made == []

    # The same version with other settings: refused before any upload; the tag stays.
    tags = {name: dict(p["tags"]) for name, p in packages.items()}
    changed = context(
        dev_config(artifact_root / "other", vertex, "data.n_trips=601"), tmp_path, "0.1.0"
    )
    with pytest.raises(ReleaseError, match="a released template never changes, bump the version"):
        workflows.deploy_workflows(changed, SHA)
    assert len(uploads(vertex)) == 2
    assert {name: p["tags"] for name, p in packages.items()} == tags


def test_a_run_is_a_pipeline_job_of_the_versions_parameters(
    vertex: VertexApiDouble, artifact_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = dev_config(artifact_root, vertex, "env.vertex.network=projects/123/global/networks/ml")
    ctx = context(cfg, tmp_path, "0.2.0")
    spec = workflows.compile_spec(ctx, "training", SHA)
    arguments = {"release": '{"version": "0.2.0"}', "n_trips": 600}
    name = ctx.engine.run(ctx.names, "training", spec, arguments, timeout_s=30)

    ((_, path, job),) = vertex.calls("POST", "/pipelineJobs")
    assert path == f"/v1/{vertex.parent}/pipelineJobs"
    assert name.startswith(f"{vertex.parent}/pipelineJobs/{PROJECT}-training-v0-2-0-")
    assert job["runtimeConfig"] == {"gcsOutputDirectory": ROOT, "parameterValues": arguments}
    assert job["network"] == "projects/123/global/networks/ml"
    assert job["labels"]["version"] == "v0-2-0"
    # An ad-hoc run's template is uploaded by address only: no tag moves or appears.
    package = vertex.state.packages[f"{PROJECT}-training"]
    assert package["tags"] == {}
    assert (
        job["templateUri"]
        == f"{vertex.templates}/{PROJECT}-training/{next(iter(package['versions']))}"
    )
    out = capsys.readouterr().out
    assert f"submitted {name}" in out and "RUNNING" in out and "SUCCEEDED" in out

    # Registered later (the release's deploy), the same bytes get the tag: no second upload.
    ctx.engine.register(ctx.names, "training", spec)
    assert len(uploads(vertex)) == 1 and list(package["tags"]) == ["v0-2-0"]


@pytest.mark.heavy
def test_a_failed_run_stops_the_release_before_any_schedule(
    vertex: VertexApiDouble, artifact_root: Path, git_repo: Path
) -> None:
    subprocess.run(["git", "checkout", "-q", "-b", "develop"], cwd=git_repo, check=True)
    cfg = dev_config(artifact_root, vertex)
    vertex.state.fail_runs_with = "The replica workerpool0-0 exited with a non-zero status of 137"
    ctx = ReleaseContext(cfg=cfg, names=names_for(cfg), project_root=git_repo)
    with pytest.raises(ReleaseError, match=r"ended FAILED: The replica workerpool0-0 exited"):
        release(ctx)
    assert len(vertex.calls("POST", "/pipelineJobs")) == 1
    assert vertex.state.schedules == {}
    assert not any(key.startswith(("workflows", "releases")) for key in snapshot(artifact_root))


def test_retire_pauses_and_rollback_resumes_schedules(
    vertex: VertexApiDouble, artifact_root: Path, tmp_path: Path
) -> None:
    cfg = dev_config(artifact_root, vertex)
    for version in ("0.1.0", "0.2.0"):
        ctx = context(cfg, tmp_path, version)
        workflows.deploy_workflows(ctx, SHA)
        ctx.store.write_text(ctx.names.release_record_key, "{}")  # released, untrained here

    def states() -> dict[str, str]:
        return {s["displayName"]: s["state"] for s in vertex.state.schedules.values()}

    def actions() -> list[str]:
        return [p.rsplit("/", 1)[-1] for _, p, _ in vertex.calls("POST", ":")]

    retire(context(cfg, tmp_path, "0.2.0"), "0.1.0")
    assert states() == {
        f"{PROJECT}-training-v0.1.0": "PAUSED",
        f"{PROJECT}-inference-v0.1.0": "PAUSED",
        f"{PROJECT}-training-v0.2.0": "ACTIVE",
        f"{PROJECT}-inference-v0.2.0": "ACTIVE",
    }
    assert [a.split(":")[1] for a in actions()] == ["pause", "pause"]
    rollback(context(cfg, tmp_path, "0.2.0"), "0.1.0")
    assert states() == {
        f"{PROJECT}-training-v0.1.0": "ACTIVE",
        f"{PROJECT}-inference-v0.1.0": "ACTIVE",
        f"{PROJECT}-training-v0.2.0": "PAUSED",
        f"{PROJECT}-inference-v0.2.0": "PAUSED",
    }
    assert [a.split(":")[1] for a in actions()] == ["pause"] * 2 + ["resume"] * 2 + ["pause"] * 2
    assert vertex.calls("DELETE") == []  # paused, never deleted

    # `inv versions` reads templates, schedule states and the newest runs from Vertex.
    ctx = context(cfg, tmp_path, "0.2.0")
    spec = ctx.store.read_text(ctx.names.workflow_key("inference"))
    ctx.engine.run(ctx.names, "inference", spec, {}, timeout_s=30)
    listed = table(ctx)
    line = next(line for line in listed.splitlines() if line.startswith("0.2.0"))
    assert "training:off,inference:off" in line
    assert "inference sha256:" in line and "last run SUCCEEDED" in line
    assert "training sha256:" in line and "last run none" in line


def test_a_changed_schedule_is_replaced_by_display_name(
    vertex: VertexApiDouble, artifact_root: Path, tmp_path: Path
) -> None:
    ctx = context(dev_config(artifact_root, vertex), tmp_path, "0.1.0")
    workflows.deploy_workflows(ctx, SHA)
    old = vertex.schedule(f"{PROJECT}-inference-v0.1.0")["name"]
    schedules = workflows.planned_schedules(ctx)
    faster = [
        s if s.workflow == "training" else s.__class__(**{**s.__dict__, "interval_seconds": 300})
        for s in schedules
    ]
    ctx.engine.create_schedules(ctx.names, faster)
    new = vertex.schedule(f"{PROJECT}-inference-v0.1.0")
    assert new["name"] != old and new["cron"] == "*/5 * * * *"
    assert [p for m, p, _ in vertex.calls("DELETE")] == [f"/v1/{old}"]
    assert [s["displayName"] for s in vertex.state.schedules.values()].count(
        new["displayName"]
    ) == 1
    with pytest.raises(ReleaseError, match="interval_seconds=7 has no cron for Vertex AI"):
        vertex_cron(replace(faster[1], interval_seconds=7))


def test_gc_removes_a_swept_versions_schedules_tag_and_template(
    vertex: VertexApiDouble, artifact_root: Path, tmp_path: Path
) -> None:
    from {{ cookiecutter.package }}.release import retention

    cfg = dev_config(artifact_root, vertex, "retention.keep_retired=0", "env.registry=")
    cfg.retention.grace_days = 0
    for version in ("0.1.0", "0.2.0"):
        ctx = context(cfg, tmp_path, version)
        workflows.deploy_workflows(ctx, SHA)
        ctx.store.write_text(ctx.names.release_record_key, "{}")
    ctx = context(cfg, tmp_path, "0.2.0")
    retire(ctx, "0.1.0")
    planned = retention.gc(ctx, apply=True)["tombstoned"]["0.1.0"]
    kinds = [
        r.uri.split("/v1/")[-1].split("/")[-2] if "/v1/" in r.uri else r.uri.rsplit("/", 1)[-1][:7]
        for r in planned
    ]
    assert kinds == ["schedules", "schedules", "v0-1-0", "sha256:", "v0-1-0", "sha256:"]
    retention.gc(ctx, apply=True)
    assert {s["displayName"] for s in vertex.state.schedules.values()} == {
        f"{PROJECT}-training-v0.2.0",
        f"{PROJECT}-inference-v0.2.0",
    }
    for package in vertex.state.packages.values():
        assert list(package["tags"]) == ["v0-2-0"] and len(package["versions"]) == 1
    assert ctx.engine.holdings(ctx.names_of("0.1.0")) == []
    assert retention.is_enabled(ctx, "0.2.0")


def test_failures_are_one_line_naming_the_fix(
    vertex: VertexApiDouble,
    artifact_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ctx = context(dev_config(artifact_root, vertex), tmp_path, "0.1.0")
    spec = workflows.compile_spec(ctx, "training", SHA)
    before = snapshot(artifact_root)

    def refused(call, match: str) -> str:
        with pytest.raises(ReleaseError, match=match) as error:
            call()
        assert "\n" not in str(error.value) and "Traceback" not in str(error.value)
        return str(error.value)

    # No credentials (no ADC on this machine, none given): one line, the commands that fix it.
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    google = dev_config(artifact_root, vertex, "env.vertex.api_endpoint=")
    refused(lambda: VertexEngine.from_config(google), "gcloud auth application-default login")
    # A repository that does not exist.
    nowhere = dev_config(artifact_root, vertex, f"env.vertex.templates={vertex.endpoint}/x/none")
    refused(
        lambda: VertexEngine.from_config(nowhere).check(),
        "--repository-format=KFP",
    )
    # Permission and quota errors from Google.
    vertex.state.deny = {"/pipelineJobs": 403}

    def run() -> str:
        return ctx.engine.run(ctx.names, "training", spec, {}, 30)

    message = refused(run, "refused to create")
    assert "roles/aiplatform.user" in message
    vertex.state.deny = {"/pipelineJobs": 429}
    refused(run, "quota exhausted")
    assert snapshot(artifact_root) == before


def test_a_dry_run_lists_the_templates_jobs_and_schedules(
    vertex: VertexApiDouble,
    artifact_root: Path,
    git_repo: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    subprocess.run(["git", "checkout", "-q", "-b", "develop"], cwd=git_repo, check=True)
    cfg = dev_config(artifact_root, vertex)
    release(ReleaseContext(cfg=cfg, names=names_for(cfg), project_root=git_repo), dry_run=True)
    out = capsys.readouterr().out
    version, tag = cfg.version, version_label(cfg.version)  # the checkout's, as released
    for workflow in ("training", "inference"):
        assert f"{vertex.templates}/{PROJECT}-{workflow}:{tag}" in out
    assert f"trained by a run of {vertex.templates}/{PROJECT}-training:{tag}" in out
    assert f"{PROJECT}-training-v{version}, {PROJECT}-inference-v{version}" in out
    assert "dry run: nothing was changed" in out
    assert [m for m, _, _ in vertex.state.requests if m != "GET"] == []
    assert snapshot(artifact_root) == {}


def test_a_dry_run_without_credentials_prints_what_it_can_then_refuses(
    vertex: VertexApiDouble,
    artifact_root: Path,
    git_repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 52: with no credentials the dry run refused before printing any of its plan.
    Now the steps it can tell offline are listed (the tag, the code, the record), the ones
    that need Vertex are `unknown` with the reason, and the refusal comes in one line."""
    subprocess.run(["git", "checkout", "-q", "-b", "develop"], cwd=git_repo, check=True)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    cfg = dev_config(artifact_root, vertex, "env.vertex.api_endpoint=")
    ctx = ReleaseContext(cfg=cfg, names=names_for(cfg), project_root=git_repo)
    with pytest.raises(ReleaseError, match=r"would be refused .*dry run: nothing was changed"):
        release(ctx, dry_run=True)
    out = capsys.readouterr().out
    plan = out[out.index(f"release {PROJECT} {cfg.version} to dev:") :].splitlines()
    assert any(line.split()[:2] == ["tag", "will"] for line in plan), plan
    unknown = [line for line in plan if " unknown " in line]
    assert unknown and all("gcloud auth application-default login" in line for line in unknown)
    assert any(line.startswith("refused: ") and "gcloud auth" in line for line in out.splitlines())
    assert vertex.state.requests == []  # nothing reached Vertex or Artifact Registry
