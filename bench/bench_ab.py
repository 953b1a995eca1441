"""`inv ab` at scale, and what shadow traffic adds to the router.

1. `inv ab` over Parquet predictions with outcomes: two live versions of a generated
   project (made live cheaply: deployed workflows and a release record), each with
   predictions of the same trips in runs of 25 000 rows (served and shadow), and the trips'
   outcomes. Wall time and peak memory (max RSS) of the whole `inv ab` process, medians of
   3, at 0.2 M and 1 M prediction rows; the baseline in the same run is `inv traffic`, a
   task that reads the same store and starts the same way, so the difference is the A/B
   join and statistic itself.
2. The router with shadow traffic on and off: two versions' real servers (A/B split 0-3 /
   4-7, `bench/load.py`), a router each way, one-trip requests at concurrency 32 from an
   aiohttp client; median and p99 latency and throughput, each way measured twice,
   alternating.

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
from common import generated_project, median, save  # noqa: E402
from load import Deployment  # noqa: E402

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
    deployment = Deployment(str(project / ".venv/bin/python"), scratch / "serving")
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    try:
        deployment.assign({"0.1.0": [0, 1, 2, 3], "0.2.0": [4, 5, 6, 7]})
        for shadow in ("off", "on", "off", "on"):
            router, port = deployment.start_router(shadow == "on")
            try:
                runs[shadow].append(deployment.load(port, "/predict", CONCURRENCY, REQUESTS, 1))
            finally:
                router.terminate()
                router.wait(timeout=30)
    finally:
        deployment.close()

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
