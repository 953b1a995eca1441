"""What the Vertex AI engine (`engines.vertex`) stands on: its settings, Google's refusals as
one line naming the fix, the credentials, and the templates' repository in Artifact
Registry (`TemplateRepository`: uploaded by content, tagged once, never moved)."""

from __future__ import annotations

import contextlib
import hashlib
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from {{ cookiecutter.package }}.artifacts.names import ReleaseNames, Workflow, check_version
from {{ cookiecutter.package }}.engines import Schedule, five_field_cron
from {{ cookiecutter.package }}.errors import ReleaseError

ROLES = "roles/aiplatform.user and roles/artifactregistry.writer (README: Vertex AI)"


def version_label(version: str) -> str:
    """`1.4.0` -> `v1-4-0`: a version as GCP labels and Artifact Registry tags accept it."""
    return "v" + re.sub(r"[^a-z0-9_-]", "-", check_version(version).lower())


@dataclass(frozen=True)
class VertexSettings:
    """`env.vertex` of the config."""

    project: str
    location: str
    templates: str  # https://{location}-kfp.pkg.dev/{project}/{repository}
    pipeline_root: str
    service_account: str = ""
    network: str = ""
    api_endpoint: str = ""  # empty: {location}-aiplatform.googleapis.com
    poll_seconds: float = 10.0

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    @property
    def endpoint(self) -> str:
        return self.api_endpoint or f"https://{self.location}-aiplatform.googleapis.com"


@contextlib.contextmanager
def google_errors(what: str) -> Iterator[None]:
    """A refusal from Google as one line naming the fix, never a traceback."""
    import requests
    from google.api_core import exceptions
    from google.auth.exceptions import DefaultCredentialsError, RefreshError

    try:
        yield
    except DefaultCredentialsError:
        raise ReleaseError(
            "no Google Cloud credentials for Vertex AI: run `gcloud auth application-default "
            "login` (a laptop) or use workload identity (CI, a cluster)"
        ) from None
    except RefreshError as error:
        raise ReleaseError(
            f"Google Cloud credentials were refused ({error}): log in again"
        ) from None
    except (exceptions.PermissionDenied, exceptions.Forbidden) as error:
        raise ReleaseError(f"Vertex AI refused to {what}: {_said(error)}; grant {ROLES}") from None
    except (exceptions.ResourceExhausted, exceptions.TooManyRequests) as error:
        raise ReleaseError(
            f"Vertex AI quota exhausted, cannot {what}: {_said(error)}; ask for more quota in "
            "the console (IAM & Admin > Quotas) or run fewer pipelines at once"
        ) from None
    except exceptions.GoogleAPICallError as error:
        raise ReleaseError(f"Vertex AI cannot {what}: {_said(error)}") from None
    except requests.HTTPError as error:
        status = error.response.status_code if error.response is not None else 0
        if status == 404:
            raise ReleaseError(
                f"cannot {what}: not found in Artifact Registry (does the repository exist? "
                "`gcloud artifacts repositories create NAME --repository-format=KFP "
                "--location=LOCATION`)"
            ) from None
        if status in (401, 403):
            raise ReleaseError(
                f"Artifact Registry refused to {what} (HTTP {status}); grant {ROLES}"
            ) from None
        raise ReleaseError(f"Artifact Registry cannot {what}: HTTP {status}") from None
    except requests.ConnectionError as error:
        raise ReleaseError(f"cannot reach Artifact Registry to {what}: {error}") from None


def _said(error: Any) -> str:
    """Google's message, without the request line the client puts before it."""
    return re.sub(r"^(GET|POST|PATCH|PUT|DELETE) \S+: ", "", str(error.message))


def spec_digest(spec: str) -> str:
    """Artifact Registry's name of a template version: the sha256 of its bytes."""
    return "sha256:" + hashlib.sha256(spec.encode()).hexdigest()


def credentials_for(endpoint: str) -> Any:
    if endpoint.startswith("http://"):
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials()
    import google.auth

    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    return credentials


