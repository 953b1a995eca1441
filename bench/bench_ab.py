"""`inv ab` at scale, and what shadow traffic adds to the router.

1. `inv ab` over Parquet predictions with outcomes: two live versions of a generated
   project (made live cheaply: deployed workflows and a release record), each with
   predictions of the same trips in runs of 25 000 rows (served and shadow), and the trips'
   outcomes. Wall time and peak memory (max RSS) of the whole `inv ab` process, medians of
   3, at 0.2 M and 1 M prediction rows; the baseline in the same run is `inv traffic`, a
   task that reads the same store and starts the same way, so the difference is the A/B
   join and statistic itself.
2. The router with shadow traffic on and off: two versions' real servers (A/B split 0-3 /
   4-7), a router each way, one-trip requests at concurrency 32 from an aiohttp client;
   median and p99 latency and throughput, each way measured twice, alternating.

Prints and saves bench/results/ab.json.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serving import free_port, wait_until_healthy  # noqa: E402
from common import generated_project, median, save  # noqa: E402

SIZES = (200_000, 1_000_000)
RUN_ROWS = 25_000
REPEAT = 3
CONCURRENCY, REQUESTS = 32, 3000

LIVE = """
import json, sys
import numpy as np
import pandas as pd
from taxi_eta.artifacts import traffic
from taxi_eta.artifacts.data_sources import record_outcomes
from taxi_eta.artifacts.predictions import ParquetPredictions
from taxi_eta.config import load_config
from taxi_eta.ml.data import make_trips
from taxi_eta.release.context import ReleaseContext
from taxi_eta.release.workflows import deploy_workflows

root, rows = sys.argv[1], int(sys.argv[2])
cfg = load_config("local", [f"env.artifact_root={root}"])
for version in ("0.1.0", "0.2.0"):
    ctx = ReleaseContext.create(cfg, version)
    deploy_workflows(ctx, "0" * 40)
    ctx.store.write_text(ctx.names.release_record_key, json.dumps({"version": version}))
