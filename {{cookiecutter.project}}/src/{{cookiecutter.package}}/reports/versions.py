"""`inv versions`: every version known to an environment and what exists for each."""

from __future__ import annotations

from packaging.version import InvalidVersion, Version

from {{ cookiecutter.package }}.artifacts import models, traffic
from {{ cookiecutter.package }}.artifacts.code import read_code, verify_code
from {{ cookiecutter.package }}.artifacts.data_sources import describe
from {{ cookiecutter.package }}.artifacts.names import WORKFLOWS
from {{ cookiecutter.package }}.artifacts.store import StoreError
from {{ cookiecutter.package }}.artifacts.tracking import scored_on
from {{ cookiecutter.package }}.artifacts.traffic import format_clusters
from {{ cookiecutter.package }}.errors import UserError
from {{ cookiecutter.package }}.ml import MAIN_METRIC
from {{ cookiecutter.package }}.ml.schema import dropped_rows
from {{ cookiecutter.package }}.release import evidence, image
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.sweep_records import sweeping, swept
from {{ cookiecutter.package }}.release.traffic_moves import live_versions
from {{ cookiecutter.package }}.release.workflows import model_released
from {{ cookiecutter.package }}.reports import tables

PREFIXES = ("code/", "models/", "workflows/", "releases/", "predictions/", "schedules/")
BEFORE_METRICS = ("version", "image", "code", "features")
AFTER_METRICS = ("workflows", "schedules", "predictions", "traffic", "verdict", "released")


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


def metrics_of(ctx: ReleaseContext) -> dict[str, float]:
    metadata = _metadata(ctx)
    if metadata is None:
        return {}
    return {k: float(v) for k, v in metadata.get("metrics", {}).items()}


def _metadata(ctx: ReleaseContext) -> dict | None:
    """The model's metadata; None when there is none or it cannot be read (`released`
    then says what is wrong)."""
    try:
        return models.read_metadata(ctx.store, ctx.names) if model_released(ctx) else None
    except StoreError:
        return None


def released_state(ctx: ReleaseContext) -> str:
    """`yes` only when the release record exists and the model and the code are the bytes
    recorded: an altered or missing part shows here, not a reassuring `yes`."""
    names, store = ctx.names, ctx.store
    if not store.exists(names.release_record_key):
        return "-"
    gone = swept(ctx, names.version)
    if gone is not None:  # `inv gc` removed its model object: nothing to verify
        return f"swept {gone['swept_at'][:10]}"
    going = sweeping(ctx, names.version)
    if going is not None:  # a sweep began (and may have been killed): never serves again
        return f"being swept {going['started_at'][:10]}"
    damaged = []
    for part, verify in (("model", models.verify), ("code", verify_code)):
        try:
            verify(store, names)
        except StoreError:
            damaged.append(part)
    metadata = _metadata(ctx)  # the features it was trained on, pinned or its own
    features = str(metadata["feature_version"]) if metadata else names.feature_version
    try:
        if ctx.feature_store.exists(features):
            ctx.feature_store.verify(features)
    except StoreError:
        damaged.append("features")
    return f"ALTERED ({', '.join(damaged)})" if damaged else "yes"


OTHER_TEST_SET = "other test set"


def with_change(value: float | None, previous: float | None, same_test_set: bool = True) -> str:
    """`1.471` for the first version with the metric, `1.612 (+0.141)` after it; no change
    between versions evaluated on different test trips (`1.286 (other test set)`): an
    error measured on other trips says nothing about which model is better."""
    if value is None:
        return "-"
    if previous is None:
        return f"{value:.4g}"
    if not same_test_set:
        return f"{value:.4g} ({OTHER_TEST_SET})"
    return f"{value:.4g} ({value - previous:+.3g})"


def test_set_of(ctx: ReleaseContext) -> str:
    """What the version's metrics were measured on (`tracking.scored_on`)."""
    metadata = _metadata(ctx)
    return scored_on(metadata) if metadata else ""


def row(ctx: ReleaseContext) -> dict[str, str]:
    names, store = ctx.names, ctx.store
    metadata = _metadata(ctx)
    feature_version = metadata["feature_version"] if metadata else names.feature_version
    # Asked of the engine: on dev/prod these are Kubeflow Pipelines' pipeline versions.
    workflows = [w for w in WORKFLOWS if ctx.engine.registered(names, w)]
    schedules = ctx.engine.schedules(names)
    runs = ctx.predictions.runs(names.version)
    image_state = image.state(ctx)
    try:
        code = read_code(store, names)
    except StoreError:
        code = None
    return {
        "version": names.version,
        "image": "yes" if image_state.exists else "-",
        # The wheel a version runs with locally (its image's twin), by content hash.
        "code": f"sha256:{code.wheel_sha256[:12]}" if code else "-",
        "features": feature_version if ctx.feature_store.exists(feature_version) else "-",
        "workflows": ",".join(workflows) or "-",
        "schedules": ",".join(f"{s.workflow}:{'on' if s.enabled else 'off'}" for s in schedules)
        or "-",
        "predictions": f"{len(runs)} (last {runs[-1]})" if runs else "-",
        "released": released_state(ctx),
        # What only some engines tell (Vertex AI: each template and its newest run).
        "engine": ctx.engine.details(names) or "-",
    }


