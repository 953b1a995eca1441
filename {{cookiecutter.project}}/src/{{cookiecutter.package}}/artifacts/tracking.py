"""Experiment tracking with MLflow, off by default (`conf/tracking/none.yaml`).

On with `-o tracking=mlflow`: every training is one MLflow run - an `inv train` job, each
trial of a sweep (a child run of the sweep's run) and a release's training. A run holds the
resolved config as params, the metrics, tags (project, version, git sha, feature version,
data lineage, the test set it was scored on) and, for a release, a reference to the
released model (its store URI and sha256): the artifact store stays the source of truth,
nothing is copied.

Tracking records work, it never decides it: a failure to log is one warning line and the
work goes on; after a failure the process stops trying (a dead server costs one timeout,
not one per run). MLflow is imported only when tracking is on: it takes seconds.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from {{ cookiecutter.package }}.errors import UserError
from {{ cookiecutter.package }}.ml import MAIN_METRIC
from {{ cookiecutter.package }}.version import PROJECT_ROOT

PARENT_TAG = "mlflow.parentRunId"  # how MLflow (and its UI) nests a trial under its sweep
# A tracking server that is down must cost seconds, not MLflow's default minutes of retries.
CLIENT_SETTINGS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
PARAM_LIMIT = 6000  # characters MLflow keeps of a param's value


class TrackingError(UserError):
    """The tracking store cannot be read (`inv experiments`)."""


@dataclass(frozen=True)
class TrackedRun:
    run_id: str
    name: str
    kind: str  # experiment, trial, sweep or release
    status: str
    started: float  # seconds since the epoch
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def flatten(config: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """A nested config as dotted keys (`model.max_depth`), each value as MLflow keeps it."""
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from flatten(value, f"{name}.")
        else:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            yield name, text[:PARAM_LIMIT]


def scored_on(metadata: Mapping[str, Any]) -> str:
    """What a run was scored on: the test set's size, the data it was cut from and how it
    was cut. Runs are ranked against each other only when these are equal."""
    config = metadata.get("config", {})
    data = config.get("data", {})
    content = str((metadata.get("data") or {}).get("content_sha256", "unknown"))[:12]
    n_test = metadata.get("metrics", {}).get("n_test")
    size = "?" if n_test is None else int(n_test)
    seed, fraction = data.get("seed", "?"), data.get("test_fraction", "?")
    return f"{size} trips of data {content} (split {fraction}, seed {seed})"


@functools.cache  # asked for every trial of a search; HEAD does not move under a process
def git_sha() -> str:
    """This checkout's commit, for runs that are not releases (which record their own)."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def describe(metadata: Mapping[str, Any], kind: str) -> tuple[dict, dict, dict]:
    """The params, metrics and tags of a training's run, from its metadata: what
    `inv train` writes next to the model, or the released model's metadata.json."""
    config = metadata.get("config", {})
    lineage = metadata.get("data") or {}
    tags = {
        "kind": kind,
        "project": str(config.get("project", "")),
        "version": str(metadata.get("version", config.get("version", ""))),
        "git_sha": str(metadata.get("git_sha") or git_sha()),
        "feature_version": str(metadata.get("feature_version", "")),
        "test_set": scored_on(metadata),
        "main_metric": str(metadata.get("main_metric", MAIN_METRIC)),
        **{
            f"data.{key}": str(lineage[key])
            for key in ("source", "location", "content_sha256")
            if lineage.get(key) is not None
        },
    }
    if metadata.get("overrides") is not None:
        tags["overrides"] = " ".join(metadata["overrides"])
    if metadata.get("model"):  # a released model: where it is and what it is, not a copy
        tags.update(model_uri=str(metadata["model"]), model_sha256=str(metadata["model_sha256"]))
    metrics = {key: float(value) for key, value in metadata.get("metrics", {}).items()}
    params = dict(flatten({key: value for key, value in config.items() if key != "env"}))
    return params, metrics, {key: value for key, value in tags.items() if value}


