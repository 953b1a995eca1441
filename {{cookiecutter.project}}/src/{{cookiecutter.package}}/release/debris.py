"""What `inv gc` removes that belongs to no version's release: objects no record names.

Two releases (or two attempts of one) can race to publish a version's model, code or
features. Each writes its content-addressed objects, then its commit record create-only
(`metadata.json`, `code.json`, a features `manifest.json`); the loser's objects stay behind,
named by nothing. So do the parts of a feature write killed before its manifest.

An object is unnamed when its folder's commit record exists and does not name it. Once a
commit record exists no release can name another object of that folder (the record never
changes), so only the grace period protects anything: an unnamed object goes when its
commit record is older than `retention.grace_days`, with an audit record like every other
removal. Before a commit record exists nothing in its folder is touched: a release that
might still name those objects may be running. (So whatever a release adds to one of these
folders after its commit record must be named by that record.)
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from {{ cookiecutter.package }}.artifacts.store import AlreadyExistsError, ArtifactStore, Held
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.sweep_records import AUDIT


def _read(store: ArtifactStore, key: str) -> dict[str, Any] | None:
    try:
        return dict(json.loads(store.read_text(key))) if store.exists(key) else None
    except ValueError:
        return None  # an unreadable record names nothing we can trust: touch nothing


def _folders(ctx: ReleaseContext, version: str) -> list[tuple[str, str, set[str], str]]:
    """(folder, commit record, the keys it names, when it was made) of each committed
    folder of `version`."""
    store, names = ctx.store, ctx.names_of(version)
    found = []
    metadata = _read(store, names.model_metadata_key)
    if metadata is not None:
        named = {str(metadata.get(k)) for k in ("model_key", "serving_key") if k in metadata}
        found.append((f"models/{version}/", names.model_metadata_key, named,
                      str(metadata.get("created_at", ""))))  # fmt: skip
    record = _read(store, names.code_record_key)
    if record is not None:
        named = {str(record.get("wheel")), str(record.get("requirements"))}
        found.append((f"code/{version}/", names.code_record_key, named,
                      str(record.get("created_at", ""))))  # fmt: skip
    for key in store.list(f"features/{version}/"):
        if key.endswith("/manifest.json") and (manifest := _read(store, key)) is not None:
            named = {str(part["key"]) for part in manifest.get("parts", [])}
            found.append((key.rsplit("/", 1)[0] + "/", key, named,
                          str(manifest.get("created_at", ""))))  # fmt: skip
    return found


def unnamed(ctx: ReleaseContext, version: str, now: datetime, grace_days: float) -> list[Held]:
    """The objects of `version`'s committed folders that their commit record does not name,
    committed more than `grace_days` ago."""
    found = []
    for folder, commit, named, made in _folders(ctx, version):
        try:
            old = datetime.fromisoformat(made) + timedelta(days=grace_days) <= now
        except ValueError:
            old = False  # no time on the record: never old enough
        if not old:
            continue
        for key in ctx.store.list(folder):
            if key != commit and key not in named:
                found.append(ctx.store.held(key))
    return found


def remove_unnamed(ctx: ReleaseContext, version: str, held: list[Held], at: str) -> None:
    """Remove them, each with its audit record (create-only: a rerun finds it)."""
    for item in held:
        ctx.store.delete(item.key)
        record = {"version": version, "kind": "unnamed", "uri": item.address,
                  "sha256": item.sha256, "bytes": item.bytes, "removed_at": at,
                  "why": "named by no commit record, older than the grace period"}  # fmt: skip
        with contextlib.suppress(AlreadyExistsError):
            ctx.store.write_text(
                f"{AUDIT}{version}/unnamed-{item.sha256[:16]}.json", json.dumps(record)
            )


def freed_bytes(folder: Path) -> int:
    """The bytes removing `folder` frees: each file once, however many hard links it has
    inside, and none of a file that is also linked from outside (uv's cache links the
    packages of every environment it installs)."""
    sizes: dict[tuple[int, int], tuple[int, int]] = {}
    seen: Counter[tuple[int, int]] = Counter()
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            stat = path.stat()
            inode = (stat.st_dev, stat.st_ino)
            seen[inode] += 1
            sizes[inode] = (stat.st_size, stat.st_nlink)
    return sum(size for inode, (size, links) in sizes.items() if seen[inode] >= links)
