"""Slow tier: a generated project released to a real Apache Airflow 3 on loopback.

Airflow (`apache-airflow==3.3.2`) lives in its own venv, `.airflow-venv/` beside the
template's (its dependency set is large and never enters the project's), created on first
use and reused after. `airflow standalone` runs it: API server, scheduler, DAG processor and
triggerer, with SQLite, in a scratch AIRFLOW_HOME; the project reaches it only through its
REST API (v2) and its DAGs folder, as it would reach Cloud Composer.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import TEMPLATE
from tests.parts import free_port
from tests.project import TOOLS, Project

pytestmark = pytest.mark.slow

AIRFLOW = "apache-airflow==3.3.2"
# Airflow's OpenLineage provider: its task runs are the parents of the project's step runs.
PROVIDER = "apache-airflow-providers-openlineage==2.20.3"
VENV = TEMPLATE / ".airflow-venv"
PROVIDER_NAMESPACE = "airflow-e2e"
FAST = ["-o", "schedules.inference.interval_seconds=30"]  # scheduled runs within the test
SHARDED = ["-o", "inference.shards=2"]  # 0.3.0's inference: a mapped task per shard


@pytest.fixture(scope="session")
def airflow_venv() -> Path:
    started = time.monotonic()
    if not (VENV / "bin" / "airflow").exists():
        subprocess.run([str(TOOLS / "uv"), "venv", "-q", "-p", "3.11", str(VENV)], check=True)
    # A no-op in a second when the venv has them (a venv made before the provider gets it).
    subprocess.run([str(TOOLS / "uv"), "pip", "install", "-q", AIRFLOW, PROVIDER], check=True,
                   env={**os.environ, "VIRTUAL_ENV": str(VENV)}, timeout=1200)
    print(f"{AIRFLOW} and {PROVIDER} ready in {time.monotonic() - started:.0f} s")
    return VENV


class Airflow:
    def __init__(self, home: Path, port: int) -> None:
        self.home, self.host = home, f"http://127.0.0.1:{port}"
        self.dags = home / "dags"
        self._token = ""

    @property
    def password(self) -> str:
        generated = self.home / "simple_auth_manager_passwords.json.generated"
        return str(json.loads(generated.read_text())["admin"])

    def call(self, method: str, path: str, body: object = None) -> dict:
        if not self._token:
            request = urllib.request.Request(
                f"{self.host}/auth/token", method="POST",
                data=json.dumps({"username": "admin", "password": self.password}).encode(),
                headers={"content-type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as response:
                self._token = json.loads(response.read())["access_token"]
        request = urllib.request.Request(
            self.host + path, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"content-type": "application/json",
                     "authorization": f"Bearer {self._token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(json.loads(response.read() or b"{}"))

    def paused(self, dag_id: str) -> bool:
        return bool(self.call("GET", f"/api/v2/dags/{dag_id}")["is_paused"])

    def project_env(self) -> dict[str, str]:
        return {"AIRFLOW_HOST": self.host, "AIRFLOW_USERNAME": "admin",
                "AIRFLOW_PASSWORD": self.password, "AIRFLOW_DAGS_FOLDER": str(self.dags),
                "IMAGE_BUILDER": "none"}


@pytest.fixture
def airflow(airflow_venv: Path, tmp_path: Path) -> Iterator[Airflow]:
    home = tmp_path / "airflow-home"
    (home / "dags").mkdir(parents=True)
    # SQLite's writers fail after 5 s behind another's lock ("database is locked", which the
    # API answers as HTTP 500 "Database error"); on a loaded CI machine the scheduler holds
    # it that long. Airflow imports connect args from AIRFLOW_HOME/config: wait up to 60 s.
    (home / "config").mkdir()
    (home / "config" / "sqlite_waits.py").write_text(
        'SYNC = {"timeout": 60}\nASYNC = {"timeout": 60}\n')
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{airflow_venv / 'bin'}:{os.environ['PATH']}",  # standalone starts `airflow`
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        # Without it workers call the execution API on the default port and every task fails.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "sqlite_waits.SYNC",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC": "sqlite_waits.ASYNC",
        # The OpenLineage provider writes its own events (DAG runs, task instances) to a file.
        "AIRFLOW__OPENLINEAGE__NAMESPACE": PROVIDER_NAMESPACE,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(home / "openlineage.jsonl"), "append": True}),
    }
    env.pop("VIRTUAL_ENV", None)
    log = (tmp_path / "airflow.log").open("w")
    process = subprocess.Popen([str(airflow_venv / "bin" / "airflow"), "standalone"], env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = Airflow(home, port)
    deadline = time.monotonic() + 240
    while True:
        try:
            with urllib.request.urlopen(f"{server.host}/api/v2/monitor/health", timeout=5) as r:
                health = json.loads(r.read())
            if all(part.get("status") == "healthy" for part in health.values()):
                break
        except OSError:
            pass
        assert process.poll() is None, (tmp_path / "airflow.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "Airflow did not become healthy in 240 s"
        time.sleep(1)
    yield server
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    log.close()
    # pytest shows a teardown's output only when the test failed: Airflow's side of it.
    errors = [line for line in (tmp_path / "airflow.log").read_text(errors="replace")
              .splitlines() if "ERROR" in line or "Error:" in line]
    print("Airflow's error lines:", *errors[-30:], sep="\n")


def predictions_since(project: Project, version: str, since: float) -> list[Path]:
    folder = project.path / "artifacts-airflow" / "predictions" / version
    return sorted(p for p in folder.glob("*.parquet") if p.stat().st_mtime > since)


def moment(text: str) -> datetime:
    found = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def run_intervals(project: Project, version: str) -> set[tuple[datetime, datetime]]:
    """The data intervals of `version`'s recorded inference runs."""
    folder = project.path / "artifacts-airflow" / "runs" / version
    records = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    return {(moment(r["interval"]["start"]), moment(r["interval"]["end"])) for r in records}


