"""A test double of the Kubeflow Pipelines v2beta1 REST API, for tests only.

No Kubeflow Pipelines API server can run on a laptop or in CI (it needs a Kubernetes cluster,
Argo and MySQL), so the tests talk to this in-process HTTP server on loopback through the real
`kfp.Client`. It keeps state (experiments, pipelines, pipeline versions, runs, recurring
runs, and their deletes), reproduces the quirks the release relies on (the first upload cannot
name its version; a version name cannot be uploaded twice; a pipeline version a recurring run
uses cannot be deleted), and checks every request: JSON bodies must deserialize into the
kfp_server_api model of their endpoint and carry no unknown field, and uploads must be
multipart with an `uploadfile` part that parses as a pipeline spec. A request that fails a
check is answered 400 and recorded in `rejected`, which tests assert is empty.

It does not execute runs: a run ends SUCCEEDED, or FAILED with `fail_runs_with` as its error.
Tests run the uploaded spec through kfp's local execution themselves.
"""

from __future__ import annotations

import email
import functools
import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import kfp_server_api
import yaml

PREFIX = "/apis/v2beta1"
BODY_MODELS = {
    ("POST", "experiments"): kfp_server_api.V2beta1Experiment,
    ("POST", "runs"): kfp_server_api.V2beta1Run,
    ("POST", "recurringruns"): kfp_server_api.V2beta1RecurringRun,
}


def _new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class KfpState:
    experiments: dict[str, dict] = field(default_factory=dict)
    pipelines: dict[str, dict] = field(default_factory=dict)
    versions: dict[str, list[dict]] = field(default_factory=dict)  # pipeline id -> versions
    runs: dict[str, dict] = field(default_factory=dict)
    recurring_runs: dict[str, dict] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    fail_runs_with: str | None = None


class BadRequest(Exception):
    pass


def _validate(model: type, body: dict) -> None:
    """The body must be exactly a serialized `model`: known fields, valid nested models."""
    unknown = set(body) - set(model.attribute_map.values())
    if unknown:
        raise BadRequest(f"{model.__name__}: unknown fields {sorted(unknown)}")
    client = kfp_server_api.ApiClient()

    class Response:
        data = json.dumps(body)

    try:
        client.deserialize(Response(), model.__name__)
    except (ValueError, TypeError) as error:
        raise BadRequest(f"{model.__name__}: {error}") from error


def _matches(item: dict, filter_text: str | None) -> bool:
    if not filter_text:
        return True
    for predicate in json.loads(filter_text).get("predicates", []):
        if predicate.get("operation") not in ("EQUALS", 1):
            raise BadRequest(f"unsupported filter operation {predicate.get('operation')}")
        value = predicate.get("stringValue", predicate.get("string_value"))
        if item.get(predicate["key"]) != value:
            return False
    return True


