"""The cost of OpenLineage events: a local release (and then a batch-inference run) with
`lineage=file` against the same with `lineage=none` (the default), in one generated project.

Each round releases the version into a fresh artifact store, once with lineage off and once
with events appended to a file, alternated (ROUNDS rounds, the first one's order swapped in
the next), and runs one inference on it; wall times of the `inv` commands, medians compared.
The version's environment and warm worker are built before the first timed round, so both
variants find them ready. Prints and saves bench/results/lineage.json.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import generated_project, median, run, save  # noqa: E402

ROUNDS = 3


def timed_inv(project: Path, *args: str) -> float:
    started = time.perf_counter()
    run([str(project / ".venv/bin/inv"), *args], project, IMAGE_BUILDER="none")
    return time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        project = generated_project(Path(scratch))
        warm = Path(scratch) / "warm-up"
        timed_inv(project, "release", "-o", f"env.artifact_root={warm}")  # envs and worker
        times: dict[str, dict[str, list[float]]] = {
            variant: {"release": [], "run-inference": []} for variant in ("none", "file")
        }
        events = 0
        for number in range(ROUNDS):
            order = ("none", "file") if number % 2 == 0 else ("file", "none")
            for variant in order:
                root = Path(scratch) / f"artifacts-{variant}-{number}"
                events_file = Path(scratch) / f"lineage-{number}.jsonl"
                lineage = ["-o", f"lineage={variant}"]
                if variant == "file":
                    lineage += ["-o", f"lineage.path={events_file}"]
                where = ["-o", f"env.artifact_root={root}", *lineage]
                times[variant]["release"].append(timed_inv(project, "release", *where))
                times[variant]["run-inference"].append(timed_inv(project, "run-inference", *where))
                if variant == "file":
                    events = len(events_file.read_text().splitlines())
        medians = {v: {k: median(s) for k, s in runs.items()} for v, runs in times.items()}
        figures = {
            "rounds": ROUNDS,
            "samples_s": times,
            "median_s": medians,
            "ratio_file_over_none": {
                k: round(medians["file"][k] / medians["none"][k], 3) for k in medians["none"]
            },
            "events_per_release_and_run": events,
        }
        save("lineage", figures)
        print(json.dumps(figures["ratio_file_over_none"]))


if __name__ == "__main__":
    main()
