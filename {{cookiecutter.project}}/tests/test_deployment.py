"""Per-version online deployment manifests, validated against the Kubernetes schemas."""

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from {{ cookiecutter.package }}.artifacts.names import ReleaseNames
from {{ cookiecutter.package }}.release import deployment
from {{ cookiecutter.package }}.version import PROJECT_ROOT

BASE = PROJECT_ROOT / "deploy" / "base"


def names(version: str) -> ReleaseNames:
    return ReleaseNames("taxi", version, version, "gs://bucket", "eu-docker.pkg.dev/p/r")


@pytest.mark.parametrize("version", ["0.1.0", "1.2.0rc1"])
def test_manifests_are_valid_kubernetes(version: str) -> None:
    for manifest in deployment.render(names(version), BASE):
        kubernetes_validate.validate(manifest, kubernetes_validate.latest_version(), strict=True)


def test_each_version_gets_its_own_objects_image_model_and_path(tmp_path: Path) -> None:
    path = deployment.write(names("0.2.0"), BASE, tmp_path)
    assert path == tmp_path / "0.2.0.yaml"
    manifests = {m["kind"]: m for m in yaml.safe_load_all(path.read_text())}
    assert set(manifests) == {
        "Deployment",
        "Service",
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    assert {m["metadata"]["name"] for m in manifests.values()} == {"taxi-v0-2-0"}
    pod = manifests["Deployment"]["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["image"] == "eu-docker.pkg.dev/p/r/taxi:0.2.0"
    assert {e["name"]: e["value"] for e in container["env"]} == {
        "ARTIFACT_ROOT": "gs://bucket",
        "MODEL_VERSION": "0.2.0",
    }
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    selector = manifests["Deployment"]["spec"]["selector"]["matchLabels"]
    assert manifests["Service"]["spec"]["selector"] == selector == pod["metadata"]["labels"]
    assert selector["app.kubernetes.io/version"] == "0.2.0"
    path_rule = manifests["Ingress"]["spec"]["rules"][0]["http"]["paths"][0]
    assert path_rule["path"] == "/v0.2.0/"
    assert path_rule["backend"]["service"]["name"] == "taxi-v0-2-0"
    # Scraped by Prometheus, scaled by the autoscaler, never drained whole.
    assert pod["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(container["ports"][0]["containerPort"]),
        "prometheus.io/path": "/metrics",
    }
    assert "replicas" not in manifests["Deployment"]["spec"]  # the autoscaler's to set
    target = manifests["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "taxi-v0-2-0")
    assert manifests["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector


def test_two_versions_never_share_an_object() -> None:
    first = deployment.render(names("0.1.0"), BASE)
    second = deployment.render(names("0.2.0"), BASE)
    assert {(m["kind"], m["metadata"]["name"]) for m in first}.isdisjoint(
        {(m["kind"], m["metadata"]["name"]) for m in second}
    )


def test_the_router_is_valid_kubernetes_and_routes_predict_to_itself(tmp_path: Path) -> None:
    path = deployment.write(names("0.2.0"), BASE, tmp_path, router=True)
    assert path == tmp_path / "router.yaml"
    manifests = {m["kind"]: m for m in yaml.safe_load_all(path.read_text())}
    for manifest in manifests.values():
        kubernetes_validate.validate(manifest, kubernetes_validate.latest_version(), strict=True)
    assert {m["metadata"]["name"] for m in manifests.values()} == {"taxi-router"}
    container = manifests["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][-1].endswith(".serving.router")
    assert {e["name"]: e["value"] for e in container["env"]} == {
        "ARTIFACT_ROOT": "gs://bucket",
        "UPSTREAM_URL": "http://{deployment}",
    }
    rule = manifests["Ingress"]["spec"]["rules"][0]["http"]["paths"][0]
    assert (rule["path"], rule["backend"]["service"]["name"]) == ("/predict", "taxi-router")
    # Never the selector of a version's pods: the router and the versions are apart.
    version_selector = deployment.render(names("0.2.0"), BASE)[0]["spec"]["selector"]
    assert manifests["Deployment"]["spec"]["selector"] != version_selector
