"""Progress of long work: one line per step or pipeline task, with its state and timing.

On a terminal a `rich` spinner shows what is running and the final line replaces it; in
pipes, logs and CI the same states are plain lines (`  task train-model: running`, then
`  task train-model: success (9.3 s)`), which is what scripts and tests read.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class Activity:
    """Something running, shown until `done` says how it ended."""

    def __init__(self, label: str, out: TextIO | None = None) -> None:
        self.label = label
        self.out = out or sys.stdout
        self.started = time.monotonic()
        self._spinner: Any = None
        if self.out.isatty():
            from rich.console import Console

            self._spinner = Console(file=self.out).status(f"{label}: running")
            self._spinner.start()
        else:
            print(f"{label}: running", file=self.out, flush=True)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    def done(self, state: str = "done") -> float:
        took = self.seconds
        if self._spinner is not None:
            self._spinner.stop()
        print(f"{self.label}: {state} ({took:.1f} s)", file=self.out, flush=True)
        return took


class Throughput:
    """Rows through a long step: a line at most every `every_s` seconds while it runs
    (`features 1.4.0: 3,000,000 rows read, 412 k/s, 6 parts written`) and one at the end,
    so a ten-minute step is never silent."""

    def __init__(self, label: str, every_s: float = 10.0, out: TextIO | None = None) -> None:
        self.label, self.every_s = label, every_s
        self.out = out or sys.stdout
        self.started = self.shown = time.monotonic()
        self.rows = self.parts = 0

    def line(self) -> str:
        rate = self.rows / max(time.monotonic() - self.started, 1e-9)
        return (
            f"{self.label}: {self.rows:,} rows read, {rate / 1000:,.0f} k/s, "
            f"{self.parts} part{'s' if self.parts != 1 else ''} written"
        )

    def count(self, rows: int, parts: int = 0) -> None:
        self.rows += rows
        self.parts += parts
        if time.monotonic() - self.shown >= self.every_s:
            self.shown = time.monotonic()
            print(self.line(), file=self.out, flush=True)

    def done(self) -> None:
        print(self.line(), file=self.out, flush=True)