def test_two_versions_run_side_by_side_in_airflow(airflow: Airflow, tmp_path: Path) -> None:
    project = Project.create(tmp_path / "out")
    env = airflow.project_env()

    def inv(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return project.inv(*args, "--env", "airflow", *FAST, env=env, check=check)

    # The first version: DAGs named by version, scheduled (unpaused) at release.
    inv("release")
    for workflow in ("training", "inference"):
        assert not airflow.paused(f"taxi_eta_{workflow}__v0_1_0")

    # A failing task fails train-adhoc with the task's own error; nothing gets scheduled.
    project.run(str(project.path / ".venv/bin/inv"), "bump", "--to", "0.2.0")
    failed = inv("train-adhoc", "-o", "data.n_trips=10", "-o", "data.test_fraction=0.95",
                 check=False)
    assert failed.returncode == 1
    error = failed.stderr.strip().splitlines()[-1]
    assert error.startswith("error: training of 0.2.0 failed in task train: ValueError:"), error
    assert "train set will be empty" in error
    assert airflow.paused("taxi_eta_training__v0_2_0")
    assert not (project.path / "artifacts-airflow/schedules/0.2.0.json").exists()
    assert not (project.path / "artifacts-airflow/models/0.2.0").exists()

    # The next version's release killed between its DAG upload and its schedule...
    project.run(str(project.path / ".venv/bin/inv"), "bump", "--to", "0.3.0")
    command = [str(project.path / ".venv/bin/inv"), "release", "--env", "airflow", *FAST,
               *SHARDED]
    release = subprocess.Popen(command, cwd=project.path, env={**project.env, **env},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    dag_file = airflow.dags / "taxi_eta_inference__v0_3_0.py"
    deadline = time.monotonic() + 300
    while not dag_file.exists() and release.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(release.pid, signal.SIGKILL)
    release.wait()
    assert dag_file.exists(), "the release ended before it uploaded its inference DAG"
    assert not (project.path / "artifacts-airflow/schedules/0.3.0.json").exists()
    # ... finishes when it is run again.
    inv("release", *SHARDED)
    for workflow in ("training", "inference"):
        assert not airflow.paused(f"taxi_eta_{workflow}__v0_3_0")
    dags = {d["dag_id"] for d in airflow.call("GET", "/api/v2/dags?limit=100")["dags"]}
    assert {"taxi_eta_training__v0_1_0", "taxi_eta_inference__v0_1_0",
            "taxi_eta_training__v0_3_0", "taxi_eta_inference__v0_3_0"} <= dags

    # Both versions on their schedules side by side, each with its own clusters and code.
    inv("traffic", "--assign", "0.3.0=4-7")
    since = time.time()
    # Each run reads the assignment when it starts: a run of 0.1.0 that started before the
    # change may still finish after it. The second run after it started after it.
    deadline = time.monotonic() + 300
    while not (len(predictions_since(project, "0.1.0", since)) >= 2
               and len(predictions_since(project, "0.3.0", since)) >= 2):
        assert time.monotonic() < deadline, "no two scheduled runs of both versions in 300 s"
        time.sleep(3)
    for version, clusters in (("0.1.0", {0, 1, 2, 3}), ("0.3.0", {4, 5, 6, 7})):
        frame = pd.read_parquet(predictions_since(project, version, since)[-1])
        assert set(frame[frame["served"]]["user_cluster"]) <= clusters  # the rest in shadow
        assert set(frame["model_version"]) == {version}
    # Each scheduled run predicted the trips of its DAG run's data interval: Airflow's
    # interval reached the task, and the run recorded it beside its predictions. Airflow 3's
    # default (trigger) timetable gives a run a point in time: the 30 s before it.
    dag_runs = airflow.call("GET", "/api/v2/dags/taxi_eta_inference__v0_3_0/dagRuns?limit=100")
    intervals = set()
    for dag_run in dag_runs["dag_runs"]:
        if dag_run["run_type"] == "scheduled":
            start = moment(dag_run["data_interval_start"])
            end = moment(dag_run["data_interval_end"])
            intervals.add((end - timedelta(seconds=30) if start == end else start, end))
    recorded = run_intervals(project, "0.3.0")
    assert recorded and recorded <= intervals, (recorded, intervals)
    # A manual run's interval (`--start/--end`) travels in the run's conf.
    inv("run-inference", "--version", "0.1.0", "--start", "2026-11-02", "--end", "2026-11-03")
    assert (moment("2026-11-02"), moment("2026-11-03")) in run_intervals(project, "0.1.0")
    # 0.3.0 runs two shards, a mapped task instance each: their results, every trip once.
    sharded = inv("run-inference", "--version", "0.3.0", "--run-id", "by-hand").stdout
    written = re.findall(r"\S+by-hand\.shard-\d-of-2\.parquet", sharded)
    assert sorted(Path(p).name for p in written) == [
        "by-hand.shard-0-of-2.parquet", "by-hand.shard-1-of-2.parquet"], sharded
    ids = pd.concat(pd.read_parquet(p) for p in written)["trip_id"]
    assert len(ids) == ids.nunique() > 0
    # With `-o lineage=file`, the steps of a manual run send their OpenLineage events, each
    # step's run a child of the Airflow task instance that ran it, as the OpenLineage provider
    # names that run in its own events: the provider's view and the project's join.
    ours = tmp_path / "lineage.jsonl"
    inv("run-inference", "--version", "0.1.0", "-o", "lineage=file", "-o", f"lineage.path={ours}")
    events = [json.loads(line) for line in ours.read_text().splitlines()]
    steps = [e for e in events if e["job"]["name"].startswith("taxi_eta_inference__v0_1_0.")]
    assert {(e["job"]["name"].rsplit(".", 1)[1], e["eventType"]) for e in steps} == {
        (step, state) for step in ("make_batch_features", "predict_batch")
        for state in ("START", "COMPLETE")}
    parents = {(p["job"]["namespace"], p["job"]["name"], p["run"]["runId"])
               for p in (e["run"]["facets"]["parent"] for e in steps)}
    ((namespace, task_job, task_run),) = parents
    assert (namespace, task_job) == (PROVIDER_NAMESPACE, "taxi_eta_inference__v0_1_0.predict")
    provider_log = airflow.home / "openlineage.jsonl"
    deadline = time.monotonic() + 60
    while True:
        written = provider_log.read_text() if provider_log.exists() else ""
        theirs = [json.loads(line) for line in written.splitlines()]
        if any(e["run"]["runId"] == task_run and e["job"]["name"] == task_job for e in theirs):
            break
        assert time.monotonic() < deadline, f"the provider sent no event of run {task_run}"
        time.sleep(1)

    # Their tasks ran as forks of each version's warm worker on this machine (the DAGs' bash
    # command), one worker per version's environment.
    listed = project.inv("workers").stdout
    for version in ("0.1.0", "0.3.0"):
        assert len(re.findall(rf"\.version-envs/{re.escape(version)}-\w+/bin/python", listed)) == 1

    # A released version's DAG never changes: another schedule is refused, the file stays.
    before = dag_file.read_bytes()
    changed = project.inv("deploy-workflow", "--env", "airflow", "-o",
                          "schedules.inference.interval_seconds=45", env=env, check=False)
    assert changed.returncode == 1
    assert changed.stderr.strip().endswith("bump the version"), changed.stderr
    assert dag_file.read_bytes() == before
    # The DAG file itself is checked too: one that is not what the version renders (edited
    # in the bucket by hand, say) is refused, and left for a person to look at.
    dag_file.write_bytes(before + b"# edited by hand\n")
    tampered = inv("deploy-workflow", *SHARDED, check=False)
    assert tampered.returncode == 1
    assert "exists with another DAG for version 0.3.0" in tampered.stderr
    dag_file.write_bytes(before)

    # Retire and rollback pause and unpause; nothing is deleted.
    refused = inv("retire", "--version", "0.1.0", check=False)
    assert refused.returncode == 1 and "still serves user clusters" in refused.stderr
    inv("rollback", "--to", "0.1.0")
    assert airflow.paused("taxi_eta_inference__v0_3_0")
    assert not airflow.paused("taxi_eta_inference__v0_1_0")
    assert dag_file.read_bytes() == before
    # A rollback to a version unpauses its DAGs; retiring it pauses them again.
    inv("rollback", "--to", "0.3.0")  # gives it its clusters back, too
    assert not airflow.paused("taxi_eta_inference__v0_3_0")
    inv("traffic", "--all", "0.1.0")
    inv("retire", "--version", "0.3.0")
    assert airflow.paused("taxi_eta_training__v0_3_0")
    assert airflow.paused("taxi_eta_inference__v0_3_0")
    versions = inv("versions").stdout
    assert "training:off,inference:off" in versions and "training:on,inference:on" in versions

    # Retention: with 0.3.0 serving again and 0.1.0 retired, a policy with no rollback window
    # and no grace period tombstones 0.1.0, then sweeps its DAG files and DAGs (files first:
    # a DAG whose file is gone cannot come back at the next parse).
    inv("rollback", "--to", "0.3.0")
    inv("traffic", "--all", "0.3.0")
    inv("retire", "--version", "0.1.0")
    deadline = time.monotonic() + 120  # a run the scheduler started before the pause
    while any(airflow.call("GET", f"/api/v2/dags/taxi_eta_{w}__v0_1_0/dagRuns?state=running")
              ["dag_runs"] for w in ("training", "inference")):
        assert time.monotonic() < deadline, "0.1.0 still has a running DAG run after 120 s"
        time.sleep(2)
    policy = ["-o", "retention.keep_retired=0", "-o", "retention.grace_days=0"]
    planned = inv("gc", "--apply", *policy).stdout
    assert "0.1.0: tombstoned: workflow 4 " in planned, planned
    assert (airflow.dags / "taxi_eta_training__v0_1_0.py").exists()
    swept = inv("gc", "--apply", *policy).stdout
    assert "0.1.0: swept: workflow 4 " in swept, swept
    for workflow in ("training", "inference"):
        assert not (airflow.dags / f"taxi_eta_{workflow}__v0_1_0.py").exists()
        with pytest.raises(urllib.error.HTTPError, match="404"):
            airflow.call("GET", f"/api/v2/dags/taxi_eta_{workflow}__v0_1_0")
        assert not airflow.paused(f"taxi_eta_{workflow}__v0_3_0")
    audit = sorted((project.path / "artifacts-airflow/retention/audit/0.1.0").iterdir())
    removed = [json.loads(p.read_text()) for p in audit]
    assert [r["uri"] for r in removed if r["kind"] == "workflow"] == [
        *(str(airflow.dags / f"taxi_eta_{w}__v0_1_0.py") for w in ("training", "inference")),
        *(f"{airflow.host}/dags/taxi_eta_{w}__v0_1_0" for w in ("training", "inference"))]
    assert "swept" in inv("versions").stdout
    refused = inv("rollback", "--to", "0.1.0", check=False)
    assert refused.returncode == 1 and "swept by `inv gc`" in refused.stderr