def traffic_standing(ctx: ReleaseContext) -> dict[str, dict[str, str]]:
    """Each live version's share of the user clusters and its A/B verdict against the
    control (`inv ab`) now."""
    assignment = traffic.current(ctx.store)
    live = live_versions(ctx)
    if not live:
        return {}
    control = evidence.default_control(assignment, live)
    standing = {}
    for version in live:
        share = assignment.share(version) if assignment else 0.0
        clusters = format_clusters(assignment.clusters_of(version)) if assignment else "-"
        if version == control:
            verdict = "control"
        else:
            try:
                verdict = evidence.compare(ctx, version, control).overall.verdict
            except UserError:  # e.g. a source with no outcomes: `inv ab` says which
                verdict = "? (inv ab)"
        standing[version] = {"traffic": f"{share:.0%} ({clusters})", "verdict": verdict}
    return standing


def rows(ctx: ReleaseContext) -> tuple[list[str], list[dict[str, str]]]:
    """The columns and one row per version; every model metric with its change from the
    previous version that has it."""
    contexts = [ctx.for_version(v) for v in known_versions(ctx)]
    metrics = [metrics_of(c) for c in contexts]
    names = sorted({m for found in metrics for m in found}, key=lambda m: (m != MAIN_METRIC, m))
    result: list[dict[str, str]] = []
    previous: dict[str, tuple[float, str]] = {}  # metric -> (value, test set)
    standing = traffic_standing(ctx)
    for version_ctx, found in zip(contexts, metrics, strict=True):
        line = row(version_ctx)
        line.update(standing.get(version_ctx.names.version, {"traffic": "-", "verdict": "-"}))
        test_set = test_set_of(version_ctx)
        for metric in names:
            value, scored = previous.get(metric, (None, test_set))
            line[metric] = with_change(found.get(metric), value, scored == test_set)
        previous.update({metric: (value, test_set) for metric, value in found.items()})
        result.append(line)
    engine = ["engine"] if any(line["engine"] != "-" for line in result) else []
    return [*BEFORE_METRICS, *names, *AFTER_METRICS, *engine], result


def table(ctx: ReleaseContext) -> str:
    """The versions table as plain text (what scripts and tests read)."""
    return tables.plain(*rows(ctx))


def show(ctx: ReleaseContext) -> None:
    """The versions table: `rich` on a terminal, plain text otherwise."""
    tables.show(*rows(ctx), title=f"versions on {ctx.env}")


def where(ctx: ReleaseContext) -> None:
    """Per version, where its features and its batch predictions are."""
    found = []
    for version in known_versions(ctx):
        version_ctx = ctx.for_version(version)
        metadata = _metadata(version_ctx)
        # A released model records where its features were read from.
        features = (
            str(metadata["features"])
            if metadata
            else ctx.feature_store.location(version_ctx.names.feature_version)
        )
        feature_version = str(metadata["feature_version"]) if metadata else version
        try:
            if ctx.feature_store.exists(feature_version):
                ctx.feature_store.verify(feature_version)
        except StoreError as error:  # what the features are is part of where they are
            features += f" ALTERED: {error}"
        found.append(
            {
                "version": version,
                "features": features,
                "data": data_lineage(metadata.get("data") if metadata else None),
                "predictions": ctx.predictions.location(version),
            }
        )
    columns = ("version", "features", "data", "predictions")
    tables.show(columns, found, title=f"where, on {ctx.env}")


def data_lineage(lineage: dict | None) -> str:
    """What a version's features were read from: the source, and each file with its sha256
    (files) or the snapshot (BigQuery), and the rows."""
    if not lineage:
        return "-"
    parts = [describe(lineage)]
    parts += [f"{f['path']} sha256:{f['sha256'][:16]}" for f in lineage.get("files", [])]
    if lineage.get("snapshot"):
        parts.append(f"snapshot {lineage['snapshot']}")
    parts.append(f"{lineage.get('rows_valid', lineage.get('rows'))} rows")
    dropped = dropped_rows(lineage.get("rows_invalid") or {})
    return "; ".join([*parts, dropped] if dropped else parts)
