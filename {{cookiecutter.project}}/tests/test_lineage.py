"""OpenLineage events: every step of every workflow, the workflow runs and the release, as a
data catalog receives them (file transport, and HTTP to a real local server).

Every event is rebuilt with openlineage-python's own classes and validated against the
OpenLineage JSON schemas (tests/openlineage_spec/, the spec version the client declares) and
the project's facets (deploy/openlineage/facets.json).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import SMALL, composed, snapshot
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.serde import Serde
from referencing import Registry, Resource

from {{ cookiecutter.package }}.artifacts import models
from {{ cookiecutter.package }}.artifacts.names import names_for
from {{ cookiecutter.package }}.errors import ReleaseError, UserError
from {{ cookiecutter.package }}.pipelines.openlineage_runs import Lineage, RunRef, settings_of
from {{ cookiecutter.package }}.pipelines.run_step import encode
from {{ cookiecutter.package }}.pipelines.step_lineage import address, trips_read
from {{ cookiecutter.package }}.pipelines.step_table import READS, WORKFLOW_STEPS, WRITES
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.plan import release
from {{ cookiecutter.package }}.release.preflight import refusals
from {{ cookiecutter.package }}.release.ticks import run_inference
from {{ cookiecutter.package }}.release.workflows import deploy_workflows, train_adhoc
from {{ cookiecutter.package }}.version import PROJECT, PROJECT_ROOT

SPEC = Path(__file__).parent / "openlineage_spec"
FACETS = PROJECT_ROOT / "deploy" / "openlineage" / "facets.json"
REPOSITORY = f"https://github.com/my-org/{PROJECT}"
SHA = "0123456789abcdef0123456789abcdef01234567"
# The project's own facets (deploy/openlineage/facets.json), named after the package.
PACKAGE = Lineage.__module__.split(".")[0]
MODEL, SHAPING, SHARD = (f"{PACKAGE}_{name}" for name in ("model", "shaping", "shard"))


# -- reading and checking events -----------------------------------------------------------


def _registry() -> Registry:
    documents = [json.loads(p.read_text()) for p in SPEC.glob("*.json")]
    return Registry().with_resources(
        (document["$id"], Resource.from_contents(document)) for document in documents
    )


def _validator(url: str) -> Any:
    """The validator of the schema a `_schemaURL` (or the event's `schemaURL`) names."""
    import jsonschema

    document, _, pointer = url.partition("#")
    if document.endswith("deploy/openlineage/facets.json"):
        # Ours, at the repository's version tag: the file of this checkout.
        assert document.startswith(f"{REPOSITORY}/blob/v")
        assert document.endswith("/deploy/openlineage/facets.json")
        schema = {"$ref": f"urn:facets#{pointer}"}
        ours = Resource.from_contents({**json.loads(FACETS.read_text()), "$id": "urn:facets"})
        registry = _registry().with_resource("urn:facets", ours)
    else:
        schema, registry = {"$ref": url}, _registry()
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _facets(event: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from event["run"].get("facets", {}).values()
    yield from event["job"].get("facets", {}).values()
    for dataset in [*event.get("inputs", []), *event.get("outputs", [])]:
        for key in ("facets", "inputFacets", "outputFacets"):
            yield from dataset.get(key, {}).values()


def checked(event: dict[str, Any]) -> dict[str, Any]:
    """`event` once it is valid: against the spec (the event and each facet's own schema)
    and rebuilt with the client's classes (which check run ids, times and URIs) into the
    same JSON, facets aside."""
    _validator(event["schemaURL"].replace("BaseEvent", "RunEvent")).validate(event)
    for facet in _facets(event):
        _validator(facet["_schemaURL"]).validate(facet)
    rebuilt = RunEvent(
        eventType=RunState(event["eventType"]),
        eventTime=event["eventTime"],
        run=Run(runId=event["run"]["runId"]),
        job=Job(namespace=event["job"]["namespace"], name=event["job"]["name"]),
        producer=event["producer"],
        inputs=[InputDataset(d["namespace"], d["name"]) for d in event.get("inputs", [])],
        outputs=[OutputDataset(d["namespace"], d["name"]) for d in event.get("outputs", [])],
    )
    bare = json.loads(Serde.to_json(rebuilt))
    for key in ("eventType", "eventTime", "producer", "schemaURL"):
        assert bare[key] == event[key]
    assert bare["run"]["runId"] == event["run"]["runId"]
    return event


def read_events(path: Path) -> list[dict[str, Any]]:
    return [checked(json.loads(line)) for line in path.read_text().splitlines()]


def runs_of(events: list[dict[str, Any]], job_suffix: str) -> dict[str, list[dict[str, Any]]]:
    """The events of the jobs whose name ends with `job_suffix`, by run id, in order."""
    found: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if event["job"]["name"].endswith(job_suffix):
            found.setdefault(event["run"]["runId"], []).append(event)
    return found


def parent_of(event: dict[str, Any]) -> tuple[str, str]:
    parent = event["run"]["facets"]["parent"]
    return parent["job"]["name"], parent["run"]["runId"]


def datasets(event: dict[str, Any], key: str) -> set[tuple[str, str]]:
    return {(d["namespace"], d["name"]) for d in event.get(key, [])}


# -- the whole flow, on the local engine ---------------------------------------------------


@pytest.fixture
def lineage_cfg(artifact_root: Path, tmp_path: Path):
    return composed(
        "local",
        (*SMALL, "lineage=file", f"repository={REPOSITORY}", "inference.shards=2"),
        {"env.artifact_root": str(artifact_root), "lineage.path": str(tmp_path / "ol.jsonl")},
    )


@pytest.mark.slow
def test_a_release_and_a_sharded_inference_run_are_one_connected_graph(
    lineage_cfg, git_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("GIT_AUTHOR", "GIT_COMMITTER"):
        monkeypatch.setenv(f"{variable}_NAME", "T")
        monkeypatch.setenv(f"{variable}_EMAIL", "t@example.com")
    lineage_cfg.env.builder = "none"
    ctx = ReleaseContext(lineage_cfg, names_for(lineage_cfg), project_root=git_repo)
    release(ctx)
    run_inference(ctx, "batch-1")
    events = read_events(tmp_path / "ol.jsonl")
    training, inference = (ctx.names.airflow_dag_id(w) for w in ("training", "inference"))

    assert {e["job"]["namespace"] for e in events} == {f"{PROJECT}.local"}
    assert {e["producer"] for e in events} == {f"{REPOSITORY}/tree/v{ctx.names.version}"}
    # Every run: one START, then one COMPLETE.
    every = runs_of(events, "")
    assert all([e["eventType"] for e in run] == ["START", "COMPLETE"] for run in every.values())

    (release_run,) = runs_of(events, f"{PROJECT}.release")
    (training_run,) = runs_of(events, training)
    (inference_run,) = runs_of(events, inference)
    training_start = runs_of(events, training)[training_run][0]
    assert parent_of(training_start) == (f"{PROJECT}.release", release_run)
    assert "parent" not in runs_of(events, inference)[inference_run][0]["run"]
    # Every step of every workflow, from the step table: one run each, two per shard step.
    for workflow, table in WORKFLOW_STEPS.items():
        parent = training_run if workflow == "training" else inference_run
        for step in table:
            runs = runs_of(events, f"{ctx.names.airflow_dag_id(workflow)}.{step.name}")
            assert len(runs) == (2 if step.fan_out else 1), step.name
            for run in runs.values():
                assert parent_of(run[0])[1] == parent
    shards = [run[-1]["run"]["facets"][SHARD] for run in runs_of(events, ".predict_batch").values()]
    assert sorted(s["shard"] for s in shards) == [0, 1] and {s["shards"] for s in shards} == {2}

    # The graph connects: from the trips read to the predictions, through every step.
    completes = [e for e in events if e["eventType"] == "COMPLETE" and "." in e["job"]["name"]]
    (trips,) = datasets(runs_of(events, ".build_features").popitem()[1][-1], "inputs")
    reached, frontier = {trips}, {trips}
    while frontier:
        frontier = {
            out
            for e in completes
            if datasets(e, "inputs") & reached
            for out in datasets(e, "outputs") - reached
        }
        reached |= frontier
    predictions = address(ctx.predictions.location(ctx.names.version))
    assert predictions in reached
    # Each dataset a step reads is one an earlier step wrote (or a source of trips).
    written = set().union(*(datasets(e, "outputs") for e in completes))
    for event in completes:
        for dataset in datasets(event, "inputs") - written:
            assert dataset[0] == "synthetic", (event["job"]["name"], dataset)

    # What each dataset says.
    build = runs_of(events, ".build_features").popitem()[1][-1]
    (read,) = build["inputs"]
    assert [f["name"] for f in read["facets"]["schema"]["fields"]][0] == "trip_id"
    assert read["inputFacets"]["dataQualityMetrics"]["rowCount"] == 600
    shaping = read["inputFacets"][SHAPING]
    assert shaping["rowsRead"] == 600 and shaping["rowsValid"] <= 600
    assert sum(shaping["invalidRows"].values()) == 600 - shaping["rowsValid"]
    metadata = models.read_metadata(ctx.store, ctx.names)
    publish = runs_of(events, ".publish_model").popitem()[1][-1]
    (model,) = [o for o in publish["outputs"] if MODEL in o["facets"]]
    assert (model["namespace"], model["name"]) == address(str(metadata["model"]))
    facet = model["facets"][MODEL]
    assert facet["sha256"] == metadata["model_sha256"]
    assert facet["metrics"] == metadata["metrics"] and facet["mainMetric"] == "mae"
    assert facet["hyperparameters"] == metadata["config"]["model"]
    for run in runs_of(events, ".predict_batch").values():
        (features_file,) = [d for d in run[-1]["inputs"] if d["namespace"] == "file"][:1]
        (out,) = run[-1]["outputs"]
        lineage = out["facets"]["columnLineage"]["fields"]["eta_minutes"]["inputFields"]
        assert {(f["namespace"], f["name"]) for f in lineage} == {
            (features_file["namespace"], features_file["name"])
        }
        assert "distance_km" in {f["field"] for f in lineage}


# -- a failing step, the Airflow parent, HTTP --------------------------------------------


def _step_command(
    artifact_root: Path, lineage: dict[str, Any], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """build-features as a DAG's task runs it, for a pinned feature version that does not
    exist: a step that fails with the user's one-line error."""
    release_names = {
        "project": PROJECT,
        "version": "1.0.0",
        "feature_version": "0.9.0",
        "artifact_root": str(artifact_root),
    }
    arguments = {
        "release": json.dumps(release_names),
        "lineage": json.dumps(lineage),
        "n_trips": 100,
        "seed": 1,
        "rush_hours": [8],
        "storage": "{}",
    }
    return subprocess.run(
        [sys.executable, "-m", "{{ cookiecutter.package }}.pipelines.run_step", "build-features"],
        capture_output=True,
        text=True,
        env={**os.environ, "STEP_ARGUMENTS": encode(arguments), **(env or {})},
        timeout=120,
    )


def _settings(**given: Any) -> dict[str, Any]:
    return {"namespace": f"{PROJECT}.dev", "producer": f"{REPOSITORY}/tree/v1.0.0", **given}


def test_a_failing_step_sends_fail_with_the_users_one_line_error_under_its_airflow_parent(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ol.jsonl"
    task_run = "01936f1e-8c2a-7cde-8f00-0123456789ab"
    job = names_for(composed("local"), "1.0.0").airflow_dag_id("training") + ".build_features"
    parent = f"airflow-ns/{job}/{task_run}"
    done = _step_command(
        tmp_path, _settings(kind="file", path=str(path)), {"OPENLINEAGE_PARENT_ID": parent}
    )
    assert done.returncode == 1
    (error,) = done.stderr.strip().splitlines()
    start, fail = read_events(path)
    assert [start["eventType"], fail["eventType"]] == ["START", "FAIL"]
    assert start["job"]["name"] == job
    assert fail["run"]["runId"] == start["run"]["runId"]
    message = fail["run"]["facets"]["errorMessage"]
    assert error == f"error: {message['message']}"  # the line the user saw, no traceback
    assert "pinned feature version 0.9.0 does not exist" in message["message"]
    assert "stackTrace" not in message
    assert parent_of(fail) == (job, task_run)
    assert fail["run"]["facets"]["parent"]["job"]["namespace"] == "airflow-ns"


def test_console_events_are_on_the_steps_log(tmp_path: Path) -> None:
    done = _step_command(tmp_path, _settings(kind="console"))
    assert done.returncode == 1
    printed = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [checked(event)["eventType"] for event in printed] == ["START", "FAIL"]


class _Recorder(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, str], dict[str, Any]]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, dict(self.headers), json.loads(body)))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[Any]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", _Recorder.received
    server.shutdown()


def test_http_events_carry_the_api_key_from_the_environment(
    tmp_path: Path, recorder: tuple[str, list[Any]]
) -> None:
    url, received = recorder
    settings = _settings(
        kind="http", url=url, endpoint="api/v1/lineage", timeout_seconds=5, api_key_env="OL_KEY"
    )
    done = _step_command(tmp_path, settings, {"OL_KEY": "s3cret"})
    assert done.returncode == 1  # the step's own failure, told as ever
    assert [body["eventType"] for _, _, body in received] == ["START", "FAIL"]
    for path, headers, body in received:
        assert path == "/api/v1/lineage"
        assert headers["Authorization"] == "Bearer s3cret"
        checked(body)
    assert "s3cret" not in json.dumps([body for _, _, body in received])


def test_a_lineage_backend_that_is_down_costs_one_line_and_changes_nothing(
    tmp_path: Path,
) -> None:
    from conftest import free_port

    down = f"http://127.0.0.1:{free_port()}"
    settings = _settings(kind="http", url=down, endpoint="api/v1/lineage", timeout_seconds=2)
    started = time.monotonic()
    done = _step_command(tmp_path, settings)
    assert time.monotonic() - started < 60
    assert done.returncode == 1  # the step's own error, as without lineage
    assert done.stderr.strip().splitlines()[-1].startswith("error: StoreError: pinned feature")
    lines = [line for line in done.stdout.splitlines() if line.startswith("lineage:")]
    assert len(lines) == 1 and lines[0].startswith(f"lineage: not sent to {down} (")


@pytest.mark.slow
def test_a_run_with_the_backend_down_succeeds_and_says_so_once(
    artifact_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from conftest import free_port

    down = f"http://127.0.0.1:{free_port()}"
    cfg = composed(
        "local",
        (*SMALL, "lineage=http"),
        {"env.artifact_root": str(artifact_root), "lineage.url": down},
    )
    ctx = ReleaseContext(cfg, names_for(cfg), project_root=tmp_path)
    train_adhoc(ctx, SHA)
    deploy_workflows(ctx, SHA)
    said = capsys.readouterr().out
    assert said.count("lineage: not sent to") == 1, said  # one command, one line
    assert models.released(ctx.store, ctx.names)
    # Another command (as `inv run-inference`): its run says it once, its steps not at all.
    ctx = ReleaseContext(cfg, names_for(cfg), project_root=tmp_path)
    output = run_inference(ctx, "batch-1")
    assert (artifact_root / ctx.names.predictions_key("batch-1")).is_file(), output
    said = capsys.readouterr().out
    assert said.count("lineage: not sent to") == 1, said


# -- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "refusal"),
    [
        (("lineage.kind=kafka",), "lineage.kind 'kafka': use one of none, console, file, http"),
        (("lineage=file", "lineage.path=null"), "lineage.path is not set"),
        (("lineage=http", "lineage.url=''"), "lineage.url is not set"),
    ],
)
def test_bad_lineage_settings_are_refused_in_one_line_before_anything_runs(
    cfg, tmp_path: Path, overrides: tuple[str, ...], refusal: str, artifact_root: Path
) -> None:
    bad = composed("local", (*SMALL, *overrides), {"env.artifact_root": str(artifact_root)})
    with pytest.raises(UserError, match=refusal):
        settings_of(bad, tmp_path)
    ctx = ReleaseContext(bad, names_for(bad), project_root=tmp_path)
    artifact_root.mkdir(exist_ok=True)
    before = snapshot(artifact_root)
    with pytest.raises(ReleaseError, match=refusal):
        train_adhoc(ctx, SHA)
    assert any(refusal in found for found in refusals(ctx, dry_run=True))  # release --dry-run
    assert snapshot(artifact_root) == before


def test_settings_name_the_namespace_producer_and_an_absolute_file(tmp_path: Path) -> None:
    cfg = composed("local", ("lineage=file", f"repository={REPOSITORY}"), {})
    settings = settings_of(cfg, tmp_path)
    assert settings["namespace"] == f"{PROJECT}.local"
    assert settings["path"] == str(tmp_path / "lineage.jsonl")
    assert settings["producer"] == f"{REPOSITORY}/tree/v{cfg.version}"
    assert settings_of(composed("local"), tmp_path) == {"kind": "none"}
    lineage = Lineage(settings)
    parent = RunRef(
        f"{PROJECT}.local", f"{PROJECT}.release", "01936f1e-8c2a-7cde-8f00-0123456789ab"
    )
    assert Lineage.from_json(lineage.to_json(parent)).parent == parent
    lineage.failed = True  # a run whose first event failed: its steps send nothing
    assert not Lineage.from_json(lineage.to_json(parent)).enabled


def test_changing_where_lineage_goes_needs_no_new_version(cfg, tmp_path: Path) -> None:
    ctx = ReleaseContext(cfg, names_for(cfg), project_root=tmp_path)
    deploy_workflows(ctx, SHA)
    stored = (Path(cfg.env.artifact_root) / ctx.names.workflow_key("inference")).read_bytes()
    with_file = composed(
        "local", (*SMALL, "lineage=file"), {"env.artifact_root": cfg.env.artifact_root}
    )
    deploy_workflows(ReleaseContext(with_file, names_for(with_file), tmp_path), SHA)
    after = (Path(cfg.env.artifact_root) / ctx.names.workflow_key("inference")).read_bytes()
    assert after == stored  # what was released stays, lineage settings and all


# -- datasets by kind ----------------------------------------------------------------------


def test_every_dataset_kind_of_the_table_has_a_resolver() -> None:
    declared = {kind for table in WORKFLOW_STEPS.values() for s in table for kind in s.reads}
    assert declared <= set(READS)
    written = {kind for table in WORKFLOW_STEPS.values() for s in table for kind in s.writes}
    assert written == set(WRITES)


def test_files_and_bigquery_reads_are_named_as_openlineage_names_them(tmp_path: Path) -> None:
    lineage = Lineage(_settings(kind="file", path=str(tmp_path / "x"), facets_url=""))
    files = {
        "source": "files",
        "location": "gs://trips/exports/*.parquet",
        "files": [
            {"path": "gs://trips/exports/a.parquet", "sha256": "a" * 64, "rows": 7},
            {"path": str(tmp_path / "b.parquet"), "sha256": "b" * 64, "rows": 3},
        ],
        "rows": 10,
    }
    shaped = {"rows_valid": 9, "rows_invalid": {"distance_km: outside (0, 1000]": 1}}
    first, second = trips_read(lineage, files, shaped)
    assert (first.namespace, first.name) == ("gs://trips", "exports/a.parquet")
    assert (second.namespace, second.name) == ("file", str(tmp_path / "b.parquet"))
    assert first.facets["version"].datasetVersion == "a" * 64
    assert first.inputFacets["dataQualityMetrics"].rowCount == 7
    assert first.inputFacets[SHAPING].invalidRows == shaped["rows_invalid"]
    table = {
        "source": "bigquery",
        "location": "proj.trips.rides",
        "snapshot": "2026-12-01T00:00:00+00:00",
        "sql": "SELECT 1",
        "rows": 5,
    }
    counted = {"rows_valid": 3, "rows_invalid": {"eta_minutes: empty": 2}}
    (read,) = trips_read(lineage, table, counted)
    metrics = read.inputFacets["dataQualityMetrics"]
    assert (metrics.rowCount, metrics.columnMetrics["eta_minutes"].nullCount) == (5, 2)
    assert (read.namespace, read.name) == ("bigquery", "proj.trips.rides")
    assert read.facets["version"].datasetVersion == "2026-12-01T00:00:00+00:00"
    assert address("bigquery://proj.ds.predictions[model_version=1.0.0]") == (
        "bigquery",
        "proj.ds.predictions",
    )
    assert address("/gcs/bucket/pipeline/out") == ("gs://bucket", "pipeline/out")


def test_the_dag_hands_the_airflow_task_run_to_its_steps(tmp_path: Path) -> None:
    from {{ cookiecutter.package }}.engines.airflow.dags import DagWriter

    cfg = composed("airflow", (), {"env.artifact_root": str(tmp_path)})
    names = names_for(cfg)
    parameters = {"release": names.to_json(), "lineage": "{}", "shards": 1}
    dag = DagWriter("bash").render(
        names, "training", parameters, cfg.schedules.training, "2026-01-01", sys.executable
    )
    assert "OPENLINEAGE_PARENT_ID=" in dag
    assert "OpenLineageProviderPlugin.lineage_parent_id(task_instance)" in dag
