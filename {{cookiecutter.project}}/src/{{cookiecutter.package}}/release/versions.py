"""`inv versions`: every version known to an environment and what exists for each."""

from __future__ import annotations

from dataclasses import replace

from packaging.version import InvalidVersion, Version

from {{ cookiecutter.package }}.artifacts import models
from {{ cookiecutter.package }}.artifacts.code import read_code
from {{ cookiecutter.package }}.artifacts.names import WORKFLOWS
from {{ cookiecutter.package }}.release import image
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.workflows import model_released

PREFIXES = ("code/", "models/", "workflows/", "releases/", "predictions/", "schedules/")
COLUMNS = (
    "version",
    "image",
    "code",
    "features",
    "model (mae)",
    "workflows",
    "schedules",
    "predictions",
    "released",
)


def known_versions(ctx: ReleaseContext) -> list[str]:
    found = {ctx.names.version}
    for prefix in PREFIXES:
        for key in ctx.store.list(prefix):
            found.add(key[len(prefix) :].split("/")[0].removesuffix(".json"))
    valid = []
    for version in found:
        try:
            valid.append((Version(version), version))
        except InvalidVersion:
            continue
    return [version for _, version in sorted(valid)]


def row(ctx: ReleaseContext) -> dict[str, str]:
    names, store = ctx.names, ctx.store
    metadata = models.read_metadata(store, names) if model_released(ctx) else None
    feature_version = metadata["feature_version"] if metadata else names.feature_version
    features_key = replace(names, feature_version=feature_version).features_key("train")
    # Asked of the engine: on dev/prod these are Kubeflow Pipelines' pipeline versions.
    workflows = [w for w in WORKFLOWS if ctx.engine.registered(names, w)]
    schedules = ctx.engine.schedules(names)
    predictions = store.list(names.predictions_prefix)
    image_state = image.state(ctx)
    code = read_code(store, names)
    return {
        "version": names.version,
        "image": "yes" if image_state.exists else "-",
        # The wheel a version runs with locally (its image's twin), by content hash.
        "code": f"sha256:{code.wheel_sha256[:12]}" if code else "-",
        "features": feature_version if store.exists(features_key) else "-",
        "model (mae)": f"{metadata['metrics']['mae']:.3f}" if metadata else "-",
        "workflows": ",".join(workflows) or "-",
        "schedules": ",".join(f"{s.workflow}:{'on' if s.enabled else 'off'}" for s in schedules)
        or "-",
        "predictions": (
            f"{len(predictions)} (last {predictions[-1].rsplit('/', 1)[-1]})"
            if predictions
            else "-"
        ),
        "released": "yes" if store.exists(names.release_record_key) else "-",
    }


def table(ctx: ReleaseContext) -> str:
    rows = [row(ctx.for_version(v)) for v in known_versions(ctx)]
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in COLUMNS}
    lines = ["  ".join(c.ljust(widths[c]) for c in COLUMNS)]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in COLUMNS) for r in rows]
    return "\n".join(line.rstrip() for line in lines)