def reach_server(uri: str) -> None:
    """Connect once to an http(s) tracking server before importing MLflow, which takes
    seconds: a server that is down is one error at once. Raises OSError. Behind a proxy the
    server may be reachable only through it, as MLflow's requests will go: no check then."""
    import urllib.request  # only when tracking is on

    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    if parts.scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(
        parts.hostname
    ):
        return
    address = (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    timeout = float(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "5"))
    try:
        socket.create_connection(address, timeout=timeout).close()
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        raise OSError(f"no server answers at {address[0]}:{address[1]} ({reason})") from None


class Tracker:
    """One MLflow experiment (by default the project's name) at one tracking URI."""

    def __init__(self, uri: str, experiment: str, copy_model: bool = False) -> None:
        self.uri, self.experiment, self.copy_model = uri, experiment, copy_model
        self._client: Any = None
        self._experiment_id = ""
        self.failed = False

    @property
    def shown(self) -> str:
        """The URI as printed: without a user and password, should it hold them."""
        parts = urlsplit(self.uri)
        if "@" not in parts.netloc:
            return self.uri
        return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | DictConfig) -> Tracker | None:
        """The tracker the resolved config asks for, or None when tracking is off."""
        tracking: Any = config.get("tracking") or {}
        if isinstance(tracking, DictConfig):  # Hydra's own config, in a callback
            tracking = OmegaConf.to_container(tracking, resolve=True)
        if tracking.get("kind", "none") == "none":
            return None
        if tracking["kind"] != "mlflow":
            raise UserError(f"unknown tracking {tracking['kind']!r}: choose none or mlflow")
        copy_model = bool(tracking.get("copy_model", False))
        return cls(local_uri(str(tracking["uri"])), str(tracking["experiment"]), copy_model)

    def client(self) -> Any:
        if self._client is None:
            for name, value in CLIENT_SETTINGS.items():
                os.environ.setdefault(name, value)
            reach_server(self.uri)
            from mlflow.tracking import MlflowClient

            for name in ("mlflow", "alembic"):  # MLflow sets its own levels when imported
                logging.getLogger(name).setLevel(logging.WARNING)
            client = MlflowClient(tracking_uri=self.uri)
            found = client.get_experiment_by_name(self.experiment)
            # A local store keeps copied models in this project too (mlartifacts/), not in
            # the folder the command ran from; a server decides for itself.
            local = self.uri.startswith("sqlite:")
            location = (PROJECT_ROOT / "mlartifacts").as_uri() if local else None
            self._experiment_id = (
                found.experiment_id
                if found
                else client.create_experiment(self.experiment, artifact_location=location)
            )
            self._client = client
        return self._client

    def warn(self, doing: str, error: BaseException) -> None:
        self.failed = True
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        print(f"warning: tracking to {self.shown} failed ({doing}): {reason}", file=sys.stderr)

    def start(self, name: str, tags: Mapping[str, str], parent: str | None = None) -> str | None:
        """A new running run; its id, or None when tracking failed (warned once)."""
        if self.failed:
            return None
        try:
            client = self.client()
            all_tags = {**tags, **({PARENT_TAG: parent} if parent else {})}
            run = client.create_run(self._experiment_id, run_name=name, tags=all_tags)
            return str(run.info.run_id)
        except Exception as error:  # noqa: BLE001 - tracking never fails the work
            self.warn(f"starting run {name!r}", error)
            return None

    def finish(
        self,
        run_id: str | None,
        params: Mapping[str, str] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        failed: bool = False,
    ) -> None:
        if run_id is None or self.failed:
            return
        try:
            from mlflow.entities import Metric, Param, RunTag

            now = int(time.time() * 1000)
            self.client().log_batch(
                run_id,
                metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
                params=[Param(k, str(v)) for k, v in (params or {}).items()],
                tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
            )
            self.client().set_terminated(run_id, "FAILED" if failed else "FINISHED")
        except Exception as error:  # noqa: BLE001 - tracking never fails the work
            self.warn(f"logging run {run_id}", error)

    def log(
        self,
        name: str,
        metadata: Mapping[str, Any],
        kind: str,
        parent: str | None = None,
        tags: Mapping[str, str] | None = None,
        model: Path | None = None,
    ) -> str | None:
        """One finished training's run, from its metadata; its id or None. The `model` file
        is copied into the run only when the config says so (`copy_model`)."""
        params, metrics, described = describe(metadata, kind)
        run_id = self.start(name, {**described, **(tags or {})}, parent)
        if run_id and model is not None and self.copy_model and not self.failed:
            try:
                self.client().log_artifact(run_id, str(model), artifact_path="model")
            except Exception as error:  # noqa: BLE001 - tracking never fails the work
                self.warn(f"copying {model.name}", error)
        self.finish(run_id, params, metrics)
        return run_id

    def runs(self) -> list[TrackedRun]:
        """Every run of the experiment, newest first (TrackingError when unreadable)."""
        try:
            client = self.client()
            found = client.search_runs([self._experiment_id], max_results=5000)
        except Exception as error:  # noqa: BLE001 - one line for the user, whatever MLflow says
            reason = " ".join(str(error).split())[:200]
            raise TrackingError(f"cannot read runs from {self.shown}: {reason}") from None
        return [
            TrackedRun(
                run_id=run.info.run_id,
                name=run.info.run_name or run.info.run_id,
                kind=run.data.tags.get("kind", ""),
                status=run.info.status,
                started=run.info.start_time / 1000,
                metrics=dict(run.data.metrics),
                params=dict(run.data.params),
                tags=dict(run.data.tags),
            )
            for run in found
        ]


