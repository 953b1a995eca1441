"""The online inference app of one released version.

It loads that version's model from the artifact store once, at start-up, and serves
`POST /v{version}/predict`, `GET /healthz`, `GET /version` and `GET /metrics` (Prometheus:
`serving.metrics`). Each version runs as its own
deployment, so a new release never changes what an older endpoint answers.

In the image, and locally in the version's own environment (`inv serve --version X`):
`python -m {{ cookiecutter.package }}.serving.app` with ARTIFACT_ROOT (and optionally
MODEL_VERSION, HOST, PORT) in the environment.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from {{ cookiecutter.package }}.artifacts import models
from {{ cookiecutter.package }}.artifacts.code import read_code
from {{ cookiecutter.package }}.artifacts.names import ReleaseNames, names_of_model
from {{ cookiecutter.package }}.artifacts.store import ArtifactStore, open_store
from {{ cookiecutter.package }}.errors import UserError
from {{ cookiecutter.package }}.ml.data import N_AREAS
from {{ cookiecutter.package }}.ml.features import feature_matrix
from {{ cookiecutter.package }}.ml.predict import predict_etas
from {{ cookiecutter.package }}.serving.batching import MicroBatcher
from {{ cookiecutter.package }}.serving.endpoints import add_direct_post, add_index, add_metrics
from {{ cookiecutter.package }}.serving.limits import MAX_TRIPS, body_errors, harden
from {{ cookiecutter.package }}.serving.metrics import VersionMetrics
from {{ cookiecutter.package }}.version import read_version


class Trip(BaseModel):
    # strict: "4.2", 8.0 or true are refused where a number or an integer is due, and NaN
    # and Infinity (which Python's JSON reader accepts) are no distance.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    trip_id: str = Field(default="", max_length=128)
    distance_km: float = Field(gt=0, le=1000)
    pickup_hour: int = Field(ge=0, le=23)
    weekday: int = Field(ge=0, le=6, description="0 = Monday")
    area_cluster: int = Field(ge=0, lt=N_AREAS)
    # Which version serves the trip (the router's business; a version's own server ignores
    # it). Map a user to a cluster with ml.data.user_cluster.
    user_cluster: int = Field(default=0, ge=0)


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trips: list[Trip] = Field(min_length=1, max_length=MAX_TRIPS)


class Prediction(BaseModel):
    trip_id: str
    eta_minutes: float


class PredictResponse(BaseModel):
    version: str
    predictions: list[Prediction]


def _request_body() -> dict[str, Any]:
    """PredictRequest's schema for the docs, with Trip inline (the endpoint validates the
    raw body itself, so FastAPI does not register it)."""
    schema = PredictRequest.model_json_schema()
    trip = schema.pop("$defs")["Trip"]
    schema["properties"]["trips"]["items"] = trip
    return {"required": True, "content": {"application/json": {"schema": schema}}}


REQUEST_BODY = _request_body()


def limit_native_threads() -> None:
    """One OpenMP/BLAS thread per server process (SERVING_THREADS to change it), applied to
    every native library loaded so far.

    A request is a few trips: handing them to a pool of OpenMP threads costs more than it
    saves, and the idle threads spin on the cores that the router and the other requests
    need (an A/B split of two servers on 2 cores served 8x fewer requests with the pools
    left at their default size). The package's `serving/__init__.py` sizes the pools before
    they load; this call covers libraries that ignore those variables.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=int(os.environ.get("SERVING_THREADS", "1")))


def metrics_on() -> bool:
    """Prometheus metrics at `/metrics`, unless SERVING_METRICS=0 (the bench's baseline)."""
    return os.environ.get("SERVING_METRICS", "1") != "0"


def serving_model(store: ArtifactStore, names: ReleaseNames) -> Any:
    """What the server predicts with: the model's numpy form, released with it
    (`ml.numpy_models`: no scikit-learn to import, the same numbers), else the pickled
    model (a model of another kind, an older release, or SERVING_MODEL=pickle), whose calls
    of a few trips go to its flat trees where it has them (`ml.flat_trees`)."""
    if os.environ.get("SERVING_MODEL", "numpy") != "pickle":
        # The release is one unit: an altered pickle is refused here too, though the
        # server predicts with the numpy form (hashing it costs milliseconds, no import).
        models.verified_bytes(store, names)
        data = models.serving_bytes(store, names)
        if data is not None:
            from {{ cookiecutter.package }}.ml import numpy_models

            return numpy_models.load(data)

    from {{ cookiecutter.package }}.ml.flat_trees import fast_predictor

    return fast_predictor(models.load(store, names))


