"""A test double of Vertex AI Pipelines and of an Artifact Registry KFP repository, for
tests only.

Neither service runs outside Google Cloud, so the tests point the real clients at this
in-process HTTP server on loopback: google-cloud-aiplatform's GAPIC clients with the REST
transport (`api_endpoint`, anonymous credentials, as python-aiplatform's own
`tests/unit/aiplatform/test_pipeline_jobs.py` does with mocks), and kfp's `RegistryClient`
with a host that is not `*-kfp.pkg.dev` (kfp then calls the same operations at the URLs of
its generic context, `kfp/registry/context/default_pkg_dev.json`, instead of
artifactregistry.googleapis.com).

It is written from Google's published references and keeps state:
- Vertex AI REST v1 (cloud.google.com/vertex-ai/docs/reference/rest/v1):
  `projects.locations.pipelineJobs` create (a PipelineJob, not an operation), get, list
  (filter on `labels.KEY="V"`, `display_name="V"`, AND; `orderBy=create_time desc`);
  `projects.locations.schedules` create, list, get, pause, resume (`FAILED_PRECONDITION`
  unless ACTIVE, resp. PAUSED) and delete (a long-running operation, done at its first
  `operations.get`). Errors are Google's JSON error shape.
- Artifact Registry's KFP repositories (cloud.google.com/artifact-registry/docs/kfp): an
  upload (multipart `content`, form field `tags`) stores a version named `sha256:` of the
  bytes under the package the spec's `pipelineInfo.name` names, answers
  `PACKAGE/sha256:...`, and moves a tag that exists, as Artifact Registry does; tags,
  versions (a version a tag names cannot be deleted), downloads by tag or version.

It checks what Vertex checks and what the project promises: a PipelineJob names its
template by an Artifact Registry sha256 address that exists (a tag is refused, as Vertex
does in some paths: googleapis/python-aiplatform#2181), has `runtimeConfig.gcsOutputDirectory`,
parameters the template declares, and labels GCP accepts; a schedule has a five-field cron.
A refused request is answered 400 and recorded in `rejected`, which tests assert is empty;
`deny` answers chosen requests 403 or 429 as Google does. Runs are not executed: a job
is PENDING, then RUNNING, then SUCCEEDED (or FAILED with `fail_runs_with`) as it is read.
"""

from __future__ import annotations

import email
import functools
import hashlib
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import yaml

LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
CRON = re.compile(r"^(TZ=\S+ )?(\S+ ){4}\S+$")
STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
          409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED"}  # fmt: skip


class Refused(Exception):
    def __init__(self, code: int, message: str, status: str = "") -> None:
        super().__init__(message)
        self.code, self.status = code, status or STATUS.get(code, "FAILED_PRECONDITION")


@dataclass
class VertexState:
    jobs: dict[str, dict] = field(default_factory=dict)  # resource name -> PipelineJob
    schedules: dict[str, dict] = field(default_factory=dict)
    operations: dict[str, dict] = field(default_factory=dict)
    packages: dict[str, dict] = field(default_factory=dict)  # name -> {versions, tags}
    requests: list[tuple[str, str, Any]] = field(default_factory=list)  # method, path, body
    rejected: list[str] = field(default_factory=list)
    deny: dict[str, int] = field(default_factory=dict)  # path part -> 403 | 429
    fail_runs_with: str | None = None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _matches(item: dict, text: str) -> bool:
    """Vertex's list filter, as far as the project uses it: `a="b"` terms joined by AND."""
    for term in filter(None, (t.strip() for t in text.split(" AND "))):
        found = re.fullmatch(r'([\w.]+)\s*=\s*"([^"]*)"', term)
        if not found:
            raise Refused(400, f"unsupported filter term {term!r}")
        key, value = found.groups()
        if key.startswith("labels."):
            if item.get("labels", {}).get(key.removeprefix("labels.")) != value:
                return False
        elif key == "display_name":
            if item.get("displayName") != value:
                return False
        else:
            raise Refused(400, f"unsupported filter field {key!r}")
    return True


