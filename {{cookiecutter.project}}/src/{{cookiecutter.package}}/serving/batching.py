"""Adaptive micro-batching: concurrent requests' trips predicted in one model call.

A model call has a fixed cost (the estimator's checks, its thread hand-offs) that dwarfs
the cost of a few rows, so under load a server that calls the model once per request
spends most of its time on that fixed cost. Here each request's feature rows wait for the
model together with the rows of the requests being served beside it, and the batch is
predicted in one call as soon as

- every prediction request in the server is waiting in it (nobody else will join: alone,
  a request is predicted at once, with no added latency),
- `max_rows` rows are waiting, or
- `wait_ms` have passed since the batch opened,

and each caller gets back exactly its own rows. Requests are validated before they get
here (a malformed one gets its 422 alone and never enters a batch), and a batch whose call
fails fails only its own callers. `wait_ms` 0 turns batching off. The model runs on the
event loop's thread, as an unbatched request does: batching changes how often it is
called, not where.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from {{ cookiecutter.package }}.serving.limits import MAX_TRIPS

Predict = Callable[[np.ndarray], np.ndarray]


class MicroBatcher:
    def __init__(
        self,
        predict: Predict,
        wait_ms: float = 2.0,
        max_rows: int = MAX_TRIPS,
        observe: Callable[[int, float], None] | None = None,
    ) -> None:
        self.predict, self.wait_s, self.max_rows = predict, wait_ms / 1000, max_rows
        # Told each model call's rows and how long its batch was open (`serving.metrics`).
        self.observe = observe
        self.opened = 0.0
        self.pending: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = []
        self.rows = 0
        self.timer: asyncio.TimerHandle | None = None
        self.requests = 0  # prediction requests in the server now (`in_flight`)
        self.calls = 0  # model calls made: what batching saves (tests, operators)

    async def __call__(self, matrix: np.ndarray) -> np.ndarray:
        if self.wait_s <= 0:
            self.calls += 1
            if self.observe is not None:
                self.observe(len(matrix), 0.0)
            return self.predict(matrix)
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self.pending.append((matrix, future))
        self.rows += len(matrix)
        if self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(self.wait_s, self.flush)
            self.opened = time.perf_counter()
        # One turn of the event loop: the requests that arrived with this one reach the
        # batch (or count as in the server) before it decides. Alone, that is all it costs.
        await asyncio.sleep(0)
        self.maybe_flush()
        return await future

    @contextmanager
    def in_flight(self) -> Iterator[None]:
        """Held by each prediction request from its arrival to its answer: a batch waits
        for the requests in the server, and for no one once they are all in it."""
        self.requests += 1
        try:
            yield
        finally:
            self.requests -= 1
            self.maybe_flush()  # one fewer to wait for (a 422, a disconnect)

    def maybe_flush(self) -> None:
        """Flush when nobody else can join the batch soon, or it is full."""
        if self.pending and (len(self.pending) >= self.requests or self.rows >= self.max_rows):
            self.flush()

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batch, self.pending, self.rows = self.pending, [], 0
        if not batch:
            return
        self.calls += 1
        if self.observe is not None:
            self.observe(sum(len(m) for m, _ in batch), time.perf_counter() - self.opened)
        try:
            etas = self.predict(np.concatenate([matrix for matrix, _ in batch]))
        except Exception as error:  # the batch's callers get the error, nobody else
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        start = 0
        for matrix, future in batch:
            if not future.done():  # a caller that went away (disconnected) is skipped
                future.set_result(etas[start : start + len(matrix)])
            start += len(matrix)
