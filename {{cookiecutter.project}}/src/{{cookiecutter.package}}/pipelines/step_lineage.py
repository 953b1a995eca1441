"""A step's run as OpenLineage events: START, then COMPLETE with what it read and wrote, or
FAIL with the user's one-line error (`pipelines.openlineage_runs` sends them).

What a step read and wrote comes from its entry in the step table, so a new step emits
without new code:
- its artifacts (`inputs`, `outputs`): files passed between steps, named by their path, so
  one step's output is the next one's input;
- the store's datasets it names in `reads` and `writes`, resolved here by kind: `trips`
  (each file with its sha256, or the BigQuery table with its snapshot and SQL, with the
  declared schema and the shaping's row counts), `features` (a feature version), `model`
  (the released model, with the project's model facet), `predictions` (a version's
  predictions, with column lineage from the features to the ETA).

Dataset names follow OpenLineage's naming: `file` and an absolute path, `gs://bucket` and a
key, `bigquery` and `project.dataset.table`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attr
from openlineage.client.event_v2 import InputDataset, OutputDataset, set_producer
from openlineage.client.facet_v2 import (
    DatasetFacet,
    InputDatasetFacet,
    RunFacet,
    column_lineage_dataset,
    dataset_version_dataset,
    output_statistics_output_dataset,
    schema_dataset,
    sql_job,
)
from openlineage.client.facet_v2 import (
    data_quality_metrics_input_dataset as quality,
)

from {{ cookiecutter.package }}.artifacts import models
from {{ cookiecutter.package }}.artifacts.data_sources import read_lineage
from {{ cookiecutter.package }}.artifacts.store import open_store
from {{ cookiecutter.package }}.pipelines import steps
from {{ cookiecutter.package }}.pipelines.openlineage_runs import PACKAGE, Lineage, job_run

if TYPE_CHECKING:
    from {{ cookiecutter.package }}.pipelines.openlineage_runs import RunningJob
    from {{ cookiecutter.package }}.pipelines.step_context import StepRun
    from {{ cookiecutter.package }}.pipelines.step_table import Step

# -- the project's own facets (described in deploy/openlineage/facets.json) ----------------


@attr.define
class ModelDatasetFacet(DatasetFacet):
    """A released model: its version, main metric and value, hyperparameters and sha256."""

    version: str
    mainMetric: str  # noqa: N815 - OpenLineage's field names are camelCase
    metrics: dict[str, float]
    hyperparameters: dict[str, Any]
    sha256: str
    featureVersion: str  # noqa: N815


@attr.define
class ShapingInputDatasetFacet(InputDatasetFacet):
    """What the declared schema kept of the rows read: for the step's whole read."""

    rowsRead: int  # noqa: N815
    rowsValid: int  # noqa: N815
    invalidRows: dict[str, int]  # noqa: N815 - "column: reason" -> rows
    inputs: int


@attr.define
class ShardRunFacet(RunFacet):
    """Which shard of an inference run this step's run is."""

    shard: int
    shards: int


def _ours(lineage: Lineage, facet: Any) -> Any:
    facet._schemaURL = lineage.facet_schema(type(facet).__name__)
    return facet


# -- names ---------------------------------------------------------------------------------


def address(location: str) -> tuple[str, str]:
    """OpenLineage's (namespace, name) of a location the project prints."""
    if location.startswith("bigquery://"):
        return "bigquery", location.removeprefix("bigquery://").split("[", 1)[0]
    for prefix in ("gs://", "/gcs/"):  # /gcs/: a kfp task's mount of a bucket
        if location.startswith(prefix):
            bucket, _, key = location.removeprefix(prefix).partition("/")
            return f"gs://{bucket}", key
    if "://" in location:
        scheme, _, rest = location.partition("://")
        host, _, path = rest.partition("/")
        return f"{scheme}://{host}", path
    return "file", str(Path(location).resolve())


# -- datasets by kind ------------------------------------------------------------------------


def _schema(columns: list[tuple[str, str, str]]) -> Any:
    return schema_dataset.SchemaDatasetFacet(
        fields=[
            schema_dataset.SchemaDatasetFacetFields(name=n, type=t, description=d or None)
            for n, t, d in columns
        ]
    )


def trip_columns(labelled: bool) -> list[tuple[str, str, str]]:
    """The declared schema of raw trips (`ml.schema`): name, type, meaning."""
    from {{ cookiecutter.package }}.ml.schema import COLUMN_NOTES, OPTIONAL_COLUMNS, trip_schema

    types = {"int64": "INTEGER", "float64": "DOUBLE"}
    found = [
        (name, "STRING" if str(c.dtype).startswith("str") else types.get(str(c.dtype), "DOUBLE"))
        for name, c in trip_schema(labelled).columns.items()
    ]
    found += [(name, "INTEGER or STRING") for name in OPTIONAL_COLUMNS]
    return [(name, kind, COLUMN_NOTES.get(name, "")) for name, kind in found]


