"""One artifact store for a local directory and for `gs://` buckets.

Released artifacts are immutable. `write` is create-only everywhere: a local write goes to a
hidden temporary file in the same directory and is renamed into place (never a half-written
file at the final path), and a GCS write carries `if_generation_match=0`, so the server
refuses to replace an existing object. Only mutable records (schedule states) use `replace`.
"""

from __future__ import annotations

import os
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

from {{ cookiecutter.package }}.errors import UserError


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

    def uri(self, key: str) -> str:
        return f"{self.root.rstrip('/')}/{key}"

    def read_text(self, key: str) -> str:
        return self.read(key).decode()

    def write_text(self, key: str, text: str) -> None:
        self.write(key, text.encode())


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs (the owner of a temporary file, say)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_dead_partials(folder: Path) -> None:
    """Delete the temporary files that killed writers left in `folder` (their pid is in the
    name: `.NAME.PID.RANDOM.partial`); a live writer's file is left alone."""
    for leftover in folder.glob(".*.partial"):
        pid = leftover.name.rsplit(".", 3)[-3] if leftover.name.count(".") >= 4 else ""
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            leftover.unlink(missing_ok=True)


class LocalStore(ArtifactStore):
    def __init__(self, root: str | Path) -> None:
        self.path = Path(root).resolve()
        self.root = str(self.path)

    def _path(self, key: str) -> Path:
        path = (self.path / key).resolve()
        if self.path not in path.parents:
            raise StoreError(f"key {key!r} points outside the store {self.root}")
        return path

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def read(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise StoreError(f"{self.uri(key)} does not exist") from None

    def _write_atomically(self, key: str, data: bytes, create_only: bool) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_dead_partials(path.parent)
        fd, temp = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".partial"
        )
        try:
            with os.fdopen(fd, "wb") as handle:
                # mkstemp makes 0600 files; artifacts are read by other users too (the
                # image's uid on a shared root), so they get the usual umask-based mode.
                os.fchmod(handle.fileno(), 0o666 & ~_UMASK)
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            if create_only:
                # link() fails when the target exists: an atomic create-only rename.
                try:
                    os.link(temp, path)
                except FileExistsError:
                    raise AlreadyExistsError(
                        f"{self.uri(key)} already exists; released artifacts are immutable"
                    ) from None
            else:
                os.replace(temp, path)
        finally:
            if os.path.exists(temp):
                os.unlink(temp)

    def write(self, key: str, data: bytes) -> None:
        self._write_atomically(key, data, create_only=True)

    def replace(self, key: str, data: bytes) -> None:
        self._write_atomically(key, data, create_only=False)

    def list(self, prefix: str = "") -> list[str]:
        if not self.path.is_dir():
            return []
        keys = []
        for path in self.path.rglob("*"):
            key = path.relative_to(self.path).as_posix()
            # Hidden names are temporary files of writes in flight, never artifacts.
            hidden = any(part.startswith(".") for part in key.split("/"))
            if path.is_file() and not hidden and key.startswith(prefix):
                keys.append(key)
        return sorted(keys)

    def check(self) -> None:
        probe = self.path if self.path.exists() else self.path.parent
        if not os.access(probe, os.W_OK):
            raise StoreError(f"artifact root {self.root} is not writable")


class GCSStore(ArtifactStore):
    """`gs://bucket/prefix` through google-cloud-storage; credentials from the environment
    (ADC or workload identity). STORAGE_EMULATOR_HOST points it at an emulator."""

    def __init__(self, root: str) -> None:
        from google.cloud import storage

        self.root = root.rstrip("/")
        bucket_name, _, prefix = self.root.removeprefix("gs://").partition("/")
        self.prefix = f"{prefix}/" if prefix else ""
        if os.environ.get("STORAGE_EMULATOR_HOST"):
            from google.auth.credentials import AnonymousCredentials

            client = storage.Client(credentials=AnonymousCredentials(), project="emulator")
        else:
            client = storage.Client()
        self.bucket = client.bucket(bucket_name)

    def _blob(self, key: str):
        return self.bucket.blob(self.prefix + key)

    def exists(self, key: str) -> bool:
        return bool(self._blob(key).exists())

    def read(self, key: str) -> bytes:
        from google.api_core.exceptions import NotFound

        try:
            return bytes(self._blob(key).download_as_bytes())
        except NotFound:
            raise StoreError(f"{self.uri(key)} does not exist") from None

    def write(self, key: str, data: bytes) -> None:
        from google.api_core.exceptions import PreconditionFailed

        try:
            # Generation 0 means "no live object": the server refuses to overwrite.
            self._blob(key).upload_from_string(data, if_generation_match=0)
        except PreconditionFailed:
            raise AlreadyExistsError(
                f"{self.uri(key)} already exists; released artifacts are immutable"
            ) from None

    def replace(self, key: str, data: bytes) -> None:
        self._blob(key).upload_from_string(data)

    def list(self, prefix: str = "") -> list[str]:
        blobs = self.bucket.client.list_blobs(self.bucket, prefix=self.prefix + prefix)
        return sorted(blob.name[len(self.prefix) :] for blob in blobs)

    def check(self) -> None:
        from google.api_core.exceptions import GoogleAPIError

        try:
            if not self.bucket.exists():
                raise StoreError(f"bucket {self.bucket.name} does not exist")
        except GoogleAPIError as error:
            raise StoreError(f"cannot reach {self.root}: {error}") from error


def open_store(root: str) -> ArtifactStore:
    """The store behind an artifact root: `gs://...` or a local directory."""
    if root.startswith("gs://"):
        return GCSStore(root)
    if "://" in root:
        raise StoreError(f"unsupported artifact root {root!r}: use a local path or gs://")
    return LocalStore(root)