class TemplateRepository:
    """A Kubeflow Pipelines repository in Artifact Registry, through kfp's `RegistryClient`:
    a template version is named by the sha256 of its bytes, a tag names one version."""

    def __init__(self, registry: Any, templates: str) -> None:
        self.registry, self.templates = registry, templates

    def register(self, package: str, tag: str, spec: str) -> str:
        """Upload `spec` tagged `tag` once, never moved (an equal upload reused); its address."""
        digest = spec_digest(spec)
        tagged = self.tagged(package, tag)
        if tagged is not None and tagged != digest:
            raise ReleaseError(
                f"template {package}:{tag} in {self.templates} is {tagged}, not this "
                f"version's {digest}: a released template never changes, bump the version"
            )
        if tagged is None:
            if self.has_version(package, digest):  # uploaded untagged by an ad-hoc run
                with google_errors(f"tag {package} {digest} as {tag}"):
                    self.registry.create_tag(package, digest, tag)
            else:
                self.upload(package, spec, digest, [tag])
        return self.address(package, digest)

    def address(self, package: str, digest: str) -> str:
        return f"{self.templates}/{package}/{digest}"

    def tagged(self, package: str, tag: str) -> str | None:
        """The `sha256:...` version that `tag` names, None when there is no such tag."""
        import requests

        try:
            found = self.registry.get_tag(package, tag)
        except requests.HTTPError as error:
            if error.response is not None and error.response.status_code == 404:
                return None
            with google_errors(f"read tag {package}:{tag}"):
                raise
        return str(found["version"]).rsplit("/", 1)[-1]

    def has_version(self, package: str, digest: str) -> bool:
        import requests

        try:
            self.registry.get_version(package, digest)
        except requests.HTTPError as error:
            if error.response is not None and error.response.status_code == 404:
                return False
            with google_errors(f"read {package} {digest}"):
                raise
        return True

    def upload(self, package: str, spec: str, digest: str, tags: list[str]) -> None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"{package}.yaml"
            path.write_bytes(spec.encode())
            with google_errors(f"upload {package} to {self.templates}"):
                _, version = self.registry.upload_pipeline(str(path), tags=tags or None)
        if version != digest:
            raise ReleaseError(f"Artifact Registry stored {package} as {version}, not {digest}")


def pipeline_job(
    settings: VertexSettings,
    names: ReleaseNames,
    workflow: Workflow,
    template: str,
    parameters: dict[str, Any],
) -> dict[str, Any]:
    """A PipelineJob of `template` (its sha256 address) with the version's parameters."""
    job: dict[str, Any] = {
        "template_uri": template,
        "runtime_config": {
            "gcs_output_directory": settings.pipeline_root,
            "parameter_values": dict(parameters),
        },
        "labels": {
            "project": names.project,
            "version": version_label(names.version),
            "workflow": workflow,
        },
    }
    if settings.service_account:
        job["service_account"] = settings.service_account
    if settings.network:
        job["network"] = settings.network
    return job


def vertex_cron(schedule: Schedule) -> str:
    """Vertex takes a five-field cron: KFP's six lose their seconds; an interval that
    divides an hour or a day becomes one."""
    if schedule.cron:
        return five_field_cron(schedule.cron)
    seconds = int(schedule.interval_seconds or 0)
    if seconds % 60 == 0 and 0 < seconds // 60 < 60 and 60 % (seconds // 60) == 0:
        return f"*/{seconds // 60} * * * *"
    if seconds % 3600 == 0 and 0 < seconds // 3600 < 24 and 24 % (seconds // 3600) == 0:
        return f"0 */{seconds // 3600} * * *"
    if seconds == 86400:
        return "0 0 * * *"
    raise ReleaseError(
        f"schedules.{schedule.workflow}.interval_seconds={seconds} has no cron for Vertex AI: "
        "use a divisor of an hour or a day, or a cron"
    )


def same_schedule(existing: Any, wanted: dict[str, Any]) -> bool:
    job = existing.create_pipeline_job_request.pipeline_job
    want = wanted["create_pipeline_job_request"]["pipeline_job"]
    return (
        existing.cron == wanted["cron"]
        and int(existing.max_concurrent_run_count) == wanted["max_concurrent_run_count"]
        and job.template_uri == want["template_uri"]
        and dict(job.runtime_config.parameter_values) == want["runtime_config"]["parameter_values"]
    )
