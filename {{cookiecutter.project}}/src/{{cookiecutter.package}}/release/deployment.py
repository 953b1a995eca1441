"""Online deployments, rendered from the base manifests of deploy/base.

One version's: Deployment, Service and Ingress are named `{project}-v{version with dashes}`,
select only that version's pods, run that version's image, load that version's model and
route `/v{version}/` to it, so versions deploy side by side and an older one is never touched.

The router's: `{project}-router` routes `/predict` and sends each trip to the Service of the
version that serves its user cluster, read from the traffic assignment at run time, so moving
traffic never needs a new manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from {{ cookiecutter.package }}.artifacts.names import ReleaseNames

VERSION_LABEL = "app.kubernetes.io/version"


@dataclass(frozen=True)
class Shape:
    """What makes one online deployment of the base manifests distinct from another."""

    name: str
    labels: dict[str, str]
    image: str
    env: list[dict[str, str]]
    path: str
    path_type: str = "Prefix"
    args: list[str] | None = None  # None: the base's (the version's own server)
    container: str | None = None


def _shaped(document: dict[str, Any], shape: Shape) -> dict[str, Any]:
    document["metadata"]["name"] = shape.name
    document["metadata"]["labels"] = shape.labels
    kind = document["kind"]
    if kind == "Deployment":
        spec = document["spec"]
        spec["selector"]["matchLabels"] = shape.labels
        spec["template"]["metadata"]["labels"] = shape.labels
        container = spec["template"]["spec"]["containers"][0]
        container["image"] = shape.image
        container["env"] = shape.env
        if shape.args is not None:
            container["args"] = shape.args
        if shape.container is not None:
            container["name"] = shape.container
    elif kind == "Service":
        document["spec"]["selector"] = shape.labels
    elif kind == "HorizontalPodAutoscaler":
        document["spec"]["scaleTargetRef"]["name"] = shape.name
    elif kind == "PodDisruptionBudget":
        document["spec"]["selector"]["matchLabels"] = shape.labels
    elif kind == "Ingress":
        for rule in document["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                path["path"] = shape.path
                path["pathType"] = shape.path_type
                path["backend"]["service"]["name"] = shape.name
    return document


def version_shape(names: ReleaseNames) -> Shape:
    return Shape(
        name=names.deployment_name,
        labels={"app.kubernetes.io/name": names.project, VERSION_LABEL: names.version},
        image=names.image,
        env=[
            {"name": "ARTIFACT_ROOT", "value": names.artifact_root},
            {"name": "MODEL_VERSION", "value": names.version},
        ],
        path=f"/v{names.version}/",
    )


def router_shape(names: ReleaseNames) -> Shape:
    return Shape(
        name=names.router_name,
        labels={"app.kubernetes.io/name": names.project, "app.kubernetes.io/component": "router"},
        image=names.image,
        env=[
            {"name": "ARTIFACT_ROOT", "value": names.artifact_root},
            # A version's server is its Service, `{project}-v{x-y-z}`, in this namespace.
            {"name": "UPSTREAM_URL", "value": "http://{deployment}"},
        ],
        path="/predict",
        path_type="Exact",
        args=["python3", "-m", "{{ cookiecutter.package }}.serving.router"],
        container="router",
    )


def _base(base: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    return [
        yaml.safe_load((base / resource).read_text()) for resource in kustomization["resources"]
    ]


def render(names: ReleaseNames, base: Path) -> list[dict[str, Any]]:
    return [_shaped(document, version_shape(names)) for document in _base(base)]


def render_router(names: ReleaseNames, base: Path) -> list[dict[str, Any]]:
    """The router, running the image of `names.version` (the newest release, usually)."""
    return [_shaped(document, router_shape(names)) for document in _base(base)]


def write(names: ReleaseNames, base: Path, out_dir: Path, router: bool = False) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ("router.yaml" if router else f"{names.version}.yaml")
    manifests = render_router(names, base) if router else render(names, base)
    path.write_text(yaml.safe_dump_all(manifests, sort_keys=False))
    return path