class VertexApiDouble:
    def __init__(self, project: str = "test-project", location: str = "europe-west1") -> None:
        self.project, self.location = project, location
        self.repository = f"/{project}/pipelines"  # the KFP repository's path
        self.state = VertexState()
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    @property
    def templates(self) -> str:
        return self.endpoint + self.repository

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    def __enter__(self) -> VertexApiDouble:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- helpers for tests ------------------------------------------------------------------
    def calls(self, method: str = "", part: str = "") -> list[tuple[str, str, Any]]:
        return [r for r in self.state.requests if r[0].startswith(method) and part in r[1]]

    def schedule(self, display_name: str) -> dict:
        return next(s for s in self.state.schedules.values() if s["displayName"] == display_name)

    # -- Vertex AI ----------------------------------------------------------------------------
    def vertex(self, method: str, path: str, query: dict[str, str], body: Any) -> Any:
        prefix = f"/v1/{self.parent}/"
        if method == "GET" and path.startswith(f"/v1/{self.parent}/operations/"):
            operation = self.state.operations[path.removeprefix("/v1/")]
            operation["done"] = True
            operation["response"] = {"@type": "type.googleapis.com/google.protobuf.Empty"}
            return operation
        if not path.startswith(prefix):
            raise Refused(404, f"no resource {path}")
        collection, _, rest = path.removeprefix(prefix).partition("/")
        if collection == "pipelineJobs":
            return self._jobs(method, rest, query, body)
        if collection == "schedules":
            return self._schedules(method, rest, query, body)
        raise Refused(404, f"no collection {collection}")

    def _jobs(self, method: str, rest: str, query: dict[str, str], body: Any) -> Any:
        if method == "POST" and not rest:
            job_id = query.get("pipelineJobId") or f"job-{next(self.ids)}"
            if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,127}", job_id):
                raise Refused(400, f"pipelineJobId {job_id!r} is invalid")
            name = f"{self.parent}/pipelineJobs/{job_id}"
            if name in self.state.jobs:
                raise Refused(409, f"{name} already exists")
            job = self._check_job(body)
            job.update(name=name, state="PIPELINE_STATE_PENDING", createTime=_now())
            self.state.jobs[name] = job
            return job
        if method == "GET" and rest:
            name = f"{self.parent}/pipelineJobs/{rest}"
            if name not in self.state.jobs:
                raise Refused(404, f"{name} not found")
            return self._advance(self.state.jobs[name])
        if method == "GET":
            found = [j for j in self.state.jobs.values() if _matches(j, query.get("filter", ""))]
            if query.get("orderBy", "").replace(" ", "") == "create_timedesc":
                found.sort(key=lambda j: j["createTime"], reverse=True)
            return {"pipelineJobs": found[: int(query.get("pageSize") or 100)]}
        raise Refused(400, f"no method {method} pipelineJobs/{rest}")

    def _advance(self, job: dict) -> dict:
        following = {"PIPELINE_STATE_PENDING": "PIPELINE_STATE_RUNNING",
                     "PIPELINE_STATE_RUNNING": "PIPELINE_STATE_SUCCEEDED"}  # fmt: skip
        if job["state"] in following:
            job["state"] = following[job["state"]]
            if job["state"] == "PIPELINE_STATE_SUCCEEDED" and self.state.fail_runs_with:
                job["state"] = "PIPELINE_STATE_FAILED"
                job["error"] = {"code": 9, "message": self.state.fail_runs_with}
        return job

    def _check_job(self, job: Any) -> dict:
        if not isinstance(job, dict) or not job.get("displayName"):
            raise Refused(400, "a PipelineJob needs a displayName")
        template = str(job.get("templateUri", ""))
        package, _, version = template.removeprefix(self.templates + "/").partition("/")
        if not template.startswith(self.templates + "/") or not version.startswith("sha256:"):
            raise Refused(400, f"templateUri {template!r} is not a template's sha256 address")
        stored = self.state.packages.get(package, {}).get("versions", {}).get(version)
        if stored is None:
            raise Refused(400, f"templateUri {template} does not exist")
        runtime = job.get("runtimeConfig") or {}
        if not str(runtime.get("gcsOutputDirectory", "")).startswith("gs://"):
            raise Refused(400, "runtimeConfig.gcsOutputDirectory must be a gs:// path")
        declared = yaml.safe_load(stored)["root"].get("inputDefinitions", {}).get("parameters", {})
        unknown = set(runtime.get("parameterValues") or {}) - set(declared)
        if unknown:
            raise Refused(400, f"parameters the template does not declare: {sorted(unknown)}")
        for key, value in (job.get("labels") or {}).items():
            if not LABEL_KEY.match(key) or not LABEL_VALUE.match(str(value)):
                raise Refused(400, f"label {key}={value!r} is not a valid GCP label")
        return dict(job)

    def _schedules(self, method: str, rest: str, query: dict[str, str], body: Any) -> Any:
        if method == "POST" and not rest:
            if not CRON.match(str(body.get("cron", ""))):
                raise Refused(400, f"cron {body.get('cron')!r} is not a five-field cron")
            request = body.get("createPipelineJobRequest") or {}
            if request.get("parent") != self.parent:
                raise Refused(400, "createPipelineJobRequest.parent must be the location")
            self._check_job(request.get("pipelineJob"))
            if int(body.get("maxConcurrentRunCount") or 0) < 1:
                raise Refused(400, "maxConcurrentRunCount must be at least 1")
            name = f"{self.parent}/schedules/{next(self.ids)}"
            schedule = {**body, "name": name, "state": "ACTIVE", "createTime": _now()}
            self.state.schedules[name] = schedule
            return schedule
        if method == "GET" and not rest:
            found = [s for s in self.state.schedules.values()
                     if _matches(s, query.get("filter", ""))]  # fmt: skip
            return {"schedules": found}
        schedule_id, _, action = rest.partition(":")
        name = f"{self.parent}/schedules/{schedule_id}"
        if name not in self.state.schedules:
            raise Refused(404, f"{name} not found")
        schedule = self.state.schedules[name]
        if method == "GET" and not action:
            return schedule
        if method == "POST" and action in ("pause", "resume"):
            before, after = ("ACTIVE", "PAUSED") if action == "pause" else ("PAUSED", "ACTIVE")
            if schedule["state"] != before:
                raise Refused(400, f"cannot {action} a schedule in state {schedule['state']}",
                              "FAILED_PRECONDITION")  # fmt: skip
            schedule["state"] = after
            return {}
        if method == "DELETE" and not action:
            del self.state.schedules[name]
            operation = {"name": f"{self.parent}/operations/{next(self.ids)}", "done": False}
            self.state.operations[operation["name"]] = operation
            return operation
        raise Refused(400, f"no method {method} schedules/{rest}")

    # -- Artifact Registry (a KFP repository) -------------------------------------------------
    def registry(self, method: str, path: str, query: dict[str, str], headers: Any,
                 raw: bytes) -> Any:  # fmt: skip
        if not path.startswith(self.repository):
            raise Refused(404, f"no repository {path}")
        parts = [unquote(p) for p in path.removeprefix(self.repository).strip("/").split("/")]
        packages = self.state.packages
        if method == "POST" and parts == [""]:
            return self._upload(headers, raw)
        if parts[0] == "packages":
            if len(parts) == 1:
                return {"packages": [{"name": f"packages/{p}"} for p in packages]}
            package = packages.get(parts[1])
            if package is None:
                raise Refused(404, f"no package {parts[1]}")
            if len(parts) == 3 and parts[2] == "tags" and method == "GET":
                return {"tags": [self._tag(parts[1], t) for t in package["tags"]]}
            if len(parts) == 3 and parts[2] == "tags" and method == "POST":
                version = json.loads(raw)["version"].rsplit("/", 1)[-1]
                if version not in package["versions"]:
                    raise Refused(404, f"no version {version}")
                package["tags"][query["tagId"]] = version
                return self._tag(parts[1], query["tagId"])
            if len(parts) == 4 and parts[2] == "tags":
                if parts[3] not in package["tags"]:
                    raise Refused(404, f"no tag {parts[3]}")
                if method == "DELETE":
                    del package["tags"][parts[3]]
                    return {}
                return self._tag(parts[1], parts[3])
            if len(parts) == 4 and parts[2] == "versions":
                if parts[3] not in package["versions"]:
                    raise Refused(404, f"no version {parts[3]}")
                if method == "DELETE":
                    if parts[3] in package["tags"].values():
                        raise Refused(400, "a version that tags name cannot be deleted",
                                      "FAILED_PRECONDITION")  # fmt: skip
                    del package["versions"][parts[3]]
                    return {"name": f"operations/{next(self.ids)}", "done": True}
                return {"name": f"packages/{parts[1]}/versions/{parts[3]}"}
        if method == "GET" and len(parts) == 2 and parts[0] in packages:
            package = packages[parts[0]]
            version = package["tags"].get(parts[1], parts[1])
            if version not in package["versions"]:
                raise Refused(404, f"no {parts[1]} of {parts[0]}")
            return package["versions"][version]
        raise Refused(400, f"no method {method} {path}")

    def _tag(self, package: str, tag: str) -> dict:
        version = self.state.packages[package]["tags"][tag]
        return {"name": f"packages/{package}/tags/{tag}",
                "version": f"packages/{package}/versions/{version}"}  # fmt: skip

    def _upload(self, headers: Any, raw: bytes) -> str:
        content_type = headers.get("Content-Type", "")
        if not content_type.startswith("multipart/form-data"):
            raise Refused(400, "an upload is multipart/form-data")
        message = email.message_from_bytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
        fields = {
            part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
            for part in (message.get_payload() if message.is_multipart() else [])
        }
        if "content" not in fields:
            raise Refused(400, "an upload needs a 'content' part")
        spec = yaml.safe_load(fields["content"])
        if not isinstance(spec, dict) or "pipelineInfo" not in spec or "root" not in spec:
            raise Refused(400, "content is not a compiled pipeline spec")
        name = spec["pipelineInfo"]["name"]
        version = "sha256:" + hashlib.sha256(fields["content"]).hexdigest()
        package = self.state.packages.setdefault(name, {"versions": {}, "tags": {}})
        package["versions"][version] = fields["content"].decode()
        for tag in filter(None, (fields.get("tags") or b"").decode().split(",")):
            package["tags"][tag] = version  # an existing tag moves, as in Artifact Registry
        return f"{name}/{version}"

    # -- HTTP -----------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                vertex = url.path.startswith("/v1/")
                try:
                    body = json.loads(raw) if raw and vertex else None
                except ValueError:
                    body = None
                with double.lock:
                    double.state.requests.append((method, url.path, body))
                    try:
                        denied = next((c for p, c in double.state.deny.items() if p in url.path),
                                      None)  # fmt: skip
                        if denied:
                            raise Refused(denied, f"denied by the test: {url.path}")
                        if vertex:
                            answer = double.vertex(method, url.path, query, body)
                        else:
                            answer = double.registry(method, url.path, query, self.headers, raw)
                        status = 200
                    except Refused as error:
                        if error.code == 400:
                            double.state.rejected.append(f"{method} {url.path}: {error}")
                        status = error.code
                        answer = {"error": {"code": error.code, "message": str(error),
                                            "status": error.status}}  # fmt: skip
                data = (answer if isinstance(answer, str) else json.dumps(answer)).encode()
                self.send_response(status)
                kind = "text/plain" if isinstance(answer, str) else "application/json"
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = functools.partialmethod(_serve, "GET")  # noqa: N815
            do_POST = functools.partialmethod(_serve, "POST")  # noqa: N815
            do_DELETE = functools.partialmethod(_serve, "DELETE")  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        return Handler
