"""Two released versions served side by side by real uvicorn servers on loopback."""

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pandas as pd
import pytest
import uvicorn
from conftest import built_once, free_port, release_model

from {{ cookiecutter.package }}.artifacts import prediction_runs, traffic
from {{ cookiecutter.package }}.artifacts.names import ReleaseNames
from {{ cookiecutter.package }}.artifacts.predictions import ParquetPredictions
from {{ cookiecutter.package }}.artifacts.store import open_store
from {{ cookiecutter.package }}.artifacts.traffic import Assignment
from {{ cookiecutter.package }}.ml.features import build_features
from {{ cookiecutter.package }}.ml.predict import predict
from {{ cookiecutter.package }}.pipelines import steps
from {{ cookiecutter.package }}.serving import THREAD_VARIABLES, router
from {{ cookiecutter.package }}.serving.app import create_app, serve_command
from {{ cookiecutter.package }}.serving.limits import MAX_TRIPS
from {{ cookiecutter.package }}.serving.shadow import Shadow

# One client for the module's requests: `httpx.get` and `httpx.post` make a client, and its
# SSL context, per call (28 ms, about 1.4 s of the fast tier). No keep-alive: each request
# opens its own connection, as those calls do, so a stopped server never leaves a stale one.
HTTP = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0))

TRIP = {"trip_id": "t1", "distance_km": 5.0, "pickup_hour": 8, "weekday": 1, "area_cluster": 0}