def local_uri(uri: str) -> str:
    """A relative SQLite file (`sqlite:///mlflow.db`) means one in this project, wherever
    the command runs from; any other URI is kept."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        return prefix + str(PROJECT_ROOT / uri[len(prefix) :])
    return uri


class TrackedSweeps(Callback):
    """The Hydra callback of `python -m {{ cookiecutter.package }}.train` (conf/config.yaml
    `hydra.callbacks`): each job is a run; a multirun (a grid, or an Optuna search) is a
    parent run whose children are its jobs, with the best job's metric and overrides."""

    def __init__(self) -> None:
        self.tracker: Tracker | None = None
        self.sweep: str | None = None
        self.best: tuple[float, str] | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.tracker = Tracker.from_config(config)
        if self.tracker:
            name = f"sweep {Path(str(config.hydra.sweep.dir)).name}"
            tags = {
                "kind": "sweep",
                "project": str(config.project),
                "version": str(config.version),
                "git_sha": git_sha(),
            }
            self.sweep = self.tracker.start(name, tags)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        tracker = self.tracker or Tracker.from_config(config)
        if tracker is None:
            return
        assert job_return.hydra_cfg is not None  # set by Hydra for every job it ran
        output_dir = Path(str(job_return.hydra_cfg.hydra.runtime.output_dir))
        kind = "trial" if self.sweep else "experiment"
        name = f"{kind} {output_dir.name}"
        overrides = " ".join(job_return.overrides or [])
        metadata_file = output_dir / "metadata.json"
        if job_return.status != JobStatus.COMPLETED or not metadata_file.exists():
            run_id = tracker.start(name, {"kind": kind, "overrides": overrides}, self.sweep)
            tracker.finish(run_id, failed=True)
            return
        metadata = json.loads(metadata_file.read_text())
        tracker.log(name, metadata, kind, parent=self.sweep, model=output_dir / "model.pkl")
        score = float(metadata["metrics"][MAIN_METRIC])
        if self.best is None or score < self.best[0]:
            self.best = (score, overrides)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.tracker and self.sweep:
            metrics = {f"best_{MAIN_METRIC}": self.best[0]} if self.best else {}
            tags = {"best_overrides": self.best[1]} if self.best else {}
            # The search itself: its sweeper, sampler, trial count and parameter space.
            sweeper: Any = OmegaConf.to_container(config.hydra.sweeper, resolve=False)
            params = dict(flatten(sweeper, "sweeper."))
            self.tracker.finish(self.sweep, params=params, metrics=metrics, tags=tags)
