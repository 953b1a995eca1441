"""Reading trips at scale: the files data source (Parquet, declared columns only) against the
synthetic generator, both through the same step (`steps.ensure_features`: read, shape by the
declared schema, build features, write them) in a fresh process each, for 0.4 M and 2 M
trips. Prints and saves rows/s and peak memory (max RSS) per case, medians of 3, and the
files/synthetic ratios measured in this same run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import generated_project, median, save  # noqa: E402

SIZES = (400_000, 2_000_000)
REPEAT = 3

STEP = """
import sys
from {package}.artifacts.data_sources import SyntheticSource
from {package}.artifacts.files_source import FileSource
from {package}.artifacts.names import ReleaseNames
from {package}.pipelines import steps

kind, n, path, root = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
source = SyntheticSource(root, n, 42) if kind == "synthetic" else FileSource(root, path)
names = ReleaseNames("bench", "1.0.0", "1.0.0", root)
print(steps.ensure_features(names, n, 42, [7, 8, 9, 16, 17, 18], source=source))
"""

WRITE = """
import sys
from {package}.ml.data import make_trips
trips = make_trips(int(sys.argv[2]), 7).drop(columns=["user_cluster"])
trips["notes"] = "an export's column the source never reads"
trips.to_parquet(sys.argv[1], index=False)
"""


def measure(python: str, script: str, args: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one fresh process."""
    started = time.perf_counter()
    process = subprocess.Popen([python, "-c", script, *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(process.stderr.read() if process.stderr else "step failed")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        project = generated_project(work)
        python = str(project / ".venv/bin/python")
        package = "taxi_eta"
        figures: dict = {"repeat": REPEAT, "cases": {}}
        for n in SIZES:
            data = work / f"trips-{n}.parquet"
            subprocess.run([python, "-c", WRITE.format(package=package), str(data), str(n)],
                           check=True)
            for kind in ("synthetic", "files"):
                walls, peaks = [], []
                for attempt in range(REPEAT):
                    root = work / f"artifacts-{kind}-{n}-{attempt}"
                    wall, peak = measure(python, STEP.format(package=package),
                                         [kind, str(n), str(data), str(root)])
                    walls.append(wall)
                    peaks.append(peak)
                figures["cases"][f"{kind} {n}"] = {
                    "wall_s": median(walls),
                    "rows_per_s": round(n / median(walls)),
                    "peak_mb": round(sorted(peaks)[len(peaks) // 2]),
                }
            files, synthetic = figures["cases"][f"files {n}"], figures["cases"][f"synthetic {n}"]
            figures[f"files/synthetic wall, {n}"] = round(files["wall_s"] / synthetic["wall_s"], 2)
            figures[f"files/synthetic peak memory, {n}"] = round(
                files["peak_mb"] / synthetic["peak_mb"], 2)
        save("data", figures)


if __name__ == "__main__":
    main()