class Servers:
    """Real uvicorn servers on loopback ports, each in a thread; stoppable one by one."""

    def __init__(self) -> None:
        self.running: dict[str, tuple[uvicorn.Server, threading.Thread]] = {}
        self.urls: dict[str, str] = {}
        self.apps: dict[str, Any] = {}

    def start(self, name: str, app) -> str:
        return self.start_all({name: app})[name]

    def start_all(self, apps: dict[str, Any]) -> dict[str, str]:
        """Start every server, then wait for each: their start-ups overlap."""
        for name, app in apps.items():
            port = free_port()
            server = uvicorn.Server(
                uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
            )
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            self.running[name] = (server, thread)
            self.urls[name] = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        for name in apps:
            while not self.healthy(self.urls[name]):
                assert time.monotonic() < deadline, f"{name} did not start"
                time.sleep(0.02)
        return {name: self.urls[name] for name in apps}

    @staticmethod
    def healthy(url: str) -> bool:
        try:
            return HTTP.get(f"{url}/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def stop(self, *names: str) -> None:
        """Ask each server to exit, then wait for all: their shutdowns overlap."""
        stopping = [self.running.pop(name) for name in names or list(self.running)]
        for server, _ in stopping:
            server.should_exit = True
        for _, thread in stopping:
            thread.join(timeout=10)


def release_both(root: Path, scratch: Path) -> Path:
    """1.0.0 (a linear model) and 2.0.0 (boosted trees), released into `root`."""
    release_model(root, "1.0.0", {"_target_": "sklearn.linear_model.Ridge"}, scratch)
    release_model(
        root,
        "2.0.0",
        {"_target_": "sklearn.ensemble.HistGradientBoostingRegressor", "max_iter": 50},
        scratch,
    )
    return root


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both versions released once for the run (2.5 s; every test process runs tests of
    this module); tests that write use a copy."""
    scratch = built_once(tmp_path_factory, "released", lambda f: release_both(f / "artifacts", f))
    return scratch / "artifacts"


@pytest.fixture
def artifact_root(tmp_path: Path, released: Path) -> Path:
    """A store of this test's own (traffic records, predictions), with both versions."""
    return Path(shutil.copytree(released, tmp_path / "artifacts"))


@pytest.fixture
def running() -> Iterator[Servers]:
    servers = Servers()
    yield servers
    servers.stop()


def start_versions(root: Path, running: Servers) -> dict[str, str]:
    return running.start_all(
        {v: create_app(ReleaseNames("taxi", v, v, str(root))) for v in ("1.0.0", "2.0.0")}
    )


@pytest.fixture
def servers(artifact_root: Path, running: Servers) -> dict[str, str]:
    """Each released version's own server, for a test that stops or changes one."""
    return start_versions(artifact_root, running)


@pytest.fixture(scope="module")
def shared_servers(released: Path) -> Iterator[dict[str, str]]:
    """Each released version's own server, shared by the tests that only send requests."""
    running = Servers()
    yield start_versions(released, running)
    running.stop()


def test_each_version_answers_at_its_own_endpoint(
    shared_servers: dict[str, str], released: Path
) -> None:
    servers = shared_servers
    answers = {}
    for version, url in servers.items():
        assert HTTP.get(f"{url}/version").json()["version"] == version
        index = HTTP.get(f"{url}/").json()  # what a person opening the address sees
        assert index["version"] == version
        listed = {(e["method"], e["path"]): e["does"] for e in index["endpoints"]}
        assert set(listed) == {
            ("GET", "/"),
            ("GET", "/healthz"),
            ("GET", "/version"),
            ("GET", "/docs"),
            ("POST", f"/v{version}/predict"),
        }
        assert all(listed.values())
        assert HTTP.get(f"{url}/docs").status_code == 200
        response = HTTP.post(f"{url}/v{version}/predict", json={"trips": [TRIP]})
        assert response.status_code == 200
        body = response.json()
        assert body["version"] == version
        assert body["predictions"][0]["trip_id"] == "t1"
        answers[version] = body["predictions"][0]["eta_minutes"]
        other = "2.0.0" if version == "1.0.0" else "1.0.0"
        assert HTTP.post(f"{url}/v{other}/predict", json={"trips": [TRIP]}).status_code == 404
    assert answers["1.0.0"] != answers["2.0.0"]  # two different models
    # The online path (arrays) answers what the batch path (frames) predicts.
    model = steps.load_model(ReleaseNames("taxi", "2.0.0", "2.0.0", str(released)))
    batch = predict(
        model, build_features(pd.DataFrame([{**TRIP, "user_cluster": 0}]), [7, 8, 9]), "2.0.0"
    )
    assert answers["2.0.0"] == batch.eta_minutes.iloc[0]
    assert all(5 < eta < 60 for eta in answers.values())


@pytest.mark.parametrize(
    "payload,field",
    [
        ({"trips": [{**TRIP, "pickup_hour": 24}]}, "pickup_hour"),
        ({"trips": [{**TRIP, "distance_km": -1}]}, "distance_km"),
        ({"trips": [{k: v for k, v in TRIP.items() if k != "weekday"}]}, "weekday"),
        ({"trips": [{**TRIP, "surge": 2}]}, "surge"),
        ({"trips": []}, "trips"),
        ({"rides": [TRIP]}, "trips"),
        ({"trips": [{**TRIP, "distance_km": "4.2"}]}, "distance_km"),  # strict: no strings
        ({"trips": [{**TRIP, "pickup_hour": 8.0}]}, "pickup_hour"),  # strict: no floats
        ({"trips": [{**TRIP, "weekday": True}]}, "weekday"),  # strict: no booleans
    ],
)
def test_bad_requests_get_422_naming_the_field(
    shared_servers: dict[str, str], payload: dict, field: str
) -> None:
    response = HTTP.post(f"{shared_servers['1.0.0']}/v1.0.0/predict", json=payload)
    assert response.status_code == 422
    assert any(field in detail["loc"] for detail in response.json()["detail"])


def test_concurrent_requests_are_predicted_together_each_getting_its_own_rows(
    released: Path, running: Servers
) -> None:
    app = create_app(ReleaseNames("taxi", "2.0.0", "2.0.0", str(released)))
    url = running.start("batched", app) + "/v2.0.0/predict"
    bodies = [
        {"trips": [{**TRIP, "trip_id": f"t{i}", "distance_km": 1.0 + i, "pickup_hour": i % 24}]}
        for i in range(64)
    ]
    bodies[17] = {"trips": [{**TRIP, "pickup_hour": 99}]}  # malformed: its own 422 only
    with httpx.Client() as client:
        sequential = [client.post(url, json=body) for body in bodies]
    calls = app.state.batcher.calls

    async def at_once() -> list[httpx.Response]:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=64)) as client:
            return await asyncio.gather(*(client.post(url, json=body) for body in bodies))

    concurrent = asyncio.run(at_once())
    assert [r.status_code for r in concurrent] == [422 if i == 17 else 200 for i in range(64)]
    assert [r.json() for r in concurrent] == [r.json() for r in sequential]
    # Sequential requests are predicted one by one, with no wait; concurrent ones together.
    assert calls == 63 and app.state.batcher.calls - calls < 63


