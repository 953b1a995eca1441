"""What a step's function is called with (`StepRun`): its release, parameters, artifact
paths and the stores it uses. The step table names it as a type only, so the table, how a
step is run (`step_runs`) and its lineage (`step_lineage`) import it, and it none of them.
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any

from {{ cookiecutter.package }}.artifacts.data_sources import DataSource
from {{ cookiecutter.package }}.artifacts.feature_store import FeatureStore
from {{ cookiecutter.package }}.artifacts.names import ReleaseNames
from {{ cookiecutter.package }}.pipelines import steps


class StepRun:
    """What a step's function is called with: its release, parameters and artifact paths,
    and the stores the `storage` parameter names (opened on first use)."""

    def __init__(
        self, parameters: dict[str, Any], paths: dict[str, str], values: dict[str, Any]
    ) -> None:
        self.parameters, self.paths, self.values = parameters, paths, values
        self.names: ReleaseNames = ReleaseNames.from_json(parameters["release"])

    def __getitem__(self, name: str) -> Any:
        """A pipeline parameter, or the returned value of an earlier step."""
        return self.values[name] if name in self.values else self.parameters[name]

    def json(self, name: str) -> Any:
        return json.loads(self[name])

    def path(self, name: str) -> str:
        return self.paths[name]

    @cached_property
    def storage(self) -> str:
        return str(self.parameters.get("storage", "{}"))

    @cached_property
    def feature_store(self) -> FeatureStore:
        return steps.feature_store_of(self.names, self.storage)

    @cached_property
    def data_source(self) -> DataSource:
        return steps.data_source_of(
            self.names, self.storage, self.parameters["n_trips"], self.parameters["seed"]
        )

    @property
    def invalid_share(self) -> float:
        return steps.max_invalid_share(self.storage)