def feature_columns(with_target: bool) -> list[tuple[str, str, str]]:
    from {{ cookiecutter.package }}.ml import TARGET
    from {{ cookiecutter.package }}.ml.features import FEATURE_COLUMNS

    found = [("trip_id", "STRING", ""), ("user_cluster", "INTEGER", "")]
    found += [(name, "DOUBLE", "") for name in FEATURE_COLUMNS]
    return found + ([(TARGET, "DOUBLE", "the trip's duration, minutes")] if with_target else [])


def trips_read(lineage: Lineage, read: dict[str, Any], shaped: dict[str, Any]) -> list[Any]:
    """The inputs a read of trips names (`read`: a data source's lineage or a batch's read
    record), each with the declared schema and the shaping's counts (`shaped`)."""
    files = read.get("files") or []
    sources = [(f["path"], f.get("sha256"), f.get("rows")) for f in files] or [
        (str(read.get("location", "trips")), read.get("snapshot"), read.get("rows"))
    ]
    invalid = dict(shaped.get("rows_invalid") or {})
    # Shaping counts a null as "<column>: empty"; its counts are the whole read's, so they
    # are an input's own only when the read had one input.
    column_metrics = {
        label.split(": ")[0]: quality.ColumnMetrics(nullCount=int(count))
        for label, count in invalid.items()
        if label.endswith(": empty")
    }
    inputs = []
    for location, version, rows in sources:
        if read.get("source") == "bigquery":
            namespace, name = "bigquery", location
        elif read.get("source") == "synthetic":
            namespace, name = "synthetic", location
        else:
            namespace, name = address(location)
        facets: dict[str, Any] = {"schema": _schema(trip_columns(labelled=True))}
        if version:
            facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
                datasetVersion=str(version)
            )
        input_facets: dict[str, Any] = {
            "dataQualityMetrics": quality.DataQualityMetricsInputDatasetFacet(
                columnMetrics=column_metrics if len(sources) == 1 else {},
                rowCount=int(rows) if rows is not None else None,
            )
        }
        if "rows_valid" in shaped:
            input_facets[f"{PACKAGE}_shaping"] = _ours(
                lineage,
                ShapingInputDatasetFacet(
                    rowsRead=int(read.get("kept", read.get("rows")) or 0),
                    rowsValid=int(shaped["rows_valid"]),
                    invalidRows={str(k): int(v) for k, v in invalid.items()},
                    inputs=len(sources),
                ),
            )
        inputs.append(InputDataset(namespace, name, facets=facets, inputFacets=input_facets))
    return inputs


def _features(lineage: Lineage, run: StepRun, output: bool) -> list[Any]:
    names = run.names
    namespace, name = address(run.feature_store.location(names.feature_version))
    facets: dict[str, Any] = {
        "schema": _schema(feature_columns(with_target=True)),
        "version": dataset_version_dataset.DatasetVersionDatasetFacet(
            datasetVersion=names.feature_version
        ),
    }
    if not output:
        return [InputDataset(namespace, name, facets=facets)]
    record = read_lineage(names.artifact_root, names.feature_version) or {}
    statistics = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
        rowCount=record.get("rows_valid")
    )
    return [
        OutputDataset(namespace, name, facets=facets, outputFacets={"outputStatistics": statistics})
    ]


def _model(lineage: Lineage, run: StepRun, output: bool) -> list[Any]:
    names = run.names
    metadata = models.read_metadata(open_store(names.artifact_root), names)
    namespace, name = address(str(metadata["model"]))
    facets: dict[str, Any] = {
        "version": dataset_version_dataset.DatasetVersionDatasetFacet(
            datasetVersion=str(metadata["model_sha256"])
        )
    }
    if not output:
        return [InputDataset(namespace, name, facets=facets)]
    config = dict(metadata.get("config") or {})
    facets[f"{PACKAGE}_model"] = _ours(
        lineage,
        ModelDatasetFacet(
            version=names.version,
            mainMetric=str(metadata["main_metric"]),
            metrics={k: float(v) for k, v in dict(metadata["metrics"]).items()},
            hyperparameters=dict(config.get("model") or {}),
            sha256=str(metadata["model_sha256"]),
            featureVersion=names.feature_version,
        ),
    )
    return [OutputDataset(namespace, name, facets=facets)]


