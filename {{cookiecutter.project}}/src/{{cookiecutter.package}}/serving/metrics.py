"""Prometheus metrics of a version server and of the router, at `GET /metrics`.

prometheus-client for the registry and the text format, not an instrumentation middleware:
the prediction endpoints are answered before FastAPI's routing (`endpoints.DirectRoute`),
where no FastAPI middleware sees them. The counts themselves are plain numbers (`Tally`),
updated on the server's one event-loop thread and read into metric families when
Prometheus scrapes: prometheus-client's own Counter and Histogram, a lock and a few calls
each, cost 5% of a version server's throughput (`bench/bench_metrics.py`).

Names (the project's package as prefix; seconds and totals as Prometheus expects):

- version server, labelled by `version`:
  `_prediction_requests_total{code}` (status class 2xx/4xx/5xx),
  `_prediction_request_duration_seconds` (arrival to answer; buckets resolve 1-300 ms),
  `_batch_trips` and `_batch_wait_seconds` (each model call of the micro-batcher),
  `_model_info` (1, with `model_sha256`, `git_sha` and the code's `release_inputs` as
  labels), and `_drift_score{column,statistic}` (its recent requests' distance from the
  training data, a distance only: a window of a few hundred trips is noisy, and `inv
  drift` makes the call with a test; `VersionMetrics`);
- router: `_router_requests_total{code}`, `_router_request_duration_seconds`,
  `_router_trips_total{version,cluster}` (trips answered by each version for each user
  cluster: the traffic split, bounded by the cluster count), the upstream calls
  `_upstream_requests_total{version,outcome}` (ok, error, timeout) and
  `_upstream_duration_seconds{version}`, and the shadow mirror's `_shadow_queue_depth`,
  `_shadow_dropped_total`, `_shadow_mirrored_total` and `_shadow_failed_total`.

Each server is one process (uvicorn, one worker; scale by replicas), so each registry is
the process's own and prometheus-client's multiprocess mode is not needed. Every app has
its own registry: several apps in one process (the tests) never mix their counts.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Callable, Iterator
from itertools import accumulate
from typing import Any

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

# Every metric's name starts with the package's import name.
PREFIX = __name__.split(".")[0]
# Request latency: 1 ms to 300 ms finely (an answer is a few ms; the router's upstream
# timeout is 2 s), then coarsely.
LATENCY_BUCKETS = (
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
WAIT_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05)
CODES = ("2xx", "4xx", "5xx")
DRIFT_WINDOW = 5000  # requests whose trips the drift gauge compares with the training data


class Tally:
    """A histogram kept in plain numbers: its buckets' counts and its sum.

    A prediction is answered in about 0.1 ms on the event loop's thread, and
    prometheus-client's own Histogram and Counter (a lock and a few calls each) cost 5% of a
    version server's throughput. The server's metrics are only ever updated on that one
    thread, so a list of ints serves, and the registry reads it when Prometheus scrapes
    (`/metrics` is answered on the same thread: a scrape sees one consistent state).
    """

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # "le": value <= bound
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        cumulative = [float(c) for c in accumulate(self.counts)]
        return [(str(b), c) for b, c in zip(self.bounds, cumulative, strict=False)] + [
            ("+Inf", cumulative[-1])
        ]


class TallyCollector:
    """Reads tallies into metric families at scrape time (`collect()` is all a registry
    needs of a collector)."""

    def __init__(self, collect: Callable[[], Iterator[Any]]) -> None:
        self.collect = collect


class RequestMetrics:
    """Requests by status class and their latency, for one endpoint."""

    def __init__(self, registry: CollectorRegistry, name: str, what: str, **labels: str) -> None:
        self.name, self.what, self.labels = f"{PREFIX}_{name}", what, labels
        self.codes = [0] * 6  # by the status's hundreds: no string built per request
        self.latency = Tally(LATENCY_BUCKETS)
        registry.register(TallyCollector(self.collect))  # type: ignore[arg-type]

    def observe(self, status: int, seconds: float) -> None:
        self.codes[status // 100 if 200 <= status < 600 else 5] += 1
        self.latency.observe(seconds)

    def collect(self) -> Iterator[Any]:
        keys, values = list(self.labels), list(self.labels.values())
        requests = CounterMetricFamily(
            f"{self.name}_requests", f"{self.what} answered, by status class.",
            labels=[*keys, "code"],
        )  # fmt: skip
        for code in CODES:
            requests.add_metric([*values, code], self.codes[int(code[0])])
        yield requests
        duration = HistogramMetricFamily(
            f"{self.name}_request_duration_seconds",
            f"{self.what}: seconds from arrival to answer.",
            labels=keys,
        )
        duration.add_metric(values, self.latency.buckets(), self.latency.sum)
        yield duration


class VersionMetrics:
    """A version server's metrics, and the drift of its recent requests: the fields of the
    last DRIFT_WINDOW requests' trips and their predictions, compared with the release's
    reference (`ml.drift`) when Prometheus scrapes (`_drift_score{column}`)."""

    def __init__(
        self,
        version: str,
        model_sha256: str,
        git_sha: str,
        release_inputs: str,
        reference: dict[str, Any] | None = None,
    ):
        self.registry = CollectorRegistry(auto_describe=True)
        self.version, self.reference = version, reference
        # (distance_km, pickup_hour, weekday, area_cluster, predicted) arrays per request.
        self.recent: deque[tuple[Any, ...]] = deque(maxlen=DRIFT_WINDOW)
        if reference is not None:
            self.registry.register(TallyCollector(self.collect_drift))  # type: ignore[arg-type]
        self.requests = RequestMetrics(self.registry, "prediction", "Predictions", version=version)
        self.batch_trips, self.batch_wait = Tally(BATCH_BUCKETS), Tally(WAIT_BUCKETS)
        self.registry.register(TallyCollector(self.collect_batches))  # type: ignore[arg-type]
        Gauge(
            f"{PREFIX}_model_info",
            "The version served: its model's sha256, commit and release inputs (always 1).",
            ["version", "model_sha256", "git_sha", "release_inputs"],
            registry=self.registry,
        ).labels(version, model_sha256, git_sha, release_inputs).set(1)

    def observe_batch(self, trips: int, waited_s: float) -> None:
        self.batch_trips.observe(trips)
        self.batch_wait.observe(waited_s)

    def collect_drift(self) -> Iterator[Any]:
        import numpy as np

        from {{ cookiecutter.package }}.ml import drift

        scores = GaugeMetricFamily(
            f"{PREFIX}_drift_score",
            "Distance of the recent requests' trips and predictions from the training data "
            "(normalised Wasserstein or Jensen-Shannon): a distance only, not a drift call; "
            "`inv drift` calls drift (beyond noise and beyond the threshold).",
            labels=["version", "column", "statistic"],
        )
        window = list(self.recent)
        if window and self.reference is not None:
            columns = zip(*window, strict=True)
            distance, hour, weekday, area, predicted = (np.concatenate(c) for c in columns)
            fields = {
                "distance_km": distance.astype(float),
                "pickup_hour": hour,
                "area_cluster": area,
                "is_weekend": (weekday >= 5).astype(int),
            }
            current = drift.summarize_fields(fields, predicted)
            for column in drift.compare(self.reference, current):
                scores.add_metric([self.version, column.column, column.statistic], column.score)
        yield scores
        yield GaugeMetricFamily(
            f"{PREFIX}_drift_window_trips",
            "Trips in the window the drift score is computed on.",
            value=sum(len(request[0]) for request in window),
        )

    def collect_batches(self) -> Iterator[Any]:
        for name, what, tally in (
            ("batch_trips", "Trips per model call of the micro-batcher.", self.batch_trips),
            (
                "batch_wait_seconds",
                "Seconds a model call's batch stayed open for more requests.",
                self.batch_wait,
            ),
        ):
            family = HistogramMetricFamily(f"{PREFIX}_{name}", what, labels=["version"])
            family.add_metric([self.version], tally.buckets(), tally.sum)
            yield family


class RouterMetrics:
    """The router's metrics, tallied on its event loop's thread as a version server's are;
    the shadow mirror's are read from its counters at scrape."""

    def __init__(self, shadow: Callable[[], Any | None]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = RequestMetrics(self.registry, "router", "Router requests")
        self.trips: Counter[tuple[str, int]] = Counter()  # (version, cluster) -> trips
        self.upstream: Counter[tuple[str, str]] = Counter()  # (version, outcome) -> calls
        self.upstream_latency: dict[str, Tally] = {}
        self.registry.register(TallyCollector(self.collect))  # type: ignore[arg-type]
        self.registry.register(ShadowCollector(shadow))

    def observe_trips(self, version: str, clusters: list[int]) -> None:
        for cluster in clusters:
            self.trips[(version, cluster)] += 1

    def observe_upstream(self, version: str, outcome: str, seconds: float) -> None:
        self.upstream[(version, outcome)] += 1
        tally = self.upstream_latency.get(version)
        if tally is None:
            tally = self.upstream_latency[version] = Tally(LATENCY_BUCKETS)
        tally.observe(seconds)

    def collect(self) -> Iterator[Any]:
        trips = CounterMetricFamily(
            f"{PREFIX}_router_trips",
            "Trips answered, by the version that predicted them and the trip's user cluster.",
            labels=["version", "cluster"],
        )
        for (version, cluster), count in sorted(self.trips.items()):
            trips.add_metric([version, str(cluster)], count)
        yield trips
        calls = CounterMetricFamily(
            f"{PREFIX}_upstream_requests",
            "Calls to versions' servers, by outcome (ok, error, timeout).",
            labels=["version", "outcome"],
        )
        for (version, outcome), count in sorted(self.upstream.items()):
            calls.add_metric([version, outcome], count)
        yield calls
        latency = HistogramMetricFamily(
            f"{PREFIX}_upstream_duration_seconds",
            "Seconds a call to a version's server took.",
            labels=["version"],
        )
        for version, tally in sorted(self.upstream_latency.items()):
            latency.add_metric([version], tally.buckets(), tally.sum)
        yield latency


class ShadowCollector:
    """The shadow mirror's queue and counters, read when Prometheus scrapes."""

    def __init__(self, shadow: Callable[[], Any | None]) -> None:
        self.shadow = shadow

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        mirror = self.shadow()
        stats = mirror.stats if mirror is not None else None
        queue = mirror.queue if mirror is not None else None
        yield GaugeMetricFamily(
            f"{PREFIX}_shadow_queue_depth",
            "Requests waiting to be mirrored to the other live versions.",
            value=queue.qsize() if queue is not None else 0,
        )
        for name, what in (
            ("dropped", "Requests not mirrored: the queue was full."),
            ("mirrored", "Requests mirrored to the other live versions."),
            ("failed", "Shadow calls that failed (served answers were not affected)."),
        ):
            yield CounterMetricFamily(
                f"{PREFIX}_shadow_{name}", what, value=getattr(stats, name, 0) if stats else 0
            )


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The registry in Prometheus's text format, and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
