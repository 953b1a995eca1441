"""What Prometheus metrics cost a version's server: the same released version served twice
on loopback, once with metrics (`/metrics`, the default) and once with SERVING_METRICS=0,
one-trip predictions at concurrency 32 (`bench/load.py`'s client), the two alternated
ROUNDS times so drift hits both alike; medians of throughput and p99, and their ratios.
The router's cost is measured the same way (metrics on and off, each in front of the
same metered server). Prints and saves bench/results/metrics.json.
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

ROUNDS, REQUESTS, CONCURRENCY = 7, 4000, 32


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
    for _ in range(ROUNDS):
        for metrics in (True, False):
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
        finally:
            for process in processes:
                process.kill()
                process.wait(timeout=30)
        save("metrics", figures)
        print(figures)


if __name__ == "__main__":
    main()
