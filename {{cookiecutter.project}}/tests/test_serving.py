"""Two released versions served side by side by real uvicorn servers on loopback: each at
its own endpoint, its requests batched, bad input refused, its process kept lean."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pandas as pd
import pytest
from conftest import free_port
from served import (
    HTTP,
    TRIP,
    Servers,
    cluster_trips,
    serve_in_process,
    start_router,
    wait_until_healthy,
)

from {{ cookiecutter.package }}.artifacts import traffic
from {{ cookiecutter.package }}.artifacts.names import ReleaseNames
from {{ cookiecutter.package }}.artifacts.store import open_store
from {{ cookiecutter.package }}.ml.features import build_features
from {{ cookiecutter.package }}.ml.predict import predict
from {{ cookiecutter.package }}.pipelines import steps
from {{ cookiecutter.package }}.serving import THREAD_VARIABLES
from {{ cookiecutter.package }}.serving.app import create_app


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
            ("GET", "/metrics"),
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


@pytest.mark.slow
def test_a_killed_version_recovers_at_once_and_never_disturbs_the_other(
    released_root: Path, running: Servers
) -> None:
    """SIGKILL a version's server under load and start it again on its port: the other
    version's clusters see no error at any time, and the restarted version's clusters are
    answered within a second of its server being ready."""
    ports = {version: free_port() for version in ("1.0.0", "2.0.0")}
    processes = {v: serve_in_process(released_root, v, p) for v, p in ports.items()}
    urls = {v: f"http://127.0.0.1:{p}" for v, p in ports.items()}
    try:
        for version, url in urls.items():
            wait_until_healthy(url, processes[version])
        store = open_store(str(released_root))
        traffic.record(store, {"1.0.0": range(4), "2.0.0": range(4, 8)}, 8, [*urls], "A/B")
        router_url = start_router(released_root, urls, running) + "/predict"
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
        processes["2.0.0"] = serve_in_process(released_root, "2.0.0", ports["2.0.0"])
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