def create_app(names: ReleaseNames) -> FastAPI:
    store = open_store(names.artifact_root)
    model = serving_model(store, names)
    limit_native_threads()  # after the load: the model's libraries are loaded now
    metadata = models.read_metadata(store, names)
    rush_hours = [int(h) for h in metadata["config"]["features"]["rush_hours"]]
    app = FastAPI(title=f"{names.project} {names.version}", version=names.version)
    harden(app)
    add_index(app, version=names.version)

    # `async def`: answered on the event loop's thread, so a loop that is stuck fails it
    # (a thread pool would answer for it), and with no hand-off to a thread.
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the model is loaded."""
        return {"status": "ok"}

    @app.get("/version")
    def version() -> dict[str, Any]:
        """The version served: its feature version, metrics and commit."""
        return {
            "version": names.version,
            "feature_version": metadata["feature_version"],
            "metrics": metadata["metrics"],
            "git_sha": metadata["git_sha"],
        }

    metrics = None
    if metrics_on():
        code = read_code(store, names)
        metrics = VersionMetrics(
            names.version,
            model_sha256=str(metadata["model_sha256"]),
            git_sha=str(metadata.get("git_sha", "")),
            release_inputs=code.release_inputs if code else "",
            reference=metadata.get("reference"),
        )
        add_metrics(app, metrics.registry)
    batcher = MicroBatcher(
        lambda matrix: predict_etas(model, matrix),
        wait_ms=float(os.environ.get("SERVING_BATCH_WAIT_MS", "2")),
        observe=metrics.observe_batch if metrics else None,
    )
    app.state.batcher = batcher

    # The prediction of a few trips (about a tenth of a millisecond) runs on the event
    # loop's thread, with no hand-off to a thread pool, and concurrent requests are
    # predicted together (`serving.batching`). The body is validated by pydantic straight
    # from its bytes and the answer written as plain JSON: FastAPI's own body parsing and
    # response validation cost more than the prediction (the schema is the same, and the
    # docs show it).
    async def predict(body: bytes) -> Response:
        try:
            trips = PredictRequest.model_validate_json(body).trips
        except ValidationError as error:
            return body_errors(error)
        fields = (
            np.array([t.distance_km for t in trips]),
            np.array([t.pickup_hour for t in trips]),
            np.array([t.weekday for t in trips]),
            np.array([t.area_cluster for t in trips]),
        )
        predicted = await batcher(feature_matrix(*fields, rush_hours))
        if metrics is not None:
            metrics.recent.append((*fields, predicted))  # the drift gauge's window
        etas = predicted.tolist()
        return Response(
            orjson.dumps(
                {
                    "version": names.version,
                    "predictions": [
                        {"trip_id": t.trip_id, "eta_minutes": eta}
                        for t, eta in zip(trips, etas, strict=True)
                    ],
                }
            ),
            media_type="application/json",
        )

    # Answered before FastAPI's routing, which costs more than predicting a few trips.
    add_direct_post(
        app,
        names.endpoint_path,
        predict,
        "ETAs in minutes for up to 1000 trips.",
        in_flight=batcher.in_flight,
        observe=metrics.requests.observe if metrics else None,
        response_model=PredictResponse,
        openapi_extra={"requestBody": REQUEST_BODY},
    )
    return app


def serve(names: ReleaseNames, host: str = "127.0.0.1", port: int = 8080) -> None:
    import uvicorn

    uvicorn.run(create_app(names), host=host, port=port)


def serve_command(
    python: str, names: ReleaseNames, host: str = "127.0.0.1", port: int = 8080
) -> tuple[list[str], dict[str, str]]:
    """The command and environment that serve `names.version` with the interpreter `python`
    (the version's own environment): the same entry point as the image's."""
    environment = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        "ARTIFACT_ROOT": names.artifact_root,
        "MODEL_VERSION": names.version,
        "HOST": host,
        "PORT": str(port),
    }
    return [python, "-m", "{{ cookiecutter.package }}.serving.app"], environment


def main() -> None:
    """The image's entry point (and `inv serve`'s, in the version's own environment)."""
    version = os.environ.get("MODEL_VERSION") or read_version()
    try:
        app = create_app(names_of_model(version, os.environ["ARTIFACT_ROOT"]))
    except (UserError, KeyError) as error:
        # A missing, altered or unreadable model: one line, and no server that half works.
        sys.exit(f"error: cannot serve {version}: {error}")
    import uvicorn

    uvicorn.run(
        app, host=os.environ.get("HOST", "0.0.0.0"), port=int(os.environ.get("PORT", "8080"))
    )


if __name__ == "__main__":
    main()