live = ["0.1.0", "0.2.0"]
traffic.record(ctx.store, {"0.1.0": range(4), "0.2.0": range(4, 8)}, 8, live, "bench")
sink, rng = ParquetPredictions(root), np.random.default_rng(0)
for run in range(rows // 2 // RUN_ROWS):
    trips = make_trips(RUN_ROWS, 1000 + run)
    for version, shift in (("0.1.0", 0.0), ("0.2.0", 0.3)):
        eta = trips["eta_minutes"] + shift + rng.normal(0, 1.5, len(trips))
        frame = trips[["trip_id", "user_cluster"]].assign(
            eta_minutes=eta.round(2), model_version=version,
            served=trips["user_cluster"].isin(range(4) if version == "0.1.0" else range(4, 8)))
        sink.write(version, f"run-{run:04d}", frame)
    record_outcomes(root, trips)
""".replace("RUN_ROWS", str(RUN_ROWS))

SERVERS = """
import sys
from taxi_eta.artifacts import traffic
from taxi_eta.artifacts.names import ReleaseNames
from taxi_eta.artifacts.store import open_store
from taxi_eta.pipelines import steps
import tempfile
root = sys.argv[1]
for version in ("0.1.0", "0.2.0"):
    names = ReleaseNames("taxi-eta", version, version, root)
    steps.ensure_features(names, 4000, 42, [7, 8, 9])
    path = tempfile.mktemp()
    model = {"_target_": "sklearn.ensemble.HistGradientBoostingRegressor", "max_depth": 6}
    metrics = steps.train_and_evaluate(names, model, 0.2, 42, path)
    steps.publish_model(names, path, metrics, "bench", {"features": {"rush_hours": [7, 8, 9]}})
live = ["0.1.0", "0.2.0"]
traffic.record(open_store(root), {"0.1.0": range(4), "0.2.0": range(4, 8)}, 8, live, "bench")
"""
SERVE = """
import sys
from taxi_eta.artifacts.names import ReleaseNames
from taxi_eta.serving.app import serve
serve(ReleaseNames("taxi-eta", sys.argv[2], sys.argv[2], sys.argv[1]), port=int(sys.argv[3]))
"""
ROUTER = """
import sys
from taxi_eta.artifacts.predictions import ParquetPredictions
from taxi_eta.serving import router
root, shadow, port = sys.argv[1], sys.argv[2] == "on", int(sys.argv[3])
upstreams = dict(arg.split("=", 1) for arg in sys.argv[4:])
app = router.create_router(
    root, router.upstreams("http://{deployment}", upstreams, root),
    shadow_sink=ParquetPredictions(root) if shadow else None)
router.serve(app, port=port)
"""
LOAD = """
import asyncio, json, sys, time
import aiohttp

async def main(port, concurrency, total):
    latencies, sent = [], 0
    async with aiohttp.ClientSession() as session:
        async def worker(index):
            nonlocal sent
            while sent < total:
                sent += 1
                trip = {"trip_id": f"t{sent}", "distance_km": 5.0, "pickup_hour": 8,
                        "weekday": 1, "area_cluster": 0, "user_cluster": sent % 8}
                started = time.perf_counter()
                async with session.post(f"http://127.0.0.1:{port}/predict",
                                        json={"trips": [trip]}) as response:
                    await response.read()
                    assert response.status == 200, response.status
                latencies.append(time.perf_counter() - started)
        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        wall = time.perf_counter() - started
    latencies.sort()
    print(json.dumps({"median_ms": latencies[len(latencies) // 2] * 1000,
                      "p99_ms": latencies[int(0.99 * len(latencies)) - 1] * 1000,
                      "requests_per_s": total / wall}))

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
"""


def measure(command: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one fresh process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    assert status == 0, process.stderr.read() if process.stderr else status
    return wall, usage.ru_maxrss / 1024


def ab_at_scale(project: Path, scratch: Path) -> dict:
    python, inv = str(project / ".venv/bin/python"), str(project / ".venv/bin/inv")
    figures = {}
    for rows in SIZES:
        root = scratch / f"ab-{rows}"
        subprocess.run([python, "-c", LIVE, str(root), str(rows)], check=True,
                       capture_output=True)
        override = ["-o", f"env.artifact_root={root}"]
        ab = [measure([inv, "ab", *override], project) for _ in range(REPEAT)]
        base = [measure([inv, "traffic", *override], project) for _ in range(REPEAT)]
        wall, rss = median([w for w, _ in ab]), median([m for _, m in ab])
        base_wall, base_rss = median([w for w, _ in base]), median([m for _, m in base])
        figures[f"{rows}_rows"] = {
            "inv_ab_s": wall, "inv_ab_peak_mb": round(rss),
            "inv_traffic_s": base_wall, "inv_traffic_peak_mb": round(base_rss),
            "ab_over_traffic_s": round(wall - base_wall, 3),
            "ab_over_traffic_ratio": round(wall / base_wall, 2),
        }
    return figures


def shadow_overhead(project: Path, scratch: Path) -> dict:
    python = str(project / ".venv/bin/python")
    root = str(scratch / "serving")
    subprocess.run([python, "-c", SERVERS, root], check=True, capture_output=True)
    processes, upstreams = [], []
    try:
        for version in ("0.1.0", "0.2.0"):
            port = free_port()
            server = subprocess.Popen([python, "-c", SERVE, root, version, str(port)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            processes.append(server)
            wait_until_healthy(port, server)
            upstreams.append(f"{version}=http://127.0.0.1:{port}")
        runs: dict[str, list[dict]] = {"off": [], "on": []}
        for shadow in ("off", "on", "off", "on"):
            port = free_port()
            router = subprocess.Popen([python, "-c", ROUTER, root, shadow, str(port), *upstreams],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_until_healthy(port, router)
                load = subprocess.run([python, "-c", LOAD, str(port), str(CONCURRENCY),
                                       str(REQUESTS)], check=True, capture_output=True, text=True)
                import json

                runs[shadow].append(json.loads(load.stdout))
            finally:
                router.terminate()
                router.wait(timeout=30)
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)

    def med(way: str, key: str) -> float:
        return round(median([run[key] for run in runs[way]]), 2)

    return {
        "concurrency": CONCURRENCY, "requests": REQUESTS,
        **{f"shadow_{way}_{key}": med(way, key) for way in ("off", "on")
           for key in ("median_ms", "p99_ms", "requests_per_s")},
        "shadow_adds_median_ms": round(med("on", "median_ms") - med("off", "median_ms"), 2),
        "shadow_adds_p99_ms": round(med("on", "p99_ms") - med("off", "p99_ms"), 2),
        "throughput_on_over_off": round(med("on", "requests_per_s")
                                        / med("off", "requests_per_s"), 3),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        project = generated_project(scratch)
        save("ab", {"inv_ab": ab_at_scale(project, scratch),
                    "router_shadow": shadow_overhead(project, scratch)})


if __name__ == "__main__":
    main()