class KfpApiDouble:
    def __init__(self) -> None:
        self.state = KfpState()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        # shutdown() returns at the loop's next poll: 20 ms, not the default half second.
        serve = functools.partial(self.server.serve_forever, poll_interval=0.02)
        self.thread = threading.Thread(target=serve, daemon=True)

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> KfpApiDouble:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- state helpers for tests -----------------------------------------------------------
    def pipeline_versions(self, pipeline_name: str) -> list[dict]:
        pipeline = next(
            (p for p in self.state.pipelines.values() if p["display_name"] == pipeline_name), None
        )
        return self.state.versions.get(pipeline["pipeline_id"], []) if pipeline else []

    def recurring_run(self, name: str) -> dict:
        return next(r for r in self.state.recurring_runs.values() if r["display_name"] == name)

    # -- the API -----------------------------------------------------------------------------
    def handle(
        self, method: str, path: str, query: dict[str, str], headers: Any, body: bytes
    ) -> tuple[int, dict]:
        state = self.state
        parts = path[len(PREFIX) :].strip("/").split("/")
        state.requests.append((method, path))
        resource = parts[0]
        creating = method == "POST" and len(parts) == 1
        if creating and (method, resource) in BODY_MODELS:
            payload = json.loads(body or b"{}")
            _validate(BODY_MODELS[(method, resource)], payload)
        if resource == "healthz":
            return 200, {"multi_user": False}
        if resource == "experiments":
            if creating:
                experiment = {**payload, "experiment_id": _new_id(), "storage_state": "AVAILABLE"}
                state.experiments[experiment["experiment_id"]] = experiment
                return 200, experiment
            found = [e for e in state.experiments.values() if _matches(e, query.get("filter"))]
            return 200, {"experiments": found, "total_size": len(found)}
        if resource == "pipelines":
            return self._pipelines(method, parts, query, headers, body)
        if resource == "runs":
            if creating:
                return 200, self._create_run(payload)
            return 200, state.runs[parts[1]]
        if resource == "recurringruns":
            if method == "DELETE" and len(parts) == 2:
                if state.recurring_runs.pop(parts[1], None) is None:
                    return 404, {"error": f"no recurring run {parts[1]}"}
                return 200, {}
            if creating:
                recurring = {**payload, "recurring_run_id": _new_id(), "status": "ENABLED"}
                state.recurring_runs[recurring["recurring_run_id"]] = recurring
                return 200, recurring
            if method == "POST" and len(parts) == 2 and ":" in parts[1]:
                run_id, action = parts[1].split(":")
                if run_id not in state.recurring_runs or action not in ("enable", "disable"):
                    raise BadRequest(f"no recurring run {run_id} or action {action}")
                state.recurring_runs[run_id]["mode"] = "ENABLE" if action == "enable" else "DISABLE"
                return 200, {}
            found = [
                r
                for r in state.recurring_runs.values()
                if _matches(r, query.get("filter"))
                and r.get("experiment_id") == query.get("experiment_id", r.get("experiment_id"))
            ]
            return 200, {"recurringRuns": found, "total_size": len(found)}
        raise BadRequest(f"no such endpoint {method} {path}")

    def _uploaded_spec(self, headers: Any, body: bytes) -> dict:
        content_type = headers.get("Content-Type", "")
        if not content_type.startswith("multipart/form-data"):
            raise BadRequest("upload must be multipart/form-data")
        message = email.message_from_bytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        parts = (
            {
                part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
                for part in message.get_payload()
            }
            if message.is_multipart()
            else {}
        )
        if "uploadfile" not in parts:
            raise BadRequest("upload needs an 'uploadfile' part")
        spec = yaml.safe_load(parts["uploadfile"])
        if not isinstance(spec, dict) or "pipelineInfo" not in spec or "root" not in spec:
            raise BadRequest("uploadfile is not a compiled pipeline spec")
        return spec

    def _pipelines(
        self, method: str, parts: list[str], query: dict[str, str], headers: Any, body: bytes
    ) -> tuple[int, dict]:
        state = self.state
        if method == "POST" and parts[1:] == ["upload"]:
            name = query.get("name")
            if not name:
                raise BadRequest("upload needs a pipeline name")
            if any(p["display_name"] == name for p in state.pipelines.values()):
                return 409, {"error": f"pipeline {name} already exists"}
            spec = self._uploaded_spec(headers, body)
            pipeline = {
                "pipeline_id": _new_id(),
                "display_name": name,
                "description": query.get("description", ""),
            }
            state.pipelines[pipeline["pipeline_id"]] = pipeline
            # Quirk: the first version is named after the pipeline, not by the caller.
            state.versions[pipeline["pipeline_id"]] = [
                {
                    "pipeline_id": pipeline["pipeline_id"],
                    "pipeline_version_id": _new_id(),
                    "display_name": name,
                    "pipeline_spec": spec,
                }
            ]
            return 200, pipeline
        if method == "POST" and parts[1:] == ["upload_version"]:
            pipeline_id, name = query.get("pipelineid"), query.get("name")
            if pipeline_id not in state.pipelines or not name:
                raise BadRequest("upload_version needs an existing pipelineid and a name")
            if any(v["display_name"] == name for v in state.versions[pipeline_id]):
                return 409, {"error": f"version {name} already exists"}  # quirk
            version = {
                "pipeline_id": pipeline_id,
                "pipeline_version_id": _new_id(),
                "display_name": name,
                "description": query.get("description", ""),
                "pipeline_spec": self._uploaded_spec(headers, body),
            }
            state.versions[pipeline_id].append(version)
            return 200, version
        if method == "GET" and len(parts) == 1:
            found = [p for p in state.pipelines.values() if _matches(p, query.get("filter"))]
            return 200, {"pipelines": found, "total_size": len(found)}
        if method == "GET" and len(parts) == 3 and parts[2] == "versions":
            found = [
                v for v in state.versions.get(parts[1], []) if _matches(v, query.get("filter"))
            ]
            return 200, {"pipeline_versions": found, "total_size": len(found)}
        if method == "DELETE" and len(parts) == 4 and parts[2] == "versions":
            versions = state.versions.get(parts[1], [])
            kept = [v for v in versions if v["pipeline_version_id"] != parts[3]]
            if len(kept) == len(versions):
                return 404, {"error": f"no pipeline version {parts[3]}"}
            if any(
                r.get("pipeline_version_reference", {}).get("pipeline_version_id") == parts[3]
                for r in state.recurring_runs.values()
            ):  # as KFP: a version a recurring run still uses cannot go
                raise BadRequest(f"pipeline version {parts[3]} is used by a recurring run")
            state.versions[parts[1]] = kept
            return 200, {}
        if method == "GET" and len(parts) == 4:
            return 200, next(
                v for v in state.versions[parts[1]] if v["pipeline_version_id"] == parts[3]
            )
        raise BadRequest(f"no such endpoint {method} /pipelines/{'/'.join(parts[1:])}")

    def _create_run(self, payload: dict) -> dict:
        if not payload.get("pipeline_spec") and not payload.get("pipeline_version_reference"):
            raise BadRequest("a run needs a pipeline_spec or a pipeline_version_reference")
        failed = self.state.fail_runs_with
        run = {**payload, "run_id": _new_id(), "state": "FAILED" if failed else "SUCCEEDED"}
        if failed:
            run["error"] = {"code": 2, "message": failed}
        self.state.runs[run["run_id"]] = run
        return run

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    with double.lock:
                        status, payload = double.handle(method, url.path, query, self.headers, body)
                except BadRequest as error:
                    double.state.rejected.append(f"{method} {url.path}: {error}")
                    status, payload = 400, {"error": str(error)}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

            def log_message(self, *args: object) -> None:
                pass

        return Handler