def cluster_trips(clusters) -> list[dict]:
    return [{**TRIP, "trip_id": f"t{c}", "user_cluster": c} for c in clusters]


def start_router(
    artifact_root: Path, servers: dict[str, str], running: Servers, **shadow: Any
) -> str:
    root = str(artifact_root)
    # refresh_s=0: every request reads the assignment, so the test sees changes at once.
    app = router.create_router(
        root, router.upstreams("http://{deployment}", servers, root), 0.0, **shadow
    )
    running.apps["router"] = app
    return running.start("router", app)


def test_concurrent_requests_through_the_router_share_upstream_calls(
    artifact_root: Path, servers: dict[str, str], running: Servers
) -> None:
    store = open_store(str(artifact_root))
    traffic.record(store, {"1.0.0": range(4), "2.0.0": range(4, 8)}, 8, [*servers], "A/B")
    url = start_router(artifact_root, servers, running) + "/predict"
    bodies = [
        {
            "trips": [
                {**trip, "trip_id": f"r{i}-{trip['trip_id']}", "distance_km": 1.0 + i}
                for trip in cluster_trips([i % 8, (i + 3) % 8])
            ]
        }
        for i in range(48)
    ]
    with httpx.Client() as client:
        expected = [client.post(url, json=body).json() for body in bodies]
    coalescer = running.apps["router"].state.coalesce
    calls = coalescer.calls
    forward = coalescer.forward

    async def across_the_network(version: str, body: bytes) -> list[dict[str, Any]]:
        # A call to another pod takes milliseconds. Here the servers answer on loopback in
        # this process, at times before the router has read the next request, and then
        # nothing gathers (a run saw 84 calls for 84 version-requests): the coalescing this
        # test shows needs a call to last, as it does across pods.
        await asyncio.sleep(0.02)
        return await forward(version, body)

    coalescer.forward = across_the_network

    async def at_once() -> list[httpx.Response]:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=48)) as client:
            return await asyncio.gather(*(client.post(url, json=body) for body in bodies))

    answers = asyncio.run(at_once())
    assert [a.json() for a in answers] == expected  # each its own trips, from their owners
    # One by one, a request costs a call per version it needs; together, the 48 requests'
    # trips went in fewer calls than requests.
    assert calls == sum(len(e["versions"]) for e in expected) > 48
    assert coalescer.calls - calls < calls


def test_the_coalescer_sends_what_gathered_while_a_call_was_in_flight() -> None:
    """The coalescing rule on its own, with an upstream that answers after 20 ms (the real
    servers are in the test above): the first request goes out alone, the 30 that arrive
    while it is in flight go out together, each caller gets its own trips' answers, a
    failed call fails only the requests it carried, and no call carries over MAX_TRIPS."""
    calls: list[list[int]] = []

    async def upstream(version: str, body: bytes) -> list[dict]:
        trips = orjson.loads(body)["trips"]
        calls.append([t["n"] for t in trips])
        await asyncio.sleep(0.02)
        if any(t["n"] < 0 for t in trips):
            raise router.Unavailable(version, "down")
        return [{"eta": t["n"] * 10} for t in trips]

    async def scenario() -> list:
        coalesce = router.Coalescer(upstream, max_wait_ms=50)
        first = asyncio.create_task(coalesce("1.0.0", [{"n": 0}]))
        await asyncio.sleep(0.001)  # the first call is in flight now
        rest = [coalesce("1.0.0", [{"n": i}, {"n": i + 100}]) for i in range(1, 31)]
        answers = [await first, *await asyncio.gather(*rest)]
        failing = await asyncio.gather(coalesce("2.0.0", [{"n": -1}]), return_exceptions=True)
        big = await asyncio.gather(*(coalesce("3.0.0", [{"n": 1}] * 600) for _ in range(3)))
        return [answers, failing, [len(b) for b in big]]

    answers, failing, big = asyncio.run(scenario())
    assert calls[0] == [0] and sorted(calls[1]) == sorted([*range(1, 31), *range(101, 131)])
    assert answers[0] == [{"eta": 0}]
    assert answers[1:] == [[{"eta": i * 10}, {"eta": (i + 100) * 10}] for i in range(1, 31)]
    assert isinstance(failing[0], router.Unavailable)
    assert big == [600] * 3 and all(len(c) <= 1000 for c in calls)


