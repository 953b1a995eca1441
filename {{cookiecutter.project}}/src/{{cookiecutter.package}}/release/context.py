"""Everything a release step needs for one version in one environment, built once."""

from __future__ import annotations

import copy
import json
from functools import cached_property
from pathlib import Path

from omegaconf import DictConfig

from {{ cookiecutter.package }}.artifacts.data_sources import DataSource, open_data_source
from {{ cookiecutter.package }}.artifacts.feature_store import FeatureStore, open_feature_store
from {{ cookiecutter.package }}.artifacts.names import ReleaseNames, names_for
from {{ cookiecutter.package }}.artifacts.predictions import PredictionSink, open_predictions
from {{ cookiecutter.package }}.artifacts.store import ArtifactStore, StoreError, open_store
from {{ cookiecutter.package }}.config import to_plain
from {{ cookiecutter.package }}.engines import Engine, create_engine
from {{ cookiecutter.package }}.engines.version_env import VersionEnvironments
from {{ cookiecutter.package }}.errors import ReleaseError, UserError
from {{ cookiecutter.package }}.pipelines.openlineage_runs import Lineage, RunRef, settings_of
from {{ cookiecutter.package }}.pipelines.step_table import parameters_of
from {{ cookiecutter.package }}.release.git import Git
from {{ cookiecutter.package }}.version import PROJECT_ROOT


def release_names(cfg: DictConfig, version: str | None) -> ReleaseNames:
    """`names_for`, with a bad version refused as a release error (one line)."""
    try:
        return names_for(cfg, version)
    except ValueError as error:
        raise ReleaseError(str(error)) from error


class EnvironmentServices:
    """What every version's context in one environment shares: one store, one engine, one
    feature store and predictions sink, one repository. Each is opened on first use."""

    def __init__(self, cfg: DictConfig, artifact_root: str, project_root: Path) -> None:
        self.cfg, self.artifact_root, self.project_root = cfg, artifact_root, project_root
        # The run the workflow runs started now belong to (a release), for their lineage.
        self.lineage_parent: RunRef | None = None

    @cached_property
    def lineage(self) -> Lineage:
        """Where OpenLineage events go (`conf/lineage/`); one per environment, so a backend
        that failed once is not tried again by this command."""
        try:
            return Lineage(settings_of(self.cfg, self.project_root))
        except UserError as error:
            raise ReleaseError(str(error)) from error

    @cached_property
    def store(self) -> ArtifactStore:
        try:
            timeout = float(self.cfg.env.get("store_timeout_seconds", 60))
            return open_store(self.artifact_root, timeout_s=timeout)
        except StoreError as error:
            raise ReleaseError(str(error)) from error

    @cached_property
    def storage(self) -> dict:
        """Where data comes from and goes to (`conf/data_source`, `conf/feature_store`,
        `conf/predictions`, and whether batch runs predict in shadow), as the pipeline steps
        receive it."""
        plain = to_plain(self.cfg)
        source = dict(plain.get("data_source") or {})
        for key in ("path", "batch_path", "outcomes_path"):
            # A task runs in another folder than `inv`: a relative local path is the project's.
            value = source.get(key)
            if value and "://" not in str(value) and not Path(str(value)).is_absolute():
                source[key] = str(self.project_root / str(value))
        return {
            "feature_store": plain.get("feature_store"),
            "predictions": plain.get("predictions"),
            "data_source": source or None,
            "max_invalid_share": float(plain["data"].get("max_invalid_share", 0.01)),
            "batch_rows": int(plain["data"].get("batch_rows", 500_000)),
            "train_rows": plain["data"].get("train_rows"),
            "shadow": bool(plain["traffic"].get("shadow", True)),
        }

    @cached_property
    def data_source(self) -> DataSource:
        try:
            return open_data_source(self.storage["data_source"], self.artifact_root)
        except (StoreError, ValueError) as error:
            raise ReleaseError(str(error)) from error

    @cached_property
    def feature_store(self) -> FeatureStore:
        try:
            return open_feature_store(self.storage["feature_store"], self.artifact_root)
        except StoreError as error:
            raise ReleaseError(str(error)) from error

    def released_data_source(self, version: str) -> DataSource:
        """The data source `version` was released with (its compiled inference workflow's):
        where the outcomes of the trips it predicted are, whatever this checkout's config
        says. This config's source for a version without a workflow here."""
        key = release_names(self.cfg, version).workflow_key("inference")
        if not self.store.exists(key):
            return self.data_source
        storage = json.loads(parameters_of(self.store.read_text(key)).get("storage") or "{}")
        if not storage.get("data_source"):
            return self.data_source
        try:
            return open_data_source(storage["data_source"], self.artifact_root)
        except (StoreError, ValueError) as error:
            raise ReleaseError(f"the data source of {version}: {error}") from error

    @cached_property
    def predictions(self) -> PredictionSink:
        try:
            return open_predictions(self.storage["predictions"], self.artifact_root)
        except StoreError as error:
            raise ReleaseError(str(error)) from error

    @cached_property
    def git(self) -> Git:
        return Git(self.project_root)

    @cached_property
    def environments(self) -> VersionEnvironments:
        """Each version's own Python environment on this machine (its code, from the store)."""
        return VersionEnvironments(
            self.store, self.project_root / ".version-envs", checkout_version=str(self.cfg.version)
        )

    @cached_property
    def engine(self) -> Engine:
        return create_engine(self.cfg, self.store, self.project_root, self.environments)


class ReleaseContext(EnvironmentServices):
    """One version in one environment: its names and config, and the environment's services
    (inherited: every version's context shares them, see `for_version`)."""

    def __init__(self, cfg: DictConfig, names: ReleaseNames, project_root: Path = PROJECT_ROOT):
        super().__init__(cfg, names.artifact_root, project_root)
        self.names = names

    @classmethod
    def create(cls, cfg: DictConfig, version: str | None = None) -> ReleaseContext:
        return cls(cfg=cfg, names=release_names(cfg, version))

    @property
    def env(self) -> str:
        return str(self.cfg.env.name)

    def names_of(self, version: str) -> ReleaseNames:
        """The names of another version in this environment."""
        return release_names(self.cfg, version)

    def for_version(self, version: str) -> ReleaseContext:
        """Another version in this environment. Only the names differ: the services opened so
        far (store, engine, ...) are the environment's, and shared."""
        other = copy.copy(self)
        other.names = self.names_of(version)
        return other

    def plain_config(self) -> dict:
        return to_plain(self.cfg)
