"""Online deployments, rendered from the base manifests of deploy/base.

One version's: Deployment, Service and Ingress are named `{project}-v{version with dashes}`,
select only that version's pods, run that version's image, load that version's model and
route `/v{version}/` to it, so versions deploy side by side and an older one is never touched.

The router's: `{project}-router` routes `/predict` and sends each trip to the Service of the
version that serves its user cluster, read from the traffic assignment at run time, so moving
traffic never needs a new manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from {{ cookiecutter.package }}.artifacts.names import ReleaseNames

VERSION_LABEL = "app.kubernetes.io/version"


def _versioned(document: dict[str, Any], names: ReleaseNames) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": names.project, VERSION_LABEL: names.version}
    document["metadata"]["name"] = names.deployment_name
    document["metadata"]["labels"] = labels
    kind = document["kind"]
    if kind == "Deployment":
        spec = document["spec"]
        spec["selector"]["matchLabels"] = labels
        spec["template"]["metadata"]["labels"] = labels
        container = spec["template"]["spec"]["containers"][0]
        container["image"] = names.image
        container["env"] = [
            {"name": "ARTIFACT_ROOT", "value": names.artifact_root},
            {"name": "MODEL_VERSION", "value": names.version},
        ]
    elif kind == "Service":
        document["spec"]["selector"] = labels
    elif kind == "Ingress":
        for rule in document["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                path["path"] = f"/v{names.version}/"
                path["backend"]["service"]["name"] = names.deployment_name
    return document


def _router(document: dict[str, Any], names: ReleaseNames) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": names.project, "app.kubernetes.io/component": "router"}
    document["metadata"]["name"] = names.router_name
    document["metadata"]["labels"] = labels
    kind = document["kind"]
    if kind == "Deployment":
        spec = document["spec"]
        spec["selector"]["matchLabels"] = labels
        spec["template"]["metadata"]["labels"] = labels
        container = spec["template"]["spec"]["containers"][0]
        container["name"] = "router"
        container["image"] = names.image
        container["args"] = ["python3", "-m", "{{ cookiecutter.package }}.serving.router"]
        container["env"] = [
            {"name": "ARTIFACT_ROOT", "value": names.artifact_root},
            # A version's server is its Service, `{project}-v{x-y-z}`, in this namespace.
            {"name": "UPSTREAM_URL", "value": "http://{deployment}"},
        ]
    elif kind == "Service":
        document["spec"]["selector"] = labels
    elif kind == "Ingress":
        for rule in document["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                path["path"] = "/predict"
                path["pathType"] = "Exact"
                path["backend"]["service"]["name"] = names.router_name
    return document


def _base(base: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    return [
        yaml.safe_load((base / resource).read_text()) for resource in kustomization["resources"]
    ]


def render(names: ReleaseNames, base: Path) -> list[dict[str, Any]]:
    return [_versioned(document, names) for document in _base(base)]


def render_router(names: ReleaseNames, base: Path) -> list[dict[str, Any]]:
    """The router, running the image of `names.version` (the newest release, usually)."""
    return [_router(document, names) for document in _base(base)]


def write(names: ReleaseNames, base: Path, out_dir: Path, router: bool = False) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ("router.yaml" if router else f"{names.version}.yaml")
    manifests = render_router(names, base) if router else render(names, base)
    path.write_text(yaml.safe_dump_all(manifests, sort_keys=False))
    return path