def test_the_shadow_mirror_sends_no_call_over_a_servers_limit(tmp_path: Path) -> None:
    """Two answered requests of 900 trips gathered in one batch: their shadow predictions
    go out in calls of at most MAX_TRIPS (a server refuses more), and all are recorded."""
    calls: list[int] = []

    async def upstream(version: str, trips: list[dict]) -> list[dict]:
        calls.append(len(trips))
        return [{"eta_minutes": 1.0} for _ in trips]

    sink = ParquetPredictions(str(tmp_path))
    assignment = Assignment({"1.0.0": list(range(8))}, 8)

    async def scenario() -> None:
        mirror = Shadow(sink, upstream, ["2.0.0"], flush_s=60)
        await mirror.start()
        for request in range(2):
            trips = [{"trip_id": f"r{request}-{i}", "user_cluster": i % 8} for i in range(900)]
            answers = [{"eta_minutes": 2.0, "version": "1.0.0"} for _ in trips]
            mirror.offer(orjson.dumps({"trips": trips}), answers, assignment)
        while mirror.stats.mirrored < 2 or mirror.queue.qsize():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        await mirror.stop()  # writes what it kept

    asyncio.run(scenario())
    assert sorted(calls) == [MAX_TRIPS - 200, MAX_TRIPS]
    shadow_rows = sink.read("2.0.0", shadow=True)
    assert len(shadow_rows) == 1800 and not shadow_rows.served.any()
    assert len(sink.read("1.0.0")) == 1800


class SlowSink(ParquetPredictions):
    """The real Parquet sink, with a write that takes a while (a busy disk or bucket)."""

    def __init__(self, artifact_root: str) -> None:
        super().__init__(artifact_root)
        self.started = threading.Event()

    def write(self, *args: Any, **kwargs: Any) -> str:
        self.started.set()
        time.sleep(0.5)
        return super().write(*args, **kwargs)


def test_stopping_the_shadow_mirror_waits_for_a_write_in_flight(tmp_path: Path) -> None:
    """Rows the flusher took are written before stop() returns, though its task is
    cancelled mid-write: the router's shutdown is when what is left gets written."""
    sink = SlowSink(str(tmp_path))

    async def upstream(version: str, trips: list[dict]) -> list[dict]:
        return [{"eta_minutes": 1.0} for _ in trips]

    async def scenario() -> None:
        mirror = Shadow(sink, upstream, flush_s=0.05)
        await mirror.start()
        trips = [{"trip_id": f"t{i}", "user_cluster": 0} for i in range(3)]
        answers = [{"eta_minutes": 2.0, "version": "1.0.0"} for _ in trips]
        mirror.offer(orjson.dumps({"trips": trips}), answers, Assignment({"1.0.0": [0]}, 1))
        while not sink.started.is_set():  # the flusher took the rows and is writing
            await asyncio.sleep(0.01)
        await mirror.stop()
        # here, not after asyncio.run(), whose end waits for every thread
        assert list(sink.read("1.0.0").trip_id) == ["t0", "t1", "t2"]

    asyncio.run(scenario())


