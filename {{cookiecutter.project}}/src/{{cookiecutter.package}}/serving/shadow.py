"""Shadow traffic for the router: after a request is answered, the other live versions
predict its trips too, and both answers go to the predictions sink.

The served answer never waits for this: the router hands the answered request to a bounded
queue (`put_nowait`; when the queue is full the request is not mirrored, and counted) and
returns. A worker on the router's event loop forwards the waiting trips to each other
version, many requests' trips in one call (errors and timeouts only counted: a shadow
version that is down costs nothing), and every
few seconds the collected rows are written, one create-only object per version and flush,
as `online-{time}-{id}` runs: the served rows with `served` true, the shadow rows with
`served` false, the same columns as batch predictions. `inv ab` then pairs online
predictions with outcomes as it pairs batch ones. Trips without a `trip_id` cannot be
joined with an outcome and are not recorded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from {{ cookiecutter.package }}.artifacts.names import new_run_id
from {{ cookiecutter.package }}.artifacts.predictions import SERVED, PredictionSink
from {{ cookiecutter.package }}.artifacts.traffic import Assignment
from {{ cookiecutter.package }}.serving.limits import MAX_TRIPS, in_chunks

log = logging.getLogger(__name__)
GATHER_S = 0.05
COLUMNS = ("trip_id", "user_cluster", "eta_minutes", "model_version", SERVED)
Forward = Callable[[str, list[dict[str, Any]]], Awaitable[list[dict[str, Any]]]]


@dataclass
class ShadowStats:
    mirrored: int = 0  # requests mirrored
    dropped: int = 0  # requests not mirrored: the queue was full
    failed: int = 0  # shadow calls that failed (the served answers were not affected)
    written: int = 0  # rows written to the sink


@dataclass
class Shadow:
    """The bounded queue, its worker and the rows waiting to be written."""

    sink: PredictionSink
    forward: Forward
    extra_versions: Iterable[str] = ()
    queue_size: int = 1000
    flush_s: float = 5.0
    stats: ShadowStats = field(default_factory=ShadowStats)
    # Records what each written batch asked each version (version, run id, record).
    record: Callable[[str, str, dict[str, Any]], Any] | None = None
    # A version's drift reference (from its model's metadata): its trips are counted in
    # the reference's bins, so that `inv drift` can test them.
    reference: Callable[[str], dict[str, Any] | None] = lambda version: None

    def __post_init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, list[dict], Assignment]] | None = None
        self.rows: dict[str, dict[str, list[Any]]] = {}  # version -> column -> values
        self.asked: dict[str, list[dict]] = {}  # version -> the trips it answered
        self.tasks: list[asyncio.Task] = []
        self.writing: asyncio.Future | None = None  # the flusher's write, in a thread

    async def start(self) -> None:
        self.queue = asyncio.Queue(self.queue_size)
        self.tasks = [asyncio.create_task(self._mirror()), asyncio.create_task(self._flusher())]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.writing is not None:  # cancelling the flusher does not stop its thread:
            await self.writing  # what it took is written before stop() returns
        await asyncio.to_thread(self.write, *self.take())

    def offer(self, body: bytes, answers: list[dict[str, Any]], assignment: Assignment) -> None:
        """Hand an answered request over (its validated body, read again later, off the
        request's path); never blocks, never raises."""
        if self.queue is None:
            return
        try:
            self.queue.put_nowait((body, answers, assignment))
        except asyncio.QueueFull:
            self.stats.dropped += 1

    def _keep(self, version: str, trips: list[dict], etas: list[dict], served: bool) -> None:
        """Append rows column by column (cheaper than a dict per row)."""
        kept = [(t, a) for t, a in zip(trips, etas, strict=True) if t.get("trip_id")]
        columns = self.rows.setdefault(version, {c: [] for c in COLUMNS})
        columns["trip_id"].extend(t["trip_id"] for t, _ in kept)
        columns["user_cluster"].extend(t["user_cluster"] for t, _ in kept)
        columns["eta_minutes"].extend(a["eta_minutes"] for _, a in kept)
        columns["model_version"].extend([version] * len(kept))
        columns[SERVED].extend([served] * len(kept))
        if self.record is not None:  # what the version was asked, for `inv drift`
            self.asked.setdefault(version, []).extend(t for t, _ in kept)

    async def _mirror(self) -> None:
        """Forward queued trips in batches: what waits (about MAX_TRIPS trips) goes to each
        shadow version in as few calls as a server accepts, so shadowing costs a model call
        per batch, not one per request."""
        assert self.queue is not None
        while True:
            batch = [await self.queue.get()]
            # Served requests first: the mirror gathers for a while, then sends what
            # waits in as few calls as it can (fewer, larger calls cost the servers less).
            await asyncio.sleep(GATHER_S)
            trips_so_far = len(batch[0][1])  # one answer per trip
            while trips_so_far < MAX_TRIPS and not self.queue.empty():
                batch.append(self.queue.get_nowait())
                trips_so_far += len(batch[-1][1])
            self.stats.mirrored += len(batch)
            targets: dict[str, list[dict[str, Any]]] = {}
            for body, answers, assignment in batch:
                trips = orjson.loads(body)["trips"]
                by_version: dict[str, tuple[list[dict], list[dict]]] = {}
                for trip, answer in zip(trips, answers, strict=True):
                    served_by = by_version.setdefault(answer["version"], ([], []))
                    served_by[0].append(trip)
                    served_by[1].append(answer)
                for version, (own, etas) in by_version.items():
                    self._keep(version, own, etas, served=True)
                for version in sorted({*assignment.clusters, *self.extra_versions}):
                    targets.setdefault(version, []).extend(
                        t for t, a in zip(trips, answers, strict=True) if a["version"] != version
                    )
            for version, others in targets.items():
                for chunk in in_chunks(others):  # a batch may hold more than one call may
                    try:
                        shadow = await self.forward(version, chunk)
                    except Exception as error:  # any failure: these shadow answers are lost
                        self.stats.failed += 1
                        log.debug("shadow call to %s failed: %s", version, error)
                        continue
                    self._keep(version, chunk, shadow, served=False)

    def take(self) -> tuple[dict[str, dict[str, list[Any]]], dict[str, list[dict]]]:
        """The rows and trips collected so far (on the event loop, which alone appends to
        them)."""
        pending, asked, self.rows, self.asked = self.rows, self.asked, {}, {}
        return pending, asked

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            self.writing = asyncio.ensure_future(asyncio.to_thread(self.write, *self.take()))
            await asyncio.shield(self.writing)

    def write(
        self, pending: dict[str, dict[str, list[Any]]], asked: dict[str, list[dict]] | None = None
    ) -> None:
        """Write collected rows, one object per version, and beside it the summary of the
        trips it was asked (`ml.drift`; a failure is logged, not raised)."""
        import pandas as pd

        from {{ cookiecutter.package }}.ml import drift

        for version, columns in pending.items():
            rows = len(columns["trip_id"])
            if not rows:
                continue
            run_id = f"online-{new_run_id()}"
            try:
                self.sink.write(version, run_id, pd.DataFrame(columns))
                self.stats.written += rows
                trips = (asked or {}).get(version)
                if self.record is not None and trips:
                    fields = drift.inputs_of_trips(trips)
                    etas = np.array(columns["eta_minutes"], dtype=float)
                    clusters = np.array([t["user_cluster"] for t in trips])
                    summary = drift.summarize_fields(
                        fields, etas, clusters, self.reference(version)
                    )
                    summary["trips"] = drift.trips_digest([t["trip_id"] for t in trips])
                    self.record(version, run_id, {"source": "online", "inputs": summary})
            except Exception as error:  # the router keeps serving; these rows are lost
                log.warning("could not write %d online predictions of %s: %s", rows, version, error)
