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
