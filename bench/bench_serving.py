"""Latency of one online prediction: a version's server (real uvicorn) on loopback, one
client on a kept-alive connection; median and p99 over a bounded number of requests. The
baseline, in the same run against the same server, is GET /healthz: the framework and HTTP
cost with no validation, features or model."""

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
TRIP = {"trip_id": "t1", "distance_km": 5.0, "pickup_hour": 8, "weekday": 1, "area_cluster": 0}
RELEASE_AND_SERVE = """
import sys, tempfile
from taxi_eta.pipelines import steps
from taxi_eta.release.names import ReleaseNames
from taxi_eta.serving.app import serve
names = ReleaseNames("taxi-eta", "0.1.0", "0.1.0", sys.argv[1])
steps.ensure_features(names, 4000, 42, [7, 8, 9, 16, 17, 18])
path = tempfile.mktemp()
model = {"_target_": "sklearn.ensemble.HistGradientBoostingRegressor", "max_depth": 6}
metrics = steps.train_and_evaluate(names, model, 0.2, 42, path)
steps.publish_model(names, path, metrics, "bench", {"features": {"rush_hours": [7, 8, 9]}})
serve(names, port=int(sys.argv[2]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        project = generated_project(Path(scratch))
        port = free_port()
        server = subprocess.Popen([str(project / ".venv/bin/python"), "-c", RELEASE_AND_SERVE,
                                   str(Path(scratch) / "artifacts"), str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    connection.request("GET", "/healthz")
                    health = connection.getresponse()
                    health.read()
                    if health.status == 200:
                        break
                except OSError:
                    assert server.poll() is None, "server exited"
                    assert time.monotonic() < deadline, "server did not start"
                    time.sleep(0.2)
            body = json.dumps({"trips": [TRIP]})
            headers = {"Content-Type": "application/json"}

            def latencies(method: str, path: str, payload: str | None) -> list[float]:
                samples = []
                for i in range(WARMUP + REQUESTS):
                    started = time.perf_counter()
                    connection.request(method, path, payload, headers)
                    response = connection.getresponse()
                    response.read()
                    assert response.status == 200
                    if i >= WARMUP:
                        samples.append(time.perf_counter() - started)
                return sorted(samples)

            baseline = latencies("GET", "/healthz", None)
            samples = latencies("POST", "/v0.1.0/predict", body)
        finally:
            server.terminate()
            server.wait(timeout=10)
    def p99(values: list[float]) -> float:
        return round(values[int(0.99 * len(values)) - 1] * 1000, 2)

    save("serving", {
        "requests": REQUESTS,
        "predict_median_ms": round(statistics.median(samples) * 1000, 2),
        "predict_p99_ms": p99(samples),
        "predict_max_ms": round(samples[-1] * 1000, 2),
        "healthz_median_ms": round(statistics.median(baseline) * 1000, 2),
        "healthz_p99_ms": p99(baseline),
        "predict_over_healthz": round(statistics.median(samples) / statistics.median(baseline),
                                      1),
    })


if __name__ == "__main__":
    main()
