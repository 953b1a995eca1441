"""One version's online deployment: the base manifests of deploy/base, made version-specific.

Deployment, Service and Ingress are named `{project}-v{version with dashes}`, select only
that version's pods, run that version's image, load that version's model and route
`/v{version}/` to it, so versions deploy side by side and an older one is never touched.
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


def render(names: ReleaseNames, base: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    return [
        _versioned(yaml.safe_load((base / resource).read_text()), names)
        for resource in kustomization["resources"]
    ]


def write(names: ReleaseNames, base: Path, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{names.version}.yaml"
    path.write_text(yaml.safe_dump_all(render(names, base), sort_keys=False))
    return path