def test_the_router_records_shadow_answers_and_serves_without_the_shadow_version(
    artifact_root: Path, servers: dict[str, str], running: Servers
) -> None:
    store, sink = open_store(str(artifact_root)), ParquetPredictions(str(artifact_root))
    traffic.record(store, {"1.0.0": range(4), "2.0.0": range(4, 8)}, 8, ["1.0.0", "2.0.0"], "A/B")
    url = start_router(artifact_root, servers, running, shadow_sink=sink, shadow_flush_s=0.2)
    first = HTTP.post(f"{url}/predict", json={"trips": cluster_trips(range(8))}).json()

    def recorded(version: str) -> pd.DataFrame:
        return sink.read(version, shadow=True).set_index("trip_id")

    deadline = time.monotonic() + 20
    while not all(len(recorded(v)) == 8 for v in ("1.0.0", "2.0.0")):
        assert time.monotonic() < deadline, "the shadow answers were never recorded"
        time.sleep(0.1)
    for version, own in (("1.0.0", range(4)), ("2.0.0", range(4, 8))):
        rows = recorded(version)
        assert dict(rows["served"]) == {f"t{c}": c in own for c in range(8)}
        direct = HTTP.post(
            f"{servers[version]}/v{version}/predict", json={"trips": cluster_trips(range(8))}
        ).json()["predictions"]
        assert list(rows["eta_minutes"]) == [p["eta_minutes"] for p in direct]
    # Readers of what users were given see only the served rows.
    assert list(sink.read("1.0.0").trip_id) == [f"t{c}" for c in range(4)]
    # Beside each version's online predictions, what it was asked: its drift summary.
    for version in ("1.0.0", "2.0.0"):
        online = [r for r in prediction_runs.read(store, version) if r.get("source") == "online"]
        assert sum(r["inputs"]["n"] for r in online) == 8
        hours = {}
        for record in online:
            for hour, count in record["inputs"]["categorical"]["pickup_hour"].items():
                hours[hour] = hours.get(hour, 0) + count
        assert hours == {str(TRIP["pickup_hour"]): 8}

    # The shadow version down: the served answer is the same, and nothing waits for it.
    running.stop("2.0.0")
    trips = [{**trip, "trip_id": f"again-{trip['trip_id']}"} for trip in cluster_trips(range(4))]
    again = HTTP.post(f"{url}/predict", json={"trips": trips})
    assert again.status_code == 200
    etas = [p["eta_minutes"] for p in again.json()["predictions"]]
    assert etas == [p["eta_minutes"] for p in first["predictions"][:4]]
    shadow = running.apps["router"].state.shadow
    deadline = time.monotonic() + 20
    while shadow.stats.failed < 1:
        assert time.monotonic() < deadline, "the failed shadow call was never counted"
        time.sleep(0.1)
    running.stop("router")  # its shutdown writes what is left
    assert set(recorded("1.0.0").index) >= {f"again-t{c}" for c in range(4)}
    assert not any(t.startswith("again-") for t in recorded("2.0.0").index)


