"""The naming contract: every versioned resource name, formatted here and nowhere else.

Store keys are relative to the environment's artifact root; `uri()` makes them absolute.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from packaging.version import InvalidVersion, Version

from {{ cookiecutter.package }}.errors import UserError, shown
from {{ cookiecutter.package }}.version import PROJECT

Workflow = Literal["training", "inference"]
WORKFLOWS: tuple[Workflow, ...] = ("training", "inference")


class InvalidVersionError(UserError, ValueError):
    """A version (or another name that becomes part of a key) that is not well formed."""


MAX_VERSION_CHARS = 64
MAX_VERSION_DIGITS = 12  # per number: tools such as uv keep each in 64 bits


def check_version(version: str) -> str:
    """Return `version` when it is a normalised public PEP 440 version, else raise."""
    if len(version) > MAX_VERSION_CHARS or any(
        len(number) > MAX_VERSION_DIGITS for number in re.findall(r"\d+", version)
    ):
        raise InvalidVersionError(
            f"invalid version {shown(version)}: at most {MAX_VERSION_CHARS} characters and "
            f"{MAX_VERSION_DIGITS} digits per number"
        )
    try:
        parsed = Version(version)
    except InvalidVersion:
        raise InvalidVersionError(
            f"invalid version {shown(version)}: not a PEP 440 version"
        ) from None
    if parsed.local is not None or str(parsed) != version:
        raise InvalidVersionError(
            f"invalid version {shown(version)}: write it in normal form ({parsed.public!s})"
        )
    return version


RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_run_id(run_id: str) -> str:
    """A run id becomes a file name in the store: letters, digits, `.`, `_`, `-` only."""
    if not RUN_ID.match(run_id) or ".." in run_id:
        raise InvalidVersionError(
            f"invalid run id {shown(run_id)}: use up to 128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return run_id


SHARD_SUFFIX = re.compile(r"(\.shard-\d+-of-\d+)?(\.part-\d+)?$")


def shard_run_id(run_id: str, shard: int, shards: int) -> str:
    """The name of one shard's predictions of a run: the run id itself when the run has
    one shard, else `{run_id}.shard-{i}-of-{n}` (what `run_of` takes back to the run)."""
    return run_id if shards <= 1 else f"{run_id}.shard-{shard}-of-{shards}"


def part_run_id(run_id: str, part: int, parts: int) -> str:
    """The name of one part of a run's (or shard's) predictions: the id itself when it has
    one part, else `{run_id}.part-{n:05d}`."""
    return run_id if parts <= 1 else f"{run_id}.part-{part:05d}"


def run_of(name: str) -> str:
    """The run a predictions file or record belongs to, its shard's and part's suffixes
    taken off."""
    return SHARD_SUFFIX.sub("", name)


def scheduled_run_id(end: datetime, interval: str) -> str:
    """The id of a run started without one (a recurring run of Kubeflow or Airflow): its
    interval's end, which is its schedule time, and a hash of the interval, so that every
    shard of the run, each its own task, names the same run."""
    digest = hashlib.sha256(interval.encode()).hexdigest()[:6]
    return f"{end.astimezone(UTC):%Y%m%dT%H%M%S}-{digest}"


def new_run_id() -> str:
    """A run id that sorts by time: `20261129T031500-3f9a2c`."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class ReleaseNames:
    project: str
    version: str
    feature_version: str
    artifact_root: str
    registry: str = ""

    def __post_init__(self) -> None:
        check_version(self.version)
        check_version(self.feature_version)

    # -- the release identity as one value (pipeline parameter, step arguments) ----------
    def to_json(self) -> str:
        """What a pipeline step needs to know of its release, as one JSON string."""
        return json.dumps(
            {
                "project": self.project,
                "version": self.version,
                "feature_version": self.feature_version,
                "artifact_root": self.artifact_root,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> ReleaseNames:
        fields = json.loads(text)
        return cls(
            fields["project"], fields["version"], fields["feature_version"], fields["artifact_root"]
        )

    # -- source control and image ------------------------------------------------------
    @property
    def git_tag(self) -> str:
        return f"v{self.version}"

    @property
    def image_repository(self) -> str:
        """Where the image lives; with no registry, the builder's local storage."""
        registry = self.registry.rstrip("/") or "localhost"
        return f"{registry}/{self.project}"

    @property
    def image(self) -> str:
        return f"{self.image_repository}:{self.version}"

    def image_for_revision(self, git_sha: str) -> str:
        return f"{self.image_repository}:git-{git_sha[:12]}"

    # -- store keys ---------------------------------------------------------------------
    @property
    def features_prefix(self) -> str:
        return f"features/{self.feature_version}"

    def features_key(self, split: str = "train") -> str:
        return features_key(self.feature_version, split)

    def model_key(self, sha256: str) -> str:
        """Content-addressed: a model object's name says which bytes it holds."""
        return f"models/{self.version}/model-{sha256[:16]}.pkl"

    @property
    def model_metadata_key(self) -> str:
        """Written last, create-only, naming the model object: it makes the model released."""
        return f"models/{self.version}/metadata.json"

    # A version's code: the local analogue of its image. The wheel and the locked
    # requirements sit under a content-addressed folder; code.json, written last and
    # create-only, is what names them.
    @property
    def code_record_key(self) -> str:
        return f"code/{self.version}/code.json"

    def code_key(self, digest: str, filename: str) -> str:
        return f"code/{self.version}/{digest[:16]}/{filename}"

    def code_env_name(self, digest: str) -> str:
        """The folder of the version's local environment built from that code."""
        return f"{self.version}-{digest[:12]}"

    def workflow_key(self, workflow: Workflow) -> str:
        return f"workflows/{self.version}/{workflow}.yaml"

    @property
    def schedules_key(self) -> str:
        return f"schedules/{self.version}.json"

    def predictions_key(self, run_id: str) -> str:
        return predictions_key(self.version, run_id)

    @property
    def predictions_prefix(self) -> str:
        return predictions_prefix(self.version)

    @property
    def release_record_key(self) -> str:
        return f"releases/{self.version}.json"

    @property
    def written_prefixes(self) -> list[str]:
        """Every folder of the store a release of this version writes into: where a killed
        attempt may have left its temporary files (`ArtifactStore.remove_debris`)."""
        v = self.version
        return [
            *(f"{kind}/{v}/" for kind in ("code", "models", "workflows", "runs", "predictions")),
            f"{self.features_prefix}/",
            *("schedules/", "releases/", "traffic/"),
        ]

    def uri(self, key: str) -> str:
        return f"{self.artifact_root.rstrip('/')}/{key}"

    # -- Kubeflow Pipelines and serving --------------------------------------------------
    def pipeline_name(self, workflow: Workflow) -> str:
        return f"{self.project}-{workflow}"

    def airflow_dag_id(self, workflow: Workflow) -> str:
        """`<project>_training__v1_2_0`: Airflow does not version DAGs, so the id does."""
        return f"{self.project.replace('-', '_')}_{workflow}__{version_suffix(self.version)}"

    @property
    def pipeline_version_name(self) -> str:
        return self.version

    def recurring_run_name(self, workflow: Workflow) -> str:
        return f"{self.project}-{workflow}-v{self.version}"

    def adhoc_run_name(self, workflow: Workflow, stamp: str) -> str:
        return f"{self.project}-{workflow}-v{self.version}-adhoc-{stamp}"

    @property
    def endpoint_path(self) -> str:
        return f"/v{self.version}/predict"

    @property
    def deployment_name(self) -> str:
        return f"{self.project}-v{self.version.replace('.', '-')}"

    @property
    def router_name(self) -> str:
        """The one stable online entry point, in front of every live version."""
        return f"{self.project}-router"


def features_key(feature_version: str, split: str = "train") -> str:
    """A feature version's manifest: its parts, rows and sha256, and its commit point."""
    return f"features/{check_version(feature_version)}/{split}/manifest.json"


def features_part_key(feature_version: str, split: str, attempt: str, part: int) -> str:
    """One part of a feature version, named by the write attempt that made it: a killed
    attempt's parts are never a later attempt's."""
    return f"features/{check_version(feature_version)}/{split}/{attempt}-part-{part:05d}.parquet"


def single_features_key(feature_version: str, split: str = "train") -> str:
    """Where feature versions written before parts existed keep their one object."""
    return f"features/{check_version(feature_version)}/{split}.parquet"


def lineage_key(feature_version: str) -> str:
    """What a feature version was built from (data source, files, snapshot, rows, hash):
    in the artifact store, whichever feature store holds the features."""
    return f"lineage/{check_version(feature_version)}.json"


# Outcomes are the data source's; only the synthetic source keeps its own, in the store.
OUTCOMES_COLUMNS = ("trip_id", "eta_minutes", "observed_at")


def synthetic_outcomes_prefix() -> str:
    return "outcomes/synthetic/"


def synthetic_outcomes_key(batch_digest: str) -> str:
    """The true durations of one predicted synthetic batch, named by its trips' digest
    (two versions predicting the same trips share them; nothing else can collide)."""
    return f"{synthetic_outcomes_prefix()}batch-{batch_digest[:16]}.parquet"


def predictions_prefix(version: str) -> str:
    return f"predictions/{check_version(version)}/"


def predictions_key(version: str, run_id: str) -> str:
    return f"{predictions_prefix(version)}{check_run_id(run_id)}.parquet"


def runs_prefix(version: str) -> str:
    return f"runs/{check_version(version)}/"


def run_record_key(version: str, run_id: str) -> str:
    """What one batch-inference run read and wrote: its interval, the files (sha256) or the
    query it read, its rows (`artifacts.prediction_runs`); in the artifact store, whichever
    sink holds the predictions."""
    return f"{runs_prefix(version)}{check_run_id(run_id)}.json"


def version_suffix(version: str) -> str:
    """`1.2.0` -> `v1_2_0`: a version in an identifier (BigQuery table, Airflow DAG id)."""
    return "v" + re.sub(r"[^A-Za-z0-9]", "_", check_version(version))


def bigquery_features_table(split: str, feature_version: str | None = None) -> str:
    """`train_v1_2_0` (a table per feature version) or `train` (a feature_version column)."""
    return f"{split}_{version_suffix(feature_version)}" if feature_version else split


def names_for(cfg, version: str | None = None) -> ReleaseNames:
    """The names of `version` (default: this checkout's) in the config's environment.

    For this checkout's version the feature version is conf/features' (the release version
    unless pinned there). Another version's pin is not in this checkout: its features are
    named by its own version, and its model metadata records the feature version it used.
    """
    release_version = version or str(cfg.version)
    feature_version = (
        str(cfg.features.version) if release_version == str(cfg.version) else release_version
    )
    return ReleaseNames(
        project=str(cfg.project),
        version=release_version,
        feature_version=feature_version,
        artifact_root=str(cfg.env.artifact_root),
        registry=str(cfg.env.registry or ""),
    )


def names_of_model(version: str, artifact_root: str) -> ReleaseNames:
    """The names a process that loads one version's model needs (the server, `inv compare`'s
    scorer): what the image's entry points get from MODEL_VERSION and ARTIFACT_ROOT."""
    return ReleaseNames(
        project=PROJECT,
        version=version,
        feature_version=version,
        artifact_root=artifact_root,
    )
