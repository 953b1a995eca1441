"""What an artifact store is (`ArtifactStore`) and how it refuses (`StoreError`,
`AlreadyExistsError`), apart from any one store: `artifacts.store` (a local folder, and
`open_store`) and `artifacts.gcs_store` (a bucket) both implement it."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass

from {{ cookiecutter.package }}.errors import UserError


@dataclass(frozen=True)
class Held:
    """Something a version occupies, for retention (`release.retention`): an object of the
    artifact store (`key`, with its content's sha256), or a table or rows of BigQuery."""

    address: str
    bytes: int
    sha256: str = ""
    key: str = ""


class StoreError(UserError, RuntimeError):
    """The store cannot be reached or refused an operation."""


class AlreadyExistsError(StoreError):
    """A create-only write found the key already there: released artifacts never change."""


class ArtifactStore(ABC):
    root: str

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def read(self, key: str) -> bytes: ...

    @abstractmethod
    def write(self, key: str, data: bytes) -> None:
        """Create `key`; raise AlreadyExistsError when it exists."""

    @abstractmethod
    def replace(self, key: str, data: bytes) -> None:
        """Create or overwrite `key` (mutable records only, never released artifacts)."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Keys under `prefix`, sorted."""

    @abstractmethod
    def check(self) -> None:
        """Raise StoreError when the store cannot be reached."""

    @abstractmethod
    def size(self, key: str) -> int:
        """The bytes of `key`; StoreError when it does not exist."""

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Remove `key` (retention only, `release.retention`); False when it was not there."""

    def uri(self, key: str) -> str:
        return f"{self.root.rstrip('/')}/{key}"

    def remove_debris(self, prefixes: Iterable[str]) -> int:
        """Remove what killed writers left under `prefixes`; how many. A GCS upload is
        atomic and leaves nothing."""
        return 0

    def held(self, key: str, sha256: str = "") -> Held:
        """`key` as retention lists it: its size, and its content's sha256 (read unless
        given, e.g. from a manifest that records it)."""
        digest = sha256 or hashlib.sha256(self.read(key)).hexdigest()
        return Held(self.uri(key), self.size(key), digest, key)

    def read_text(self, key: str) -> str:
        return self.read(key).decode()

    def write_text(self, key: str, text: str) -> None:
        self.write(key, text.encode())
