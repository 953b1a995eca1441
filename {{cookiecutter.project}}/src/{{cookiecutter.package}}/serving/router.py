"""The online router: one stable endpoint, `POST /predict`, for every live version.

Each trip goes to the version that serves its `user_cluster` in the environment's traffic
assignment (see `artifacts.traffic`), at that version's own server (`/v{version}/predict`);
the answer says which version predicted each trip. The assignment is re-read at most every
`refresh_s` seconds, so `inv traffic` moves live traffic without restarting any server.
A trip must say its `user_cluster` (map users to clusters with
`ml.data.user_cluster`); a missing or non-existent cluster is the caller's error,
422 naming the field. A request is answered whole or not at all: when a version that owns
some of its trips is unreachable, the request gets 503 naming that version and its
clusters (never another version's answer, and no internal host name); requests whose
trips belong to other versions are not affected.

Its Prometheus metrics (`GET /metrics`, `serving.metrics`): requests and latency, trips by
version and user cluster, upstream calls by outcome, the shadow mirror's queue and drops.

With shadow traffic on (`traffic.shadow`), each answered request is also sent to the other
live versions afterwards, and the served and shadow answers are recorded in the
predictions sink (`serving.shadow`): never delaying or failing the served answer.

In Kubernetes the router is its own Deployment (`inv render-deployment --router`) and finds a
version's server by its Service name; locally `inv serve-router --upstream VERSION=URL`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, HTTPException, Response
from fastapi.responses import JSONResponse
from pydantic import Field, ValidationError

from {{ cookiecutter.package }}.artifacts import models, prediction_runs, traffic
from {{ cookiecutter.package }}.artifacts.names import ReleaseNames, names_of_model
from {{ cookiecutter.package }}.artifacts.predictions import PredictionSink, open_predictions
from {{ cookiecutter.package }}.artifacts.store import ArtifactStore, open_store
from {{ cookiecutter.package }}.artifacts.traffic import Assignment, format_clusters
from {{ cookiecutter.package }}.serving.app import PredictRequest, Trip, metrics_on
from {{ cookiecutter.package }}.serving.endpoints import add_direct_post, add_index, add_metrics
from {{ cookiecutter.package }}.serving.forwarding import Coalescer, Forwarder, Unavailable, Upstreams
from {{ cookiecutter.package }}.serving.limits import (
    MAX_TRIPS,
    body_errors,
    harden,
    validation_errors,
)
from {{ cookiecutter.package }}.serving.metrics import RouterMetrics
from {{ cookiecutter.package }}.serving.shadow import Shadow
from {{ cookiecutter.package }}.version import PROJECT

log = logging.getLogger(__name__)


class RoutedTrip(Trip):
    user_cluster: int = Field(ge=0)  # required here: it decides the version


class RoutedRequest(PredictRequest):
    trips: list[RoutedTrip] = Field(min_length=1, max_length=MAX_TRIPS)  # type: ignore[assignment]


def upstreams(template: str, explicit: dict[str, str], artifact_root: str) -> Callable[[str], str]:
    """version -> base URL of its server: an explicit URL, else `template` formatted with
    `{version}` and `{deployment}` (the version's Kubernetes Service name)."""

    def resolve(version: str) -> str:
        if version in explicit:
            return explicit[version].rstrip("/")
        names = ReleaseNames(PROJECT, version, version, artifact_root)
        return template.format(version=version, deployment=names.deployment_name).rstrip("/")

    return resolve


def unserved_clusters(assignment: Assignment | None, explicit: dict[str, str]) -> str | None:
    """Where servers are named by hand (`--upstream`, as locally): one line naming a live
    version that serves user clusters but has no server named, else None. Refused at start:
    its trips would get 503s at request time."""
    for version in sorted(assignment.clusters if assignment else {}):
        clusters = assignment.clusters_of(version) if assignment else []
        if clusters and version not in explicit:
            return (
                f"version {version} serves user clusters {format_clusters(clusters)} but no "
                f"server is named for it: start one (`inv serve --version {version}`) and add "
                f"--upstream {version}=URL"
            )
    return None


class AssignmentCache:
    """The current assignment, read from the store at most every `refresh_s` seconds."""

    def __init__(self, store: ArtifactStore, refresh_s: float) -> None:
        self.store, self.refresh_s = store, refresh_s
        self.value: Assignment | None = None
        self.read_at = float("-inf")
        self.lock = asyncio.Lock()

    async def get(self) -> Assignment | None:
        if time.monotonic() - self.read_at >= self.refresh_s:
            async with self.lock:
                if time.monotonic() - self.read_at >= self.refresh_s:
                    self.value = await asyncio.to_thread(traffic.current, self.store)
                    self.read_at = time.monotonic()
        return self.value


def unknown_clusters(parsed: RoutedRequest, n_clusters: int) -> JSONResponse | None:
    """A 422 naming each trip whose user cluster the assignment does not have."""
    errors = [
        {
            "loc": ["body", "trips", index, "user_cluster"],
            "msg": f"user cluster {trip.user_cluster} does not exist: clusters are "
            f"0-{n_clusters - 1}",
            "type": "value_error",
        }
        for index, trip in enumerate(parsed.trips)
        if trip.user_cluster >= n_clusters
    ]
    return validation_errors(errors) if errors else None


def route(parsed: RoutedRequest, assignment: Assignment) -> dict[str, list[int]]:
    """The indexes of the request's trips, by the version that serves each trip's cluster."""
    groups: dict[str, list[int]] = {}
    for index, trip in enumerate(parsed.trips):
        owner = assignment.owner(trip.user_cluster)
        if owner is None:
            raise HTTPException(503, f"no live version serves user cluster {trip.user_cluster}")
        groups.setdefault(owner, []).append(index)
    return groups


def merge(
    assignment: Assignment, groups: dict[str, list[int]], answers: list[Any], n_trips: int
) -> list[dict[str, Any]]:
    """Each version's answers back in the request's order; a 503 when a version failed."""
    failures = [a for a in answers if isinstance(a, Unavailable)]
    if failures:
        raise unavailable(assignment, failures)
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer
    predictions: list[dict[str, Any]] = [{}] * n_trips
    for indexes, answer in zip(groups.values(), answers, strict=True):
        for index, prediction in zip(indexes, answer, strict=True):
            predictions[index] = prediction
    return predictions


def unavailable(assignment: Assignment, failures: list[Unavailable]) -> HTTPException:
    for failure in failures:  # the operator's detail goes to the log, not to the caller
        log.warning("router: version %s unavailable: %s", failure.version, failure.detail)
    which = ", ".join(
        f"version {f.version} (user clusters {format_clusters(assignment.clusters_of(f.version))})"
        for f in failures
    )
    return HTTPException(
        503, f"{which} unavailable: no trip of this request was answered, retry later"
    )


def reference_of(store: ArtifactStore, version: str) -> dict[str, Any] | None:
    """A version's drift reference, from its model's metadata (None when it has none)."""
    try:
        return models.read_metadata(store, names_of_model(version, store.root)).get("reference")
    except Exception:  # the router keeps serving; drift reads the summary without bins
        log.warning("no drift reference for %s", version)
        return None


def create_router(
    artifact_root: str,
    upstream: Callable[[str], str],
    refresh_s: float = 1.0,
    timeout_s: float = 2.0,
    shadow_sink: PredictionSink | None = None,
    shadow_versions: Iterable[str] = (),
    shadow_flush_s: float = 5.0,
) -> FastAPI:
    """The router; with `shadow_sink`, answered requests are mirrored to the other live
    versions (those of the assignment, and `shadow_versions`, e.g. versions released dark)
    and both answers recorded there (`serving.shadow`)."""
    store = open_store(artifact_root)
    cache = AssignmentCache(store, refresh_s)
    sessions = Upstreams(timeout_s)
    metrics = RouterMetrics(lambda: mirror) if metrics_on() else None
    forward = Forwarder(upstream, sessions, metrics.observe_upstream if metrics else None)
    mirror = (
        Shadow(
            shadow_sink,
            lambda version, trips: forward(version, orjson.dumps({"trips": trips})),
            shadow_versions,
            flush_s=shadow_flush_s,
            # Beside each version's online predictions, what it was asked (`inv drift`).
            record=lambda version, run_id, record: prediction_runs.write(
                store, version, run_id, record
            ),
            reference=functools.cache(lambda version: reference_of(store, version)),
        )
        if shadow_sink is not None
        else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if mirror is not None:
            await mirror.start()
        yield
        if mirror is not None:
            await mirror.stop()  # writes what was collected
        await sessions.close()

    app = FastAPI(title=f"{PROJECT} router", lifespan=lifespan)
    app.state.shadow = mirror  # its counters, for operators and tests
    harden(app)
    add_index(app)
    if metrics is not None:
        add_metrics(app, metrics.registry)
    coalesce = Coalescer(forward)
    app.state.coalesce = coalesce  # its counters, for operators and tests

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the router answers (each version's server has its own)."""
        return {"status": "ok"}

    @app.get("/traffic")
    async def current_traffic() -> dict[str, Any]:
        """Which version serves which user clusters now."""
        assignment = await cache.get()
        if assignment is None:
            raise HTTPException(503, "no traffic assignment yet: release a version first")
        return {"clusters": assignment.clusters, "since": assignment.created_at}

    # Routes on the raw body: a request whose trips all go to one version is forwarded as
    # it came, and the answer is built as plain JSON (no second validation pass).
    async def predict(body: bytes) -> Response:
        try:
            parsed = RoutedRequest.model_validate_json(body)
        except ValidationError as error:
            return body_errors(error)
        assignment = await cache.get()
        if assignment is None:
            raise HTTPException(503, "no traffic assignment yet: release a version first")
        refused = unknown_clusters(parsed, assignment.n_clusters)
        if refused is not None:
            return refused
        groups = route(parsed, assignment)
        # The trips as sent (validated above): orjson is cheaper than model_dump.
        raw = orjson.loads(body)["trips"]
        answers = await asyncio.gather(
            *(coalesce(version, [raw[i] for i in indexes]) for version, indexes in groups.items()),
            return_exceptions=True,
        )
        predictions = merge(assignment, groups, answers, len(parsed.trips))
        if metrics is not None:
            for version, indexes in groups.items():
                metrics.observe_trips(version, [parsed.trips[i].user_cluster for i in indexes])
        if mirror is not None:
            mirror.offer(body, predictions, assignment)
        return Response(
            orjson.dumps({"predictions": predictions, "versions": sorted(groups)}),
            media_type="application/json",
        )

    # Answered before FastAPI's routing, as a version's server answers its own: the router
    # handles every request of every version, so its cost per request is the service's.
    add_direct_post(
        app,
        "/predict",
        predict,
        "ETAs for up to 1000 trips, each from the version that serves its user cluster.",
        observe=metrics.requests.observe if metrics else None,
    )
    return app


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 8000) -> None:
    import uvicorn

    uvicorn.run(app, host=host, port=port)


if __name__ == "__main__":  # the router Deployment's entry point
    root = os.environ["ARTIFACT_ROOT"]
    # Shadow traffic (on unless SHADOW=0) is recorded in the predictions sink: PREDICTIONS is
    # the JSON of conf/predictions (Parquet under ARTIFACT_ROOT when unset); SHADOW_VERSIONS
    # names live versions that serve no cluster yet (comma-separated).
    shadow_on = os.environ.get("SHADOW", "1") != "0"
    spec = json.loads(os.environ.get("PREDICTIONS") or "null")
    serve(
        create_router(
            root,
            upstreams(os.environ.get("UPSTREAM_URL", "http://{deployment}"), {}, root),
            refresh_s=float(os.environ.get("TRAFFIC_REFRESH_SECONDS", "1")),
            timeout_s=float(os.environ.get("UPSTREAM_TIMEOUT_SECONDS", "2")),
            shadow_sink=open_predictions(spec, root) if shadow_on else None,
            shadow_versions=[v for v in os.environ.get("SHADOW_VERSIONS", "").split(",") if v],
        ),
        host=os.environ.get("HOST", "0.0.0.0"),
        port=int(os.environ.get("PORT", "8080")),
    )
