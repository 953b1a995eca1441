"""The one home of features: a feature store, per feature version, create-only.

Every reader and writer of features (the pipeline steps, the release plan, `inv versions`)
goes through `open_feature_store(cfg.feature_store, artifact_root)`. Which store is
configuration (`conf/feature_store/*.yaml`, a Hydra `_target_`):

- `ParquetFeatureStore` (the default, offline): `features/{feature_version}/{split}.parquet`
  in the artifact store, written create-only like every released artifact;
- `artifacts.bigquery.BigQueryFeatureStore`: a table per feature version, or one table with a
  `feature_version` column.

A feature version, once complete, is never rewritten: `write` raises AlreadyExistsError, and
a release whose features exist reuses them.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from {{ cookiecutter.package }}.artifacts.names import features_key
from {{ cookiecutter.package }}.artifacts.store import AlreadyExistsError, open_store
from {{ cookiecutter.package }}.targets import instantiate

if TYPE_CHECKING:
    import pandas as pd

PARQUET = "{{ cookiecutter.package }}.artifacts.feature_store.ParquetFeatureStore"


class FeatureStore(Protocol):
    def location(self, feature_version: str, split: str = "train") -> str:
        """Where the features of `feature_version` are (or would be), for people to read."""
        ...

    def exists(self, feature_version: str, split: str = "train") -> bool:
        """True only for complete features: a write killed half way is not there."""
        ...

    def write(self, feature_version: str, frame: pd.DataFrame, split: str = "train") -> None:
        """Create-only: AlreadyExistsError when the feature version is complete already."""
        ...

    def read(self, feature_version: str, split: str = "train") -> pd.DataFrame:
        """The frame as written, rows in the order written."""
        ...


class ParquetFeatureStore:
    """Features as Parquet objects in the artifact store (local folder or gs://)."""

    def __init__(self, artifact_root: str) -> None:
        self.store = open_store(artifact_root)

    def location(self, feature_version: str, split: str = "train") -> str:
        return f"{self.store.root.rstrip('/')}/{features_key(feature_version, split)}"

    def exists(self, feature_version: str, split: str = "train") -> bool:
        return self.store.exists(features_key(feature_version, split))

    def write(self, feature_version: str, frame: pd.DataFrame, split: str = "train") -> None:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        self.store.write(features_key(feature_version, split), buffer.getvalue())

    def read(self, feature_version: str, split: str = "train") -> pd.DataFrame:
        import pandas as pd

        return pd.read_parquet(io.BytesIO(self.store.read(features_key(feature_version, split))))


def open_feature_store(spec: Mapping[str, Any] | None, artifact_root: str) -> FeatureStore:
    store: FeatureStore = instantiate(spec, PARQUET, artifact_root=artifact_root)
    return store


__all__ = ["AlreadyExistsError", "FeatureStore", "ParquetFeatureStore", "open_feature_store"]
