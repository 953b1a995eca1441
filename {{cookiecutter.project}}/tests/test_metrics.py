"""Prometheus metrics of the version servers and the router, scraped by a real Prometheus
with the project's own config (deploy/prometheus/), and every panel of the dashboard
(deploy/grafana/) queried under load."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import free_port
from served import HTTP, Servers, cluster_trips, start_router

from {{ cookiecutter.package }}.artifacts import models, traffic
from {{ cookiecutter.package }}.artifacts.names import ReleaseNames
from {{ cookiecutter.package }}.artifacts.store import open_store
from {{ cookiecutter.package }}.release.local_servers import ROUTER, Started, prometheus_targets
from {{ cookiecutter.package }}.serving.metrics import LATENCY_BUCKETS, PREFIX
from {{ cookiecutter.package }}.version import PROJECT_ROOT

pytestmark = pytest.mark.slow


def need(tool: str) -> str:
    """Debian's `prometheus` package (CI installs it); missing on a laptop: skipped, in CI a
    failure."""
    found = shutil.which(tool)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is not installed (apt-get install prometheus)")
        pytest.skip(f"{tool} is not installed (apt-get install prometheus)")
    return found


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, promql: str) -> list[dict[str, Any]]:
        answer = HTTP.get(f"{self.url}/api/v1/query", params={"query": promql}).json()
        assert answer["status"] == "success", (promql, answer)
        return list(answer["data"]["result"])

    def value(self, promql: str) -> float:
        (sample,) = self.query(promql)
        return float(sample["value"][1])

    def by(self, promql: str, *labels: str) -> dict[tuple[str, ...], float]:
        return {
            tuple(s["metric"][label] for label in labels): float(s["value"][1])
            for s in self.query(promql)
        }


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[Prometheus, Path]]:
    """A real Prometheus with the project's deploy/prometheus/prometheus.yml, scraping every
    second the targets written to the file it names (as `inv up` writes them)."""
    binary = need("prometheus")
    config = yaml.safe_load((PROJECT_ROOT / "deploy/prometheus/prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    targets = tmp_path / "prometheus-targets.json"
    targets.write_text("[]")
    config["scrape_configs"][0]["file_sd_configs"][0]["files"] = [str(targets)]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    check = subprocess.run([need("promtool"), "check", "config", str(path)], capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr
    port = free_port()
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [binary, f"--config.file={path}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if HTTP.get(f"{url}/-/ready").status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert process.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
        assert time.monotonic() < deadline, "Prometheus did not get ready in 60 s"
        time.sleep(0.1)
    yield Prometheus(url), targets
    process.terminate()
    process.wait(timeout=20)
    log.close()


def dashboard_queries() -> list[tuple[str, str]]:
    """Every panel's queries, with Grafana's variables as a dashboard would fill them."""
    dashboard = json.loads((PROJECT_ROOT / "deploy/grafana/serving.json").read_text())
    return [
        (panel["title"], target["expr"].replace("$__rate_interval", "1m").replace("$version", ".*"))
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


def test_prometheus_counts_what_the_clients_sent_and_every_panel_has_data(
    released_root: Path,
    servers: dict[str, str],
    running: Servers,
    prometheus: tuple[Prometheus, Path],
) -> None:
    server, targets = prometheus
    store = open_store(str(released_root))
    traffic.record(store, {"1.0.0": range(4), "2.0.0": range(4, 8)}, 8, [*servers], "A/B")
    router = start_router(released_root, servers, running)
    port = {name: int(url.rsplit(":", 1)[1]) for name, url in {**servers, ROUTER: router}.items()}
    started = [Started(name, port[name], 0, 0, "") for name in port]
    targets.write_text(json.dumps(prometheus_targets(started)))

    # Known traffic: one trip a request, in turn (no two requests share an upstream call).
    served: Counter[str] = Counter()
    trips: Counter[tuple[str, str]] = Counter()
    seconds = []
    for i in range(80):
        cluster = i % 8
        version = "1.0.0" if cluster < 4 else "2.0.0"
        began = time.perf_counter()
        answer = HTTP.post(f"{router}/predict", json={"trips": cluster_trips([cluster])})
        seconds.append(time.perf_counter() - began)
        assert answer.status_code == 200 and answer.json()["versions"] == [version]
        served[version] += 1
        trips[(version, str(cluster))] += 1
    for _ in range(10):  # refused at the router: never reach a version
        assert HTTP.post(f"{router}/predict", json={"trips": []}).status_code == 422
    for _ in range(6):  # refused by version 1.0.0 itself
        bad = HTTP.post(f"{servers['1.0.0']}/v1.0.0/predict", json={"trips": [{"x": 1}]})
        assert bad.status_code == 422

    deadline = time.monotonic() + 60
    total = f"sum({PREFIX}_router_requests_total)"
    while not server.query(total) or server.value(total) < 90:
        assert time.monotonic() < deadline, "Prometheus never scraped the router's 90 requests"
        time.sleep(0.5)
    time.sleep(2)  # one more scrape of every target

    predictions = f"{PREFIX}_prediction_requests_total"
    answered = "sum by (version) (" + predictions + '{code="2xx"})'
    assert server.by(answered, "version") == {(v,): float(n) for v, n in served.items()}
    refused = "sum by (version) (" + predictions + '{code="4xx"})'
    assert server.by(refused, "version") == {("1.0.0",): 6.0, ("2.0.0",): 0.0}
    ratio = f"sum({PREFIX}_router_requests_total" + '{code!="2xx"}) / ' + total
    assert server.value(ratio) == pytest.approx(10 / 90)
    split = f"sum by (version, cluster) ({PREFIX}_router_trips_total)"
    assert server.by(split, "version", "cluster") == {k: float(n) for k, n in trips.items()}
    calls = f"sum by (version, outcome) ({PREFIX}_upstream_requests_total)"
    assert server.by(calls, "version", "outcome") == {
        (v, "ok"): float(n) for v, n in served.items()
    }
    # p99 from the router's histogram: at most the top of the bucket that holds the slowest
    # request the clients saw (each request's time in the router is part of its client's).
    p99 = server.value(
        f"histogram_quantile(0.99, sum by (le) ({PREFIX}_router_request_duration_seconds_bucket))"
    )
    bound = next(b for b in LATENCY_BUCKETS if b >= max(seconds))
    assert 0 < p99 <= bound, (p99, sorted(seconds)[-3:])
    info = server.by(f"{PREFIX}_model_info", "version", "model_sha256")
    for version in served:
        metadata = models.read_metadata(
            store, ReleaseNames("taxi", version, version, str(store.root))
        )
        assert info[(version, metadata["model_sha256"])] == 1.0

    # Each version's drift gauge: every input column and the predictions, per version.
    drifts = server.by(f"{PREFIX}_drift_score", "version", "column")
    columns = {"distance_km", "pickup_hour", "area_cluster", "is_weekend", "eta_minutes"}
    assert set(drifts) == {(v, c) for v in served for c in columns}

    # Every metric name and help text passes Prometheus's own linter.
    for url in [*servers.values(), router]:
        exposition = HTTP.get(f"{url}/metrics").content
        lint = subprocess.run(
            [need("promtool"), "check", "metrics"], input=exposition, capture_output=True
        )
        assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout + lint.stderr

    # Every panel of the dashboard answers, with data, under this load.
    for title, promql in dashboard_queries():
        assert server.query(promql), f"panel {title!r}: no data for {promql}"


def test_metrics_can_be_turned_off(
    released: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SERVING_METRICS=0 (the bench's baseline): no /metrics, and nothing observed."""
    from fastapi.testclient import TestClient

    from {{ cookiecutter.package }}.serving.app import create_app

    monkeypatch.setenv("SERVING_METRICS", "0")
    client = TestClient(create_app(ReleaseNames("taxi", "1.0.0", "1.0.0", str(released))))
    assert client.get("/metrics").status_code == 404
    monkeypatch.setenv("SERVING_METRICS", "1")
    client = TestClient(create_app(ReleaseNames("taxi", "1.0.0", "1.0.0", str(released))))
    assert client.post("/v1.0.0/predict", json={"trips": cluster_trips([0])}).status_code == 200
    assert f"{PREFIX}_prediction_requests_total" + '{code="2xx",version="1.0.0"} 1.0' in (
        client.get("/metrics").text
    )
