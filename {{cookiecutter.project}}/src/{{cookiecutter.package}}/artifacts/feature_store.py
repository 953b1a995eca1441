"""The one home of features: a feature store, per feature version, create-only.

Every reader and writer of features (the pipeline steps, the release plan, `inv versions`)
goes through `open_feature_store(cfg.feature_store, artifact_root)`. Which store is
configuration (`conf/feature_store/*.yaml`, a Hydra `_target_`):

- `ParquetFeatureStore` (the default, offline): the parts of a feature version as Parquet
  objects in the artifact store, `features/{feature_version}/{split}/`, and its manifest;
- `artifacts.bigquery.BigQueryFeatureStore`: a table per feature version, or one table with a
  `feature_version` column.

A feature version is written in parts, a batch of rows each, so that no step holds all of
them at once (`writer`), and read back part by part (`read_batches`). Once complete it is
never rewritten: its commit point comes after its last part (the manifest, create-only),
`writer` raises AlreadyExistsError for a complete version, and a release whose features
exist reuses them. A write killed before its commit point leaves parts that nothing reads.
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from {{ cookiecutter.package }}.artifacts.names import (
    features_key,
    features_part_key,
    single_features_key,
)
from {{ cookiecutter.package }}.artifacts.store import (
    AlreadyExistsError,
    Held,
    StoreError,
    open_store,
)
from {{ cookiecutter.package }}.targets import instantiate

if TYPE_CHECKING:
    import pandas as pd

PARQUET = "{{ cookiecutter.package }}.artifacts.feature_store.ParquetFeatureStore"


class FeatureWriter(Protocol):
    def write(self, frame: pd.DataFrame) -> None:
        """Add the next part (rows in order)."""
        ...

    def write_file(self, path: Path) -> None:
        """Add the next part from a Parquet file of it (written once, never decoded again
        where the store keeps Parquet)."""
        ...

    def commit(self) -> int:
        """Make the parts the complete feature version (its commit point); returns its
        rows. AlreadyExistsError when another writer committed it first."""
        ...


class FeatureStore(Protocol):
    def location(self, feature_version: str, split: str = "train") -> str:
        """Where the features of `feature_version` are (or would be), for people to read."""
        ...

    def exists(self, feature_version: str, split: str = "train") -> bool:
        """True only for complete features: a write killed half way is not there."""
        ...

    def verify(self, feature_version: str, split: str = "train") -> None:
        """Raise StoreError naming the first object of the feature version that is not what
        was committed (a release checks what it reuses before it writes anything)."""
        ...

    def writer(self, feature_version: str, split: str = "train") -> FeatureWriter:
        """A new write of the version; AlreadyExistsError when it is complete already."""
        ...

    def read_batches(self, feature_version: str, split: str = "train") -> Iterator[pd.DataFrame]:
        """The rows as written, in order, a part at a time."""
        ...

    def write(self, feature_version: str, frame: pd.DataFrame, split: str = "train") -> None:
        """Write a whole frame as the feature version (one part): `writer`, then commit."""
        ...

    def holdings(self, feature_version: str) -> list[Held]:
        """Everything the feature version occupies, every split, its commit point first (a
        removal cut short leaves no complete version with rows missing)."""
        ...

    def remove(self, feature_version: str, held: Held) -> None:
        """Remove one of `holdings` (retention only); a no-op when it is gone already."""
        ...

    def read(self, feature_version: str, split: str = "train") -> pd.DataFrame:
        """The whole feature version as one frame (for data that fits one)."""
        ...


def concatenated(parts: Iterator[pd.DataFrame]) -> pd.DataFrame:
    """The parts of a feature version as one frame (for data that fits one)."""
    import pandas as pd

    frames = list(parts)
    if len(frames) == 1:
        return frames[0]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


class ParquetFeatureStore:
    """Features as Parquet objects in the artifact store (local folder or gs://): the parts
    of each write attempt, and the manifest (parts, rows, sha256) that commits one."""

    def __init__(self, artifact_root: str) -> None:
        self.store = open_store(artifact_root)

    def location(self, feature_version: str, split: str = "train") -> str:
        return self.store.uri(features_key(feature_version, split))

    def exists(self, feature_version: str, split: str = "train") -> bool:
        return self.store.exists(features_key(feature_version, split)) or self.store.exists(
            single_features_key(feature_version, split)
        )

    def writer(self, feature_version: str, split: str = "train") -> ParquetFeatureWriter:
        if self.exists(feature_version, split):
            raise AlreadyExistsError(
                f"features {feature_version} already exist at "
                f"{self.location(feature_version, split)}; feature versions are immutable"
            )
        return ParquetFeatureWriter(self.store, feature_version, split)

    def write(self, feature_version: str, frame: pd.DataFrame, split: str = "train") -> None:
        writer = self.writer(feature_version, split)
        writer.write(frame)
        writer.commit()

    def read(self, feature_version: str, split: str = "train") -> pd.DataFrame:
        return concatenated(self.read_batches(feature_version, split))

    def manifest(self, feature_version: str, split: str = "train") -> dict[str, Any]:
        key = features_key(feature_version, split)
        try:
            return dict(json.loads(self.store.read_text(key)))
        except ValueError as error:
            raise StoreError(f"{self.store.uri(key)} is not a features manifest: {error}") from None

    def verify(self, feature_version: str, split: str = "train") -> None:
        """The manifest is what was committed (its own digest of its parts list), and each
        part the bytes it records: the error names the file that does not match."""
        key = features_key(feature_version, split)
        if not self.store.exists(key):
            return  # a single-file version of an older template: nothing records its sha256
        manifest = self.manifest(feature_version, split)
        recorded = manifest.get("parts_sha256")
        if recorded is not None and recorded != parts_digest(manifest["parts"]):
            raise StoreError(
                f"{self.store.uri(key)} was changed after it was written (its parts no longer "
                "match its own digest): refusing features that are not what was released"
            )
        for part in manifest["parts"]:
            data = self.store.read(part["key"])
            if hashlib.sha256(data).hexdigest() != part["sha256"]:
                raise StoreError(
                    f"{self.store.uri(part['key'])} does not match its sha256 in "
                    f"{self.store.uri(key)}: it was changed after it was written"
                )

    def holdings(self, feature_version: str) -> list[Held]:
        keys = self.store.list(features_key(feature_version).rsplit("/", 2)[0] + "/")
        commits = [k for k in keys if k.endswith("/manifest.json")]
        known = {}  # a part's sha256 from its manifest: no need to read it again
        for key in commits:
            manifest = json.loads(self.store.read_text(key))
            known.update({part["key"]: part["sha256"] for part in manifest.get("parts", [])})
        others = [k for k in keys if k not in commits]
        return [self.store.held(key, known.get(key, "")) for key in commits + others]

    def remove(self, feature_version: str, held: Held) -> None:
        self.store.delete(held.key)

    def read_batches(self, feature_version: str, split: str = "train") -> Iterator[pd.DataFrame]:
        import pandas as pd

        single = single_features_key(feature_version, split)
        manifest = features_key(feature_version, split)
        if not self.store.exists(manifest) and self.store.exists(single):
            yield pd.read_parquet(io.BytesIO(self.store.read(single)))
            return
        for part in self.manifest(feature_version, split)["parts"]:
            data = self.store.read(part["key"])
            if hashlib.sha256(data).hexdigest() != part["sha256"]:
                raise StoreError(
                    f"{self.store.uri(part['key'])} does not match its sha256 in the manifest "
                    f"of features {feature_version}: it was changed after it was written"
                )
            yield pd.read_parquet(io.BytesIO(data))


class ParquetFeatureWriter:
    def __init__(self, store: Any, feature_version: str, split: str) -> None:
        self.store, self.feature_version, self.split = store, feature_version, split
        self.attempt = uuid.uuid4().hex[:12]
        self.parts: list[dict[str, Any]] = []

    def write(self, frame: pd.DataFrame) -> None:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        self._store(buffer.getvalue(), len(frame))

    def write_file(self, path: Path) -> None:
        import pyarrow.parquet as pq

        self._store(path.read_bytes(), pq.read_metadata(path).num_rows)

    def _store(self, data: bytes, rows: int) -> None:
        key = features_part_key(self.feature_version, self.split, self.attempt, len(self.parts))
        self.store.write(key, data)
        self.parts.append({"key": key, "rows": rows, "sha256": hashlib.sha256(data).hexdigest()})

    def commit(self) -> int:
        rows = sum(part["rows"] for part in self.parts)
        manifest = {
            "feature_version": self.feature_version,
            "split": self.split,
            "rows": rows,
            "parts": self.parts,
            "parts_sha256": parts_digest(self.parts),  # the manifest's own check
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self.store.write_text(
            features_key(self.feature_version, self.split), json.dumps(manifest, indent=1)
        )
        return rows


def parts_digest(parts: list[dict[str, Any]]) -> str:
    """One sha256 of a manifest's parts (keys, rows, sha256s), recorded in the manifest."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def open_feature_store(spec: Mapping[str, Any] | None, artifact_root: str) -> FeatureStore:
    store: FeatureStore = instantiate(spec, PARQUET, artifact_root=artifact_root)
    return store


__all__ = [
    "AlreadyExistsError",
    "FeatureStore",
    "FeatureWriter",
    "ParquetFeatureStore",
    "concatenated",
    "open_feature_store",
]
