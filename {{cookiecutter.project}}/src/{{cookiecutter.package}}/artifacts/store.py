"""One artifact store for a local directory and for `gs://` buckets.

Released artifacts are immutable. `write` is create-only everywhere: a local write goes to a
hidden temporary file in the same directory and is renamed into place (never a half-written
file at the final path), and a GCS write carries `if_generation_match=0`, so the server
refuses to replace an existing object. Only mutable records (schedule states) use `replace`.

The interface (`ArtifactStore`, its errors) is `artifacts.store_interface`, which both this
module's `LocalStore` and `artifacts.gcs_store`'s `GCSStore` implement; `open_store` picks
one by the root. Everything else imports them from here.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from {{ cookiecutter.package }}.artifacts.store_interface import (
    AlreadyExistsError,
    ArtifactStore,
    Held,
    StoreError,
)

__all__ = [
    "AlreadyExistsError",
    "ArtifactStore",
    "Held",
    "LocalStore",
    "StoreError",
    "build_folder",
    "open_store",
    "pid_alive",
    "read_record",
    "remove_dead_partials",
]


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


def build_folder(
    final: Path, build: Callable[[Path], None], complete: Callable[[Path], bool]
) -> Path:
    """A folder (an environment) built whole or not at all: `build` fills a hidden
    `.NAME.PID.partial` beside `final`, which is renamed into place when it returns, so a
    killed build never leaves something that passes for one. What dead builds left is
    removed first; when another process completed the folder meanwhile, its folder stays."""
    if complete(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_partials(final.parent)
    partial = final.parent / f".{final.name.lstrip('.')}.{os.getpid()}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        build(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if final.exists():  # a dead build's leftovers, an older build, or another process won
        if complete(final):
            shutil.rmtree(partial)
            return final
        shutil.rmtree(final)
    os.rename(partial, final)
    return final


def remove_dead_partials(folder: Path) -> None:
    """Delete what killed writers left in `folder`: hidden `.NAME[.RANDOM].PID.partial`
    files or folders whose process is gone. A live writer's is left alone."""
    for leftover in folder.glob(".*.partial"):
        pid = leftover.name.rsplit(".", 2)[-2]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
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
        remove_dead_partials(path.parent)
        fd, temp = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=f".{os.getpid()}.partial"
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
                    if path.is_dir():  # not an artifact: a write that cannot be done
                        raise StoreError(f"{self.uri(key)} is a folder, not a file") from None
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

    def remove_debris(self, prefixes: Iterable[str]) -> int:
        """The hidden temporary files of writes killed between their rename and their
        clean-up (`.NAME.RANDOM.PID.partial`) in the folders under `prefixes`: only those
        whose writer is gone, never a live writer's (`remove_dead_partials`)."""
        removed = 0
        for prefix in prefixes:
            top = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.path
            if not top.is_dir():
                continue
            for folder in [top, *(p for p in top.rglob("*") if p.is_dir())]:
                before = len(list(folder.glob(".*.partial")))
                remove_dead_partials(folder)
                removed += before - len(list(folder.glob(".*.partial")))
        return removed

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

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise StoreError(f"{self.uri(key)} does not exist") from None

    def delete(self, key: str) -> bool:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        for folder in path.parents:  # the folders the key leaves empty go with it
            if folder == self.path or any(folder.iterdir()):
                break
            folder.rmdir()
        return True

    def check(self) -> None:
        # Writes create missing folders: what matters is the nearest folder that exists.
        existing = next(p for p in (self.path, *self.path.parents) if p.exists())
        if not existing.is_dir():
            raise StoreError(f"artifact root {self.root} cannot be created: {existing} is a file")
        if not os.access(existing, os.W_OK):
            where = "" if existing == self.path else f" (nearest existing folder {existing})"
            raise StoreError(f"artifact root {self.root} is not writable{where}")


def read_record(store: ArtifactStore, key: str, what: str) -> dict[str, Any] | None:
    """The JSON record at `key` (a lineage, a run's record); None when there is none, and
    one line naming the file when it is not `what` it should be."""
    if not store.exists(key):
        return None
    try:
        return dict(json.loads(store.read_text(key)))
    except ValueError as error:
        raise StoreError(f"{store.uri(key)} is not {what}: {error}") from None


def open_store(root: str, timeout_s: float | None = None) -> ArtifactStore:
    """The store behind an artifact root: `gs://...` or a local directory.

    `timeout_s` bounds remote calls (default STORE_TIMEOUT_SECONDS, else 60 s).
    """
    if root.startswith("gs://"):
        from {{ cookiecutter.package }}.artifacts.gcs_store import DEFAULT_TIMEOUT_S, GCSStore

        default = float(os.environ.get("STORE_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_S))
        return GCSStore(root, timeout_s if timeout_s is not None else default)
    if "://" in root:
        raise StoreError(f"unsupported artifact root {root!r}: use a local path or gs://")
    return LocalStore(root)
