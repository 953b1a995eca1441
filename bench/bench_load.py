"""Online serving under load, on loopback, as the README sets it up: each version's server
and the router as separate processes (`bench/load.py`), an aiohttp client at fixed
concurrency. All figures come from this one run, so the ratios compare like with like.

1. Sweep: concurrency 1, 8, 32, 128; one version serving every cluster against an A/B
   split (0-3 / 4-7); requests of one trip and of 50 trips (whose trips span the
   clusters, so an A/B request is split between both servers). Throughput, median and p99,
   medians of 3 passes with the two splits alternating.
2. One server directly at c=32: one-trip predictions against GET /healthz (the framework
   and HTTP cost alone).
3. Traffic moves under load: at c=8, the assignment goes A/B, then all to 0.2.0, then back
   to 0.1.0 (the records `inv traffic --assign`, `--all` and `inv rollback` write): failed
   requests, and how long after each write the moved clusters are answered by their new
   version (the router re-reads the assignment every 0.2 s here, every
   `serving.traffic_refresh_seconds` in a project).
4. Kill and restart: under A/B load at c=8, 0.2.0's server is SIGKILLed and started again
   on its port; errors seen by 0.1.0's clusters, and how long after 0.2.0's server is
   ready its clusters get their first 200.

Resident memory of the router and both servers before and after the sweep is recorded too.
Prints and saves bench/results/load.json.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serving import wait_until_healthy  # noqa: E402
from common import generated_project, save  # noqa: E402
from load import LOAD, Deployment  # noqa: E402

CONCURRENCY = (1, 8, 32, 128)
REQUESTS = {1: 1500, 50: 500}  # per case, by trips per request
REPEAT = 3
SPLITS = {"single": {"0.1.0": list(range(8))},
          "ab": {"0.1.0": [0, 1, 2, 3], "0.2.0": [4, 5, 6, 7]}}


def sweep(deployment: Deployment) -> dict:
    """Each case REPEAT times, the splits alternating, so drift hits both alike; medians."""
    runs: dict[str, list[dict]] = {}
    for _ in range(REPEAT):
        for split, clusters in SPLITS.items():
            deployment.assign(clusters)
            time.sleep(1)  # the router re-reads the assignment every 0.2 s
            for trips, total in REQUESTS.items():
                for concurrency in CONCURRENCY:
                    runs.setdefault(f"{split}_{trips}trip_c{concurrency}", []).append(
                        deployment.load(deployment.router_port, "/predict", concurrency, total,
                                        trips))
    figures: dict = {
        case: {key: round(statistics.median(run[key] for run in found), 2)
               for key in found[0]}
        for case, found in runs.items()
    }
    for trips in REQUESTS:
        for concurrency in CONCURRENCY:
            single = figures[f"single_{trips}trip_c{concurrency}"]["requests_per_s"]
            ab = figures[f"ab_{trips}trip_c{concurrency}"]["requests_per_s"]
            figures[f"ab_over_single_{trips}trip_c{concurrency}"] = round(ab / single, 3)
    return figures


def direct(deployment: Deployment) -> dict:
    port = deployment.ports["0.1.0"]
    predict = deployment.load(port, "/v0.1.0/predict", 32, 3000, 1)
    healthz = deployment.load(port, "/healthz", 32, 3000, 0)
    return {"predict_c32": predict, "healthz_c32": healthz,
            "predict_over_healthz": round(predict["requests_per_s"]
                                          / healthz["requests_per_s"], 3)}


def logging_client(deployment: Deployment, log: Path) -> subprocess.Popen:
    """One-trip requests through the router at c=8 until `{log}.stop` exists, each answer
    logged (time, cluster, status, version)."""
    return subprocess.Popen(
        [deployment.python, "-c", LOAD, str(deployment.router_port), "/predict", "8", "0", "1",
         str(log)], stdout=subprocess.PIPE, text=True)


def kill_and_restart(deployment: Deployment, scratch: Path) -> dict:
    deployment.assign(SPLITS["ab"])
    time.sleep(1)
    log = scratch / "answers.json"
    client = logging_client(deployment, log)
    time.sleep(2)
    server = deployment.servers["0.2.0"]
    server.kill()
    server.wait()
    killed_at = time.time()
    deployment.servers["0.2.0"] = deployment.serve("0.2.0")  # returns once it is healthy
    ready_at = time.time()
    time.sleep(2)
    Path(f"{log}.stop").touch()
    client.wait(timeout=60)
    answers = json.loads(log.read_text())
    other = [status for _, cluster, status, _ in answers if cluster < 4]
    restarted = [(at, status) for at, cluster, status, _ in answers if cluster >= 4]
    first = min((at for at, status in restarted if at >= ready_at and status == 200),
                default=None)
    return {
        "requests": len(answers),
        "other_version_errors": sum(status != 200 for status in other),
        "other_version_requests": len(other),
        "restarted_errors_while_down": sum(status != 200 for at, status in restarted
                                           if killed_at <= at < ready_at),
        "restart_to_ready_s": round(ready_at - killed_at, 2),
        "first_200_after_ready_s": round(first - ready_at, 3) if first else None,
        "errors_after_first_200": sum(status != 200 for at, status in restarted
                                      if first and at > first),
    }


MOVES = (  # what `inv traffic --assign`, `--all` and `inv rollback` write, in this order
    ("assign 0.2.0=4-7", SPLITS["ab"]),
    ("all 0.2.0", {"0.2.0": list(range(8))}),
    ("rollback to 0.1.0", {"0.1.0": list(range(8))}),
)


def traffic_moves(deployment: Deployment, scratch: Path) -> dict:
    """Under one-trip load at c=8, the assignment moves three times; every answer is
    checked: no request fails, and each moved cluster is answered by its new version
    from the first request after the router's next read of the assignment."""
    deployment.assign(SPLITS["single"])
    time.sleep(1)
    log = scratch / "moves.json"
    client = logging_client(deployment, log)
    time.sleep(2)
    started, ended = [], []
    for _, clusters in MOVES:
        started.append(time.time())
        deployment.assign(clusters)  # returns once the record is written
        ended.append(time.time())
        time.sleep(3)
    Path(f"{log}.stop").touch()
    client.wait(timeout=60)
    answers = json.loads(log.read_text())
    figures: dict = {"requests": len(answers),
                     "failed": sum(status != 200 for _, _, status, _ in answers)}
    # A move's window ends when the next write starts: the router may read that record
    # before the command writing it has returned.
    for (name, clusters), at, until in zip(MOVES, ended, [*started[1:], math.inf], strict=True):
        owner = {cluster: version for version, cs in clusters.items() for cluster in cs}
        window = [(t, c, v) for t, c, status, v in answers if at <= t < until and status == 200]
        right = [t for t, c, v in window if v == owner[c]]
        last_wrong = max((t for t, c, v in window if v != owner[c]), default=at)
        figures[name] = {"requests": len(window),
                         "first_new_answer_s": round(min(right) - at, 3) if right else None,
                         "last_old_answer_s": round(last_wrong - at, 3)}
    return figures


def memory(deployment: Deployment) -> dict[str, int]:
    """Resident memory (MB) of the router and each server."""
    processes = {"router": deployment.router, **deployment.servers}

    def rss(pid: int) -> int:
        status = Path(f"/proc/{pid}/status").read_text()
        kilobytes = next(line.split()[1] for line in status.splitlines()
                         if line.startswith("VmRSS:"))
        return round(int(kilobytes) / 1024)

    return {name: rss(process.pid) for name, process in processes.items()}


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        project = generated_project(scratch)
        deployment = Deployment(str(project / ".venv/bin/python"), scratch / "artifacts")
        try:
            wait_until_healthy(deployment.router_port, deployment.router)
            before = memory(deployment)
            figures = {"sweep": sweep(deployment), "one_server": direct(deployment)}
            figures["memory_mb_before_and_after_the_sweep"] = {
                name: [before[name], after] for name, after in memory(deployment).items()}
            figures["traffic_moves"] = traffic_moves(deployment, scratch)
            figures["kill_and_restart"] = kill_and_restart(deployment, scratch)
        finally:
            deployment.close()
        save("load", figures)


if __name__ == "__main__":
    main()
