"""Where a version stands in retention, read by everything that could bring it back.

A sweep writes `retention/sweeping/<version>.json` before its first removal: that record is
the sweep's commit point. From then on the version is on its way out for good: revive,
rollback and every traffic move to it are refused in one line, even when the sweep was
killed half way and `retention/swept/<version>.json` (written after the last removal) is
not there yet. Before the commit point a tombstoned version can still be brought back.

`refuse_unservable` is the check every traffic move runs on the versions it gives clusters
to: not being swept, and its model and code present in the store.
"""

from __future__ import annotations

from typing import Any

from {{ cookiecutter.package }}.artifacts import code, models
from {{ cookiecutter.package }}.artifacts.store import read_record
from {{ cookiecutter.package }}.errors import ReleaseError
from {{ cookiecutter.package }}.release.context import ReleaseContext

TOMBSTONES = "retention/tombstones/"
AUDIT = "retention/audit/"
SWEEPING = "retention/sweeping/"
SWEPT = "retention/swept/"


def tombstone(ctx: ReleaseContext, version: str) -> dict[str, Any] | None:
    return read_record(ctx.store, f"{TOMBSTONES}{version}.json", "a retention tombstone")


def swept(ctx: ReleaseContext, version: str) -> dict[str, Any] | None:
    """The record of `version`'s finished sweep, if it was swept."""
    return read_record(ctx.store, f"{SWEPT}{version}.json", "a sweep record")


def sweeping(ctx: ReleaseContext, version: str) -> dict[str, Any] | None:
    """The commit point of `version`'s sweep, if one has begun (finished or not)."""
    return read_record(ctx.store, f"{SWEEPING}{version}.json", "a sweep record")


def refuse_if_swept(ctx: ReleaseContext, version: str, doing: str) -> None:
    """Refuse to bring back a version whose sweep has begun: its model or features are gone,
    or going."""
    found = swept(ctx, version)
    if found is not None:
        raise ReleaseError(
            f"cannot {doing} {version}: it was swept by `inv gc` on {found['swept_at'][:10]} "
            "(its model object and features are gone); release a new version instead"
        )
    begun = sweeping(ctx, version)
    if begun is not None:
        raise ReleaseError(
            f"cannot {doing} {version}: {version} is being swept by `inv gc` (since "
            f"{str(begun['started_at'])[:16]}): its model is gone; release a new version instead"
        )


def refuse_unservable(ctx: ReleaseContext, version: str, doing: str) -> None:
    """Refuse to route to `version` unless it can answer: not swept, its model (pickle and
    numpy form) and its code (wheel and lock) in the store. Existence, not content: the
    servers and runs verify the bytes when they load them."""
    refuse_if_swept(ctx, version, doing)
    names = ctx.names_of(version)
    missing: list[str] = []
    if not models.released(ctx.store, names):
        missing.append(names.uri(names.model_metadata_key))
    else:
        metadata = models.read_metadata(ctx.store, names)
        missing += [
            names.uri(str(metadata[key]))
            for key in ("model_key", "serving_key")
            if key in metadata and not ctx.store.exists(str(metadata[key]))
        ]
    record = code.read_code(ctx.store, names)
    if record is None:
        missing.append(names.uri(names.code_record_key))
    else:
        missing += [
            names.uri(key)
            for key in (record.wheel, record.requirements)
            if not ctx.store.exists(key)
        ]
    if missing:
        raise ReleaseError(
            f"cannot {doing} {version}: {missing[0]} does not exist"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            + f"; {version} cannot serve"
        )
