"""What Prometheus metrics cost a version's server: the same released version served twice
on loopback, once with metrics (`/metrics`, the default) and once with SERVING_METRICS=0,
one-trip predictions at concurrency 32 (`bench/load.py`'s client), the two alternated
ROUNDS times (on-off, off-on, ...) so drift hits both alike; medians of throughput and p99,
and their ratios. The router's cost is measured the same way (metrics on and off, each in
front of the same metered server). On this 2-core VM two runs of the same code differ by up
to 8% in these ratios, so the hooks a request calls are also timed in-process (what the
metrics add to each request, in microseconds), with a scrape of each registry.
Prints and saves bench/results/metrics.json.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serving import free_port, wait_until_healthy  # noqa: E402
from common import generated_project, save  # noqa: E402
from load import LOAD, RELEASE_TWO, ROUTER, SERVE  # noqa: E402

ROUNDS, REQUESTS, CONCURRENCY = 11, 6000, 32


def start(python: str, script: list[str], metrics: bool) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "SERVING_METRICS": "1" if metrics else "0"}
    process = subprocess.Popen([python, "-c", *script, str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until_healthy(port, process)
    return process, port


def load(python: str, port: int, path: str) -> dict:
    result = subprocess.run([python, "-c", LOAD, str(port), path, str(CONCURRENCY),
                             str(REQUESTS), "1"], check=True, capture_output=True, text=True)
    return dict(json.loads(result.stdout))


def compare(python: str, ports: dict[bool, int], path: str) -> dict:
    runs: dict[bool, list[dict]] = {True: [], False: []}
    for round_ in range(ROUNDS):  # on-off, then off-on: a drift in between hits both alike
        for metrics in (True, False) if round_ % 2 == 0 else (False, True):
            runs[metrics].append(load(python, ports[metrics], path))
    figures = {}
    for metrics, found in runs.items():
        figures["on" if metrics else "off"] = {
            key: round(statistics.median(run[key] for run in found), 2)
            for key in ("requests_per_s", "median_ms", "p99_ms")
        } | {"failed": sum(run["failed"] for run in found)}
    figures["throughput_on_over_off"] = round(
        figures["on"]["requests_per_s"] / figures["off"]["requests_per_s"], 3)
    figures["p99_on_over_off"] = round(figures["on"]["p99_ms"] / figures["off"]["p99_ms"], 3)
    return figures


HOOKS = """
import json, time
import numpy as np
from prometheus_client import generate_latest
from taxi_eta.ml import drift
from taxi_eta.ml.data import make_trips
from taxi_eta.ml.features import build_features
from taxi_eta.serving.metrics import RouterMetrics, VersionMetrics
features = build_features(make_trips(5000, 1), [7, 8, 9])
reference = drift.summarize(features, features["distance_km"].to_numpy())
version = VersionMetrics("0.1.0", "sha", "git", "inputs", reference=reference)
router = RouterMetrics(lambda: None)
one = (np.array([4.2]), np.array([8]), np.array([1]), np.array([0]), np.array([12.5]))
N = 200_000
def per_call(hook):
    started = time.perf_counter()
    for _ in range(N):
        hook()
    return (time.perf_counter() - started) / N * 1e6
def version_hooks():
    version.requests.observe(200, 0.0038)
    version.observe_batch(1, 0.0)
    version.recent.append(one)
def router_hooks():
    router.requests.observe(200, 0.0055)
    router.observe_trips("0.1.0", [3])
    router.observe_upstream("0.1.0", "ok", 0.004)
def scrape_ms(registry):
    started = time.perf_counter()
    for _ in range(20):
        generate_latest(registry)
    return (time.perf_counter() - started) / 20 * 1e3
print(json.dumps({"version_server_us_per_request": round(per_call(version_hooks), 2),
                  "router_us_per_request": round(per_call(router_hooks), 2),
                  "version_scrape_ms_full_drift_window": round(scrape_ms(version.registry), 1),
                  "router_scrape_ms": round(scrape_ms(router.registry), 2)}))
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        project = generated_project(scratch)
        python, root = str(project / ".venv/bin/python"), str(scratch / "artifacts")
        subprocess.run([python, "-c", RELEASE_TWO, root], check=True, capture_output=True)
        processes = []
        try:
            servers = {}
            for metrics in (True, False):
                process, servers[metrics] = start(python, [SERVE, root, "0.1.0"], metrics)
                processes.append(process)
            figures = {"version_server_c32_one_trip": compare(
                python, servers, "/v0.1.0/predict")}
            routers = {}
            upstream = f"0.1.0=http://127.0.0.1:{servers[True]}"
            for metrics in (True, False):
                port = free_port()
                process = subprocess.Popen(
                    [python, "-c", ROUTER, root, "off", str(port), upstream],
                    env={**os.environ, "SERVING_METRICS": "1" if metrics else "0"},
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                wait_until_healthy(port, process)
                processes.append(process)
                routers[metrics] = port
            figures["router_c32_one_trip"] = compare(python, routers, "/predict")
            hooks = json.loads(subprocess.run([python, "-c", HOOKS], check=True,
                                              capture_output=True, text=True).stdout)
            # What a request costs the server at the measured throughput, and the hooks' part.
            for name, server in (("version_server", "version_server_c32_one_trip"),
                                 ("router", "router_c32_one_trip")):
                per_request_us = 1e6 / figures[server]["off"]["requests_per_s"]
                hooks[f"{name}_share_of_a_request"] = round(
                    hooks[f"{name}_us_per_request"] / per_request_us, 4)
            figures["hooks"] = hooks
        finally:
            for process in processes:
                process.kill()
                process.wait(timeout=30)
        save("metrics", figures)
        print(figures)


if __name__ == "__main__":
    main()