def test_the_router_sends_each_trip_to_the_version_serving_its_cluster(
    artifact_root: Path, servers: dict[str, str], running: Servers
) -> None:
    store = open_store(str(artifact_root))
    live = ["1.0.0", "2.0.0"]
    url = start_router(artifact_root, servers, running)
    unassigned = HTTP.post(f"{url}/predict", json={"trips": cluster_trips([0])})
    assert unassigned.status_code == 503
    assert "no traffic assignment yet" in unassigned.json()["detail"]
    index = HTTP.get(f"{url}/").json()  # the router lists its endpoints as servers do
    assert {(e["method"], e["path"]) for e in index["endpoints"]} >= {
        ("POST", "/predict"),
        ("GET", "/traffic"),
        ("GET", "/healthz"),
    }

    traffic.record(store, {"1.0.0": range(4), "2.0.0": range(4, 8)}, 8, live, "A/B")
    body = HTTP.post(f"{url}/predict", json={"trips": cluster_trips(range(8))}).json()
    assert [p["version"] for p in body["predictions"]] == ["1.0.0"] * 4 + ["2.0.0"] * 4
    assert [p["trip_id"] for p in body["predictions"]] == [f"t{c}" for c in range(8)]
    for cluster in (1, 6):  # the router's answer is the owning version's own answer
        owner = "1.0.0" if cluster < 4 else "2.0.0"
        direct = HTTP.post(
            f"{servers[owner]}/v{owner}/predict", json={"trips": cluster_trips([cluster])}
        ).json()["predictions"][0]
        assert body["predictions"][cluster]["eta_minutes"] == direct["eta_minutes"]

    # Moving traffic takes effect without restarting any server.
    traffic.record(store, {"2.0.0": range(8)}, 8, live, "blue/green")
    body = HTTP.post(f"{url}/predict", json={"trips": cluster_trips(range(8))}).json()
    assert {p["version"] for p in body["predictions"]} == {"2.0.0"}

    # The caller's errors: a trip without a cluster, or with one that does not exist, is
    # 422 naming the field, never routed to a guessed version.
    for trip, message in (
        (TRIP, "Field required"),
        ({**TRIP, "user_cluster": 8}, "user cluster 8 does not exist: clusters are 0-7"),
        ({**TRIP, "user_cluster": -1}, "greater than or equal to 0"),
    ):
        bad = HTTP.post(f"{url}/predict", json={"trips": [*cluster_trips([0]), trip]})
        assert bad.status_code == 422, bad.text
        (detail,) = bad.json()["detail"]
        # located as the version server and FastAPI locate a body's fields
        assert detail["loc"] == ["body", "trips", 1, "user_cluster"] and message in detail["msg"]

    # A request is answered whole or not at all: a trip whose version is down makes the
    # request 503 naming that version and its clusters, with no host name or exception;
    # other versions' clusters are answered as before.
    traffic.record(store, {"1.0.0": [0], "2.0.0": range(1, 8)}, 8, live, "canary")
    running.stop("1.0.0")
    down = HTTP.post(f"{url}/predict", json={"trips": cluster_trips([0, 3])})
    detail = down.json()["detail"]
    assert down.status_code == 503 and detail.startswith("version 1.0.0 (user clusters 0) unavail")
    assert "127.0.0.1" not in detail and "Error" not in detail and "2.0.0" not in detail
    up = HTTP.post(f"{url}/predict", json={"trips": cluster_trips([3])})
    assert up.status_code == 200 and up.json()["versions"] == ["2.0.0"]


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_get_422_not_a_traceback(
    shared_servers: dict[str, str], value: str
) -> None:
    body = json.dumps({"trips": [TRIP]}).replace('"distance_km": 5.0', f'"distance_km": {value}')
    assert value in body
    response = HTTP.post(
        f"{shared_servers['1.0.0']}/v1.0.0/predict",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert ["body", "trips", 0, "distance_km"] in [d["loc"] for d in response.json()["detail"]]


def test_errors_never_echo_the_request(shared_servers: dict[str, str]) -> None:
    huge = "x" * 500_000
    response = HTTP.post(
        f"{shared_servers['1.0.0']}/v1.0.0/predict", json={"trips": [{**TRIP, "trip_id": huge}]}
    )
    assert response.status_code == 422
    assert len(response.content) < 1000 and "xxxx" not in response.text


def test_oversized_bodies_get_413_before_they_are_read(shared_servers: dict[str, str]) -> None:
    url = f"{shared_servers['1.0.0']}/v1.0.0/predict"
    declared = HTTP.post(
        url, content=b"x" * 2_000_000, headers={"content-type": "application/json"}
    )
    assert declared.status_code == 413

    def chunks():  # no Content-Length: the limit is counted as the body arrives
        for _ in range(40):
            yield b" " * 50_000

    streamed = HTTP.post(url, content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    assert HTTP.post(url, json={"trips": [TRIP] * 1000}).status_code == 200  # the max is fine
    assert HTTP.post(url, json={"trips": [TRIP] * 1001}).status_code == 422


SERVER = """
import os, sys
os.environ.update(ARTIFACT_ROOT=sys.argv[1], MODEL_VERSION="1.0.0", HOST="127.0.0.1",
                  PORT=sys.argv[2])
from {{ cookiecutter.package }}.serving.app import main
main()
"""


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


@pytest.mark.slow
def test_three_oversized_requests_at_once_leave_memory_and_healthz_alone(
    released: Path,
) -> None:
    """A server process as the image runs it; three 80 MB bodies sent at once."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(released), str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, server)
        HTTP.post(f"{url}/v1.0.0/predict", json={"trips": [TRIP]})  # warm
        before = peak_rss_mib(server.pid)

        def oversized() -> int:
            with socket.create_connection(("127.0.0.1", port)) as raw:
                raw.sendall(
                    b"POST /v1.0.0/predict HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 80000000\r\n\r\n"
                )
                try:
                    for _ in range(80):
                        raw.sendall(b" " * 1_000_000)
                except OSError:
                    pass  # the server answered and closed: the rest was never read
                return int(raw.recv(1024).split()[1])

        with ThreadPoolExecutor(3) as pool:
            statuses = [pool.submit(oversized) for _ in range(3)]
            started = time.perf_counter()
            assert HTTP.get(f"{url}/healthz", timeout=5).status_code == 200
            healthz_s = time.perf_counter() - started
            assert [s.result(timeout=60) for s in statuses] == [413, 413, 413]
        grown = peak_rss_mib(server.pid) - before
        print(f"peak RSS grew {grown:.1f} MiB; /healthz answered in {healthz_s * 1000:.0f} ms")
        assert grown < 20  # three 80 MB bodies, none of them held
    finally:
        server.terminate()
        server.wait(timeout=10)


THREADS_PROBE = """
import json, sys
from {{ cookiecutter.package }}.serving.app import create_app  # first, as the server's entry point
from fastapi.testclient import TestClient
from threadpoolctl import threadpool_info
from {{ cookiecutter.package }}.artifacts.names import ReleaseNames
from {{ cookiecutter.package }}.artifacts.predictions import ParquetPredictions
from {{ cookiecutter.package }}.artifacts.traffic import Assignment

app = create_app(ReleaseNames("taxi", "2.0.0", "2.0.0", sys.argv[1]))
trip = json.loads(sys.argv[2])
assert TestClient(app).post("/v2.0.0/predict", json={"trips": [trip] * 50}).status_code == 200
print(json.dumps(sorted({(i["internal_api"], i["num_threads"]) for i in threadpool_info()})))
"""


@pytest.mark.heavy
def test_native_thread_pools_keep_one_thread_after_the_model_loads(
    released: Path,
) -> None:
    """In a fresh process loaded as a server loads (package first, then the model, whose
    libraries start OpenMP and BLAS pools), every pool has one thread after the first
    prediction, SERVING_THREADS's default: two versions' servers on one machine do not
    starve each other. The thread variables this test process runs with are not passed on
    (the image sets none), so each library's own default would be a thread per core.
    One process, for the default that ships: the case SERVING_THREADS=2 this test had was
    each library's own default on a 2-core machine, and could not fail there."""
    assert (os.cpu_count() or 1) > 1, "one core: a pool of one thread proves nothing"
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in (*THREAD_VARIABLES, "SERVING_THREADS")
    }
    # The model's numpy form loads numpy's BLAS only; its pickle (SERVING_MODEL=pickle, or
    # a model with no numpy form) brings scikit-learn's OpenMP too.
    for serving_model, libraries in (("numpy", {"openblas"}), ("pickle", {"openmp", "openblas"})):
        result = subprocess.run(
            [sys.executable, "-c", THREADS_PROBE, str(released), json.dumps(TRIP)],
            capture_output=True,
            text=True,
            env={**environment, "SERVING_MODEL": serving_model},
            timeout=120,
            check=True,
        )
        pools = [tuple(pool) for pool in json.loads(result.stdout)]
        assert {api for api, _ in pools} >= libraries
        assert {size for _, size in pools} == {1}


def serve_in_process(artifact_root: Path, version: str, port: int) -> subprocess.Popen:
    """A version's server as the image starts it (`python -m ...serving.app`)."""
    names = ReleaseNames("taxi", version, version, str(artifact_root))
    command, environment = serve_command(sys.executable, names, port=port)
    return subprocess.Popen(
        command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def wait_until_healthy(url: str, process: subprocess.Popen) -> float:
    deadline = time.monotonic() + 60
    while True:
        try:
            if HTTP.get(f"{url}/healthz", timeout=1).status_code == 200:
                return time.monotonic()
        except httpx.TransportError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)


@pytest.mark.slow
def test_a_killed_version_recovers_at_once_and_never_disturbs_the_other(
    artifact_root: Path, running: Servers
) -> None:
    """SIGKILL a version's server under load and start it again on its port: the other
    version's clusters see no error at any time, and the restarted version's clusters are
    answered within a second of its server being ready."""
    ports = {version: free_port() for version in ("1.0.0", "2.0.0")}
    processes = {v: serve_in_process(artifact_root, v, p) for v, p in ports.items()}
    urls = {v: f"http://127.0.0.1:{p}" for v, p in ports.items()}
    try:
        for version, url in urls.items():
            wait_until_healthy(url, processes[version])
        store = open_store(str(artifact_root))
        traffic.record(store, {"1.0.0": range(4), "2.0.0": range(4, 8)}, 8, [*urls], "A/B")
        router_url = start_router(artifact_root, urls, running) + "/predict"
        answers: list[tuple[float, int, int]] = []  # (time, cluster, status)
        stop = threading.Event()

        def load(cluster: int) -> None:
            with httpx.Client(timeout=10) as client:
                while not stop.is_set():
                    body = {"trips": cluster_trips([cluster])}
                    status = client.post(router_url, json=body).status_code
                    answers.append((time.monotonic(), cluster, status))

        workers = [threading.Thread(target=load, args=(c,)) for c in (1, 2, 5, 6)]
        for worker in workers:
            worker.start()
        time.sleep(0.5)
        processes["2.0.0"].kill()
        processes["2.0.0"].wait()
        killed_at = time.monotonic()
        time.sleep(0.5)
        processes["2.0.0"] = serve_in_process(artifact_root, "2.0.0", ports["2.0.0"])
        ready_at = wait_until_healthy(urls["2.0.0"], processes["2.0.0"])
        time.sleep(1.5)
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
        # A server that hangs (stopped, not dead): its request gets 503 at the router's
        # upstream timeout (2 s by default), while the other version answers at once.
        processes["2.0.0"].send_signal(signal.SIGSTOP)
        started = time.monotonic()
        hung = HTTP.post(router_url, json={"trips": cluster_trips([6])}, timeout=30)
        assert hung.status_code == 503 and time.monotonic() - started < 3.5
        started = time.monotonic()
        fine = HTTP.post(router_url, json={"trips": cluster_trips([1])}, timeout=30)
        assert fine.status_code == 200 and time.monotonic() - started < 0.5
        processes["2.0.0"].send_signal(signal.SIGCONT)
    finally:
        for process in processes.values():
            process.kill()
            process.wait()
    other = [status for _, cluster, status in answers if cluster < 4]
    assert len(other) > 50 and set(other) == {200}  # never an error for 1.0.0's clusters
    restarted = [(at, status) for at, cluster, status in answers if cluster >= 4]
    assert any(status == 503 for at, status in restarted if killed_at < at < ready_at)
    first_answer = min(at for at, status in restarted if at > ready_at and status == 200)
    assert first_answer - ready_at < 1.0
    assert all(status == 200 for at, status in restarted if at > first_answer)


def test_a_version_server_imports_neither_scikit_learn_nor_pandas(released: Path) -> None:
    """The server of a released boosted-trees model loads its numpy form: a fresh
    interpreter that creates the app and answers a prediction has imported neither."""
    script = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "from {{ cookiecutter.package }}.artifacts.names import ReleaseNames\n"
        "from {{ cookiecutter.package }}.serving.app import create_app\n"
        f"app = create_app(ReleaseNames('taxi', '2.0.0', '2.0.0', {str(released)!r}))\n"
        f"trip = {TRIP!r}\n"
        "answer = TestClient(app).post('/v2.0.0/predict', json={'trips': [trip]})\n"
        "assert answer.status_code == 200, answer.text\n"
        "print(sorted(m for m in ('sklearn', 'pandas', 'scipy') if m in sys.modules))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"
