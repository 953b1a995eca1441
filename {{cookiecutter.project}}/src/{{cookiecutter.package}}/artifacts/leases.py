"""A lease in the artifact store: one holder at a time, across processes and machines.

Scheduled ticks of one environment hold `locks/<name>/`: two ticks started together must not
predict the same interval twice. The store is what every machine of an environment shares
(a folder, or a bucket), and its create-only write is the one atomic operation both have:
a lease is the object `locks/<name>/<n>.json`, and taking it is creating the next number.
Whoever creates `<n+1>` first holds it; the other create fails, whoever it was.

A lease is free when its newest object was released (removed), when it has expired
(`seconds` after it was taken: a holder killed on another machine), or when its holder ran
on this machine and its process is gone (a killed tick is taken over at once).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

from {{ cookiecutter.package }}.artifacts.store import AlreadyExistsError, ArtifactStore, StoreError
from {{ cookiecutter.package }}.background import started_at
from {{ cookiecutter.package }}.errors import UserError

LOCKS = "locks/"


class LeaseHeldError(UserError, RuntimeError):
    """Another process holds the lease."""


def _key(name: str, number: int) -> str:
    return f"{LOCKS}{name}/{number:012d}.json"


def _holder() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "started": started_at(pid)}


def _alive(record: dict[str, Any], now: datetime) -> bool:
    if datetime.fromisoformat(str(record["expires_at"])) <= now:
        return False
    if record.get("host") == socket.gethostname():  # this machine: is it still running?
        return started_at(int(record["pid"])) == record.get("started")
    return True


def holder_of(
    store: ArtifactStore, name: str, now: datetime | None = None, keys: list[str] | None = None
) -> dict | None:
    """The record of the live holder of lease `name`; None when it is free. `keys`: the
    lease's objects, when the caller listed them already."""
    keys = store.list(f"{LOCKS}{name}/") if keys is None else keys
    if not keys:
        return None
    try:
        record = json.loads(store.read_text(keys[-1]))
    except (StoreError, ValueError):  # released between the listing and the read
        return None
    return record if _alive(record, now or datetime.now(UTC)) else None


@contextmanager
def lease(store: ArtifactStore, name: str, seconds: float, what: str) -> Iterator[None]:
    """Hold lease `name` for the block, or raise LeaseHeldError in one line naming the
    holder. `what` says what holds it (`a scheduled inference tick`)."""
    now = datetime.now(UTC)
    keys = store.list(f"{LOCKS}{name}/")
    held = holder_of(store, name, now, keys)
    if held is not None:
        raise LeaseHeldError(
            f"{held['what']} holds the lock {store.uri(LOCKS + name)} (pid {held['pid']} on "
            f"{held['host']} since {held['taken_at']}, until {held['expires_at']} at the "
            "latest): this one does nothing; the next starts where that one ends"
        )
    number = int(keys[-1].rsplit("/", 1)[1].removesuffix(".json")) + 1 if keys else 1
    record = {
        **_holder(),
        "what": what,
        "taken_at": now.isoformat(timespec="seconds"),
        "expires_at": (now + timedelta(seconds=seconds)).isoformat(timespec="seconds"),
    }
    try:
        store.write_text(_key(name, number), json.dumps(record))
    except AlreadyExistsError:
        raise LeaseHeldError(
            f"another process took the lock {store.uri(LOCKS + name)} at the same moment: "
            "this one does nothing"
        ) from None
    for older in keys:  # expired or released holders: history nobody needs
        with suppress(StoreError):
            store.delete(older)
    try:
        yield
    finally:
        with suppress(StoreError):
            store.delete(_key(name, number))