def _predictions(run: StepRun, features: tuple[str, str] | None) -> list[Any]:
    """A version's predictions; with the features file they were made from, the column
    lineage of each output column."""
    from {{ cookiecutter.package }}.artifacts.predictions import SERVED
    from {{ cookiecutter.package }}.ml import TARGET
    from {{ cookiecutter.package }}.ml.features import FEATURE_COLUMNS

    names = run.names
    namespace, name = address(steps.predictions_of(names, run.storage).location(names.version))
    columns = [
        ("trip_id", "STRING", ""),
        ("user_cluster", "INTEGER", ""),
        (TARGET, "DOUBLE", "the predicted ETA, minutes"),
        ("model_version", "STRING", ""),
        (SERVED, "BOOLEAN", "the trip's user cluster is served by this version"),
    ]
    facets: dict[str, Any] = {"schema": _schema(columns)}
    if features is not None:
        source_namespace, source_name = features

        def fields(columns: list[str], kind: str) -> Any:
            return column_lineage_dataset.Fields(
                inputFields=[
                    column_lineage_dataset.InputField(
                        namespace=source_namespace, name=source_name, field=column
                    )
                    for column in columns
                ],
                transformationType=kind,
            )

        facets["columnLineage"] = column_lineage_dataset.ColumnLineageDatasetFacet(
            fields={
                "trip_id": fields(["trip_id"], "IDENTITY"),
                "user_cluster": fields(["user_cluster"], "IDENTITY"),
                TARGET: fields(list(FEATURE_COLUMNS), "TRANSFORMATION"),
                SERVED: fields([SERVED], "IDENTITY"),
            }
        )
    return [OutputDataset(namespace, name, facets=facets)]


def _trips(running: RunningJob, run: StepRun, result: Any, step: Step) -> list[Any]:
    """The trips a step read: a feature version's lineage record (training), or the batch
    record the step wrote for its run (inference); a query read is the job's SQL."""
    if "batch" in step.outputs:
        record = json.loads(Path(run.path("batch")).read_text())
        read = dict(record.get("read") or {})
    elif str(result).startswith("reused"):
        return []  # the features existed: nothing was read
    else:
        record = read = read_lineage(run.names.artifact_root, run.names.feature_version) or {}
    if read.get("sql"):
        running.job_facets["sql"] = sql_job.SQLJobFacet(query=str(read["sql"]), dialect="bigquery")
    return trips_read(running.lineage, read, record)


def _artifacts(run: StepRun, step: Step) -> tuple[list[Any], list[Any]]:
    """The step's artifacts in and out, as files: each step's output is the next one's
    input, under the same name."""
    inputs = [InputDataset(*address(run.path(a))) for a in step.artifact_inputs]
    outputs = [OutputDataset(*address(run.path(a))) for a in step.outputs]
    return inputs, outputs


def resolve(lineage: Lineage, running: RunningJob, run: StepRun, step: Step, result: Any) -> None:
    """Fill `running`'s inputs and outputs once the step has run."""
    inputs, outputs = _artifacts(run, step)
    readers: dict[str, Callable[[], list[Any]]] = {
        "trips": lambda: _trips(running, run, result, step),
        "features": lambda: _features(lineage, run, output=False),
        "model": lambda: _model(lineage, run, output=False),
    }
    features_file = address(run.path("features")) if "features" in run.paths else None
    writers: dict[str, Callable[[], list[Any]]] = {
        "features": lambda: _features(lineage, run, output=True),
        "model": lambda: _model(lineage, run, output=True),
        "predictions": lambda: _predictions(run, features_file),
    }
    for kind in step.reads:
        inputs += readers[kind]()
    for kind in step.writes:
        outputs += writers[kind]()
    running.inputs, running.outputs = inputs, outputs


def traced(step: Step, workflow: str, run: StepRun, call: Callable[[], Any]) -> Any:
    """Run `call` (the step) between its START and its COMPLETE or FAIL event."""
    lineage = Lineage.from_json(run.parameters.get("lineage"))
    if not lineage.enabled:
        return call()
    set_producer(lineage.producer())
    job = f"{run.names.airflow_dag_id(workflow)}.{step.name}"  # type: ignore[arg-type]
    with job_run(lineage, job, "TASK", lineage.parent) as running:
        shards = int(run.parameters.get("shards", 1))
        if step.fan_out and shards > 1:
            running.run_facets[f"{PACKAGE}_shard"] = _ours(
                lineage, ShardRunFacet(shard=int(run["shard"]), shards=shards)
            )
        result = call()
        try:
            resolve(lineage, running, run, step, result)
        except Exception as error:  # noqa: BLE001 - lineage never fails a step
            print(f"lineage: what {step.name} read and wrote is unknown ({error})")
    return result
