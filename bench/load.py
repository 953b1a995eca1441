"""Shared by the load benchmarks: two released versions, their servers and a router as
separate processes on loopback, and an aiohttp client at fixed concurrency."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serving import free_port, wait_until_healthy  # noqa: E402

VERSIONS = ("0.1.0", "0.2.0")

# Both versions trained and released (features, model, metadata), 0.1.0 serving all.
RELEASE_TWO = """
import sys, tempfile
from taxi_eta.artifacts import traffic
from taxi_eta.artifacts.names import ReleaseNames
from taxi_eta.artifacts.store import open_store
from taxi_eta.pipelines import steps
root = sys.argv[1]
for version in ("0.1.0", "0.2.0"):
    names = ReleaseNames("taxi-eta", version, version, root)
    steps.ensure_features(names, 4000, 42, [7, 8, 9, 16, 17, 18])
    path = tempfile.mktemp()
    model = {"_target_": "sklearn.ensemble.HistGradientBoostingRegressor", "max_depth": 6}
    metrics = steps.train_and_evaluate(names, model, 0.2, 42, path)
    steps.publish_model(names, path, metrics, "bench", {"features": {"rush_hours": [7, 8, 9]}})
traffic.record(open_store(root), {"0.1.0": range(8)}, 8, ["0.1.0", "0.2.0"], "bench")
"""
ASSIGN = """
import json, sys
from taxi_eta.artifacts import traffic
from taxi_eta.artifacts.store import open_store
clusters = {v: list(cs) for v, cs in json.loads(sys.argv[2]).items()}
traffic.record(open_store(sys.argv[1]), clusters, 8, ["0.1.0", "0.2.0"], "bench")
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
    root, router.upstreams("http://{deployment}", upstreams, root), refresh_s=0.2,
    shadow_sink=ParquetPredictions(root) if shadow else None)
router.serve(app, port=port)
"""
# `python -c LOAD PORT PATH CONCURRENCY TOTAL TRIPS`: TRIPS 0 is GET PATH (/healthz).
# Prints one JSON line: median and p99 latency, requests per second, failed requests, and
# per request (time, first trip's cluster, status, the version that answered) when asked
# to log them.
LOAD = """
import asyncio, json, sys, time
import aiohttp

async def main(port, path, concurrency, total, n_trips, log):
    latencies, answers, sent, failed = [], [], 0, 0
    url = f"http://127.0.0.1:{port}{path}"
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker():
            nonlocal sent, failed
            while total == 0 or sent < total:
                sent += 1
                number = sent
                cluster = number % 8
                trips = [{"trip_id": f"t{number}-{i}", "distance_km": 1.0 + (number + i) % 30,
                          "pickup_hour": (number + i) % 24, "weekday": (number + i) % 7,
                          "area_cluster": i % 8, "user_cluster": (cluster + i) % 8}
                         for i in range(n_trips)]
                started = time.perf_counter()
                try:
                    if n_trips:
                        request = session.post(url, json={"trips": trips})
                    else:
                        request = session.get(url)
                    async with request as response:
                        body = await response.read()
                        status = response.status
                except aiohttp.ClientError:
                    status, body = 0, b""
                version = ""
                if log and status == 200 and n_trips:
                    version = (json.loads(body).get("versions") or [""])[0]
                latencies.append(time.perf_counter() - started)
                failed += status != 200
                if log:
                    answers.append((time.time(), cluster, status, version))
                if total == 0 and log and stop.exists():
                    return
        import pathlib
        stop = pathlib.Path(log + ".stop") if log else None
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    latencies.sort()
    if log:
        pathlib.Path(log).write_text(json.dumps(answers))
    print(json.dumps({"median_ms": round(latencies[len(latencies) // 2] * 1000, 2),
                      "p99_ms": round(latencies[int(0.99 * len(latencies)) - 1] * 1000, 2),
                      "requests_per_s": round(len(latencies) / wall, 1),
                      "failed": failed}))

asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]),
                 int(sys.argv[5]), sys.argv[6] if len(sys.argv) > 6 else ""))
"""


class Deployment:
    """Two versions' servers and a router, as separate processes."""

    def __init__(self, python: str, root: Path, shadow: bool = False) -> None:
        self.python, self.root = python, str(root)
        subprocess.run([python, "-c", RELEASE_TWO, self.root], check=True, capture_output=True)
        self.ports = {version: free_port() for version in VERSIONS}
        self.servers = {version: self.serve(version) for version in VERSIONS}
        self.router, self.router_port = self.start_router(shadow)

    def start_router(self, shadow: bool) -> tuple[subprocess.Popen, int]:
        upstreams = [f"{v}=http://127.0.0.1:{p}" for v, p in self.ports.items()]
        port = free_port()
        router = subprocess.Popen(
            [self.python, "-c", ROUTER, self.root, "on" if shadow else "off", str(port),
             *upstreams], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_healthy(port, router)
        return router, port

    def serve(self, version: str) -> subprocess.Popen:
        server = subprocess.Popen(
            [self.python, "-c", SERVE, self.root, version, str(self.ports[version])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_healthy(self.ports[version], server)
        return server

    def assign(self, clusters: dict[str, list[int]]) -> None:
        subprocess.run([self.python, "-c", ASSIGN, self.root, json.dumps(clusters)],
                       check=True, capture_output=True)

    def load(self, port: int, path: str, concurrency: int, total: int, trips: int,
             log: str = "") -> dict:
        result = subprocess.run(
            [self.python, "-c", LOAD, str(port), path, str(concurrency), str(total),
             str(trips), *([log] if log else [])],
            check=True, capture_output=True, text=True)
        return json.loads(result.stdout)

    def close(self) -> None:
        for process in (self.router, *self.servers.values()):
            process.kill()
            process.wait(timeout=30)
