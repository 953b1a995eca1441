"""Latency of one online prediction: a version's server (real uvicorn) on loopback, one
client on a kept-alive connection; median and p99 over a bounded number of requests. The
baseline, in the same run against the same server, is GET /healthz: the framework and HTTP
cost with no validation, features or model. Then the same request through the router
(`POST /predict`, a second real uvicorn process that reads the traffic assignment and
forwards to the version): what the stable endpoint adds."""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import generated_project, save  # noqa: E402

REQUESTS, WARMUP = 1000, 50
TRIP = {"trip_id": "t1", "distance_km": 5.0, "pickup_hour": 8, "weekday": 1, "area_cluster": 0,
        "user_cluster": 3}  # the router needs it; a version's own server ignores it
RELEASE = """
import sys, tempfile
from taxi_eta.pipelines import steps
from taxi_eta.artifacts import traffic
from taxi_eta.artifacts.names import ReleaseNames
from taxi_eta.artifacts.store import open_store
names = ReleaseNames("taxi-eta", "0.1.0", "0.1.0", sys.argv[1])
traffic.record(open_store(sys.argv[1]), {"0.1.0": range(8)}, 8, ["0.1.0"], "bench")
steps.ensure_features(names, 4000, 42, [7, 8, 9, 16, 17, 18])
path = tempfile.mktemp()
model = {"_target_": "sklearn.ensemble.HistGradientBoostingRegressor", "max_depth": 6}
metrics = steps.train_and_evaluate(names, model, 0.2, 42, path)
steps.publish_model(names, path, metrics, "bench", {"features": {"rush_hours": [7, 8, 9]}})
"""
# A server process that only serves, as `inv serve` and the image start it.
SERVE = """
import sys
from taxi_eta.artifacts.names import ReleaseNames
from taxi_eta.serving.app import serve
serve(ReleaseNames("taxi-eta", "0.1.0", "0.1.0", sys.argv[1]), port=int(sys.argv[2]))
"""
ROUTER = """
import sys
from taxi_eta.serving import router
root, upstream, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
app = router.create_router(root, router.upstreams("http://{deployment}", {"0.1.0": upstream}, root))
router.serve(app, port=port)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_healthy(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", "/healthz")
            health = connection.getresponse()
            health.read()
            if health.status == 200:
                connection.close()
                return
        except OSError:
            assert process.poll() is None, "server exited"
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)


def latencies(port: int, method: str, path: str, payload: str | None) -> list[float]:
    """One fresh kept-alive connection per series (an idle one is closed by the server)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"}
    samples = []
    for i in range(WARMUP + REQUESTS):
        started = time.perf_counter()
        connection.request(method, path, payload, headers)
        response = connection.getresponse()
        response.read()
        assert response.status == 200, response.status
        if i >= WARMUP:
            samples.append(time.perf_counter() - started)
    return sorted(samples)


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        project = generated_project(Path(scratch))
        python, root = str(project / ".venv/bin/python"), str(Path(scratch) / "artifacts")
        port, router_port = free_port(), free_port()
        subprocess.run([python, "-c", RELEASE, root], check=True, capture_output=True)
        server = subprocess.Popen([python, "-c", SERVE, root, str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        router = None
        try:
            wait_until_healthy(port, server)
            router = subprocess.Popen(
                [python, "-c", ROUTER, root, f"http://127.0.0.1:{port}", str(router_port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_until_healthy(router_port, router)
            body = json.dumps({"trips": [TRIP]})
            baseline = latencies(port, "GET", "/healthz", None)
            samples = latencies(port, "POST", "/v0.1.0/predict", body)
            through_router = latencies(router_port, "POST", "/predict", body)
        finally:
            for process in (server, router):
                if process is not None:
                    process.terminate()
                    process.wait(timeout=10)

    def ms(value: float) -> float:
        return round(value * 1000, 2)

    def p99(values: list[float]) -> float:
        return ms(values[int(0.99 * len(values)) - 1])

    save("serving", {
        "requests": REQUESTS,
        "predict_median_ms": ms(statistics.median(samples)),
        "predict_p99_ms": p99(samples),
        "predict_max_ms": ms(samples[-1]),
        "healthz_median_ms": ms(statistics.median(baseline)),
        "healthz_p99_ms": p99(baseline),
        "predict_over_healthz": round(statistics.median(samples) / statistics.median(baseline),
                                      1),
        "router_median_ms": ms(statistics.median(through_router)),
        "router_p99_ms": p99(through_router),
        "router_adds_median_ms": ms(statistics.median(through_router)
                                    - statistics.median(samples)),
        "router_adds_p99_ms": round(p99(through_router) - p99(samples), 2),
    })


if __name__ == "__main__":
    main()
