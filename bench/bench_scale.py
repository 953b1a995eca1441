"""The data path at scale: the feature step and training in bounded memory.

1. The feature step (`steps.ensure_features`) on Parquet files of 1 M trips each, at 1 M,
   10 M and 50 M trips, streamed (`data.batch_rows` 500 000: the project's path) against the
   one-frame path it replaced, run in this same script (the source's frame, shaped whole,
   features whole, written as one part), FEATURE_ROUNDS times each, alternated, medians
   compared. 50 M trips in one frame would need about 21 GB, so the baseline stops at 10 M
   (and 50 M streamed runs once).
2. The steps of a release whose source holds 6 M trips with `data.train_rows=1000000`, and
   10 M with 2 000 000: the feature step, then training (scikit-learn's default gradient
   boosting of the project) on the sample.
3. Batch inference of 10 M trips (`inference.shards`): one shard's process, then two shard
   processes started together, as the engines' parallel tasks run them in pods; ROUNDS
   times each, alternated, and the medians compared. Then the same as the local engine runs
   them: forks of a warm worker that has the steps' libraries imported.

Each step runs in a fresh process; its wall time and its peak RSS (the kernel's max RSS of
that process, VmHWM) are measured. Prints and saves bench/results/scale.json with the
machine's core count.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, generated_project, save  # noqa: E402

FILE_ROWS = 1_000_000
SIZES = (1_000_000, 10_000_000, 50_000_000)
BASELINE_UP_TO = 10_000_000
RELEASES = ((6_000_000, 1_000_000), (10_000_000, 2_000_000))
INFERENCE_TRIPS = 10_000_000
ROUNDS = 5  # inference's wall time varies by a third from run to run here: medians
FEATURE_ROUNDS = 3  # the feature step's too (1 M trips: 1.6 to 3.6 s); 50 M runs once

WRITE = """
import sys
from pathlib import Path
from taxi_eta.ml.data import make_trips
folder, first, count = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for n in range(first, first + count):
    trips = make_trips(FILE_ROWS, 1000 + n).drop(columns=["user_cluster"])
    trips["trip_id"] = f"{n:03d}-" + trips["trip_id"].astype(str)  # unique across files
    trips.to_parquet(folder / f"trips-{n:03d}.parquet", index=False)
""".replace("FILE_ROWS", str(FILE_ROWS))

STREAMED = """
import sys
from taxi_eta.artifacts.files_source import FileSource
from taxi_eta.artifacts.names import ReleaseNames
from taxi_eta.pipelines import inference_steps, steps
pattern, root = sys.argv[1], sys.argv[2]
names = ReleaseNames("bench", "1.0.0", "1.0.0", root)
print(steps.ensure_features(names, 0, 0, [7, 8, 9, 16, 17, 18],
                            source=FileSource(root, pattern), batch_rows=500_000))
"""

# The one-frame path this step had before it streamed: every row in one frame at each stage.
ONE_FRAME = """
import sys
from taxi_eta.artifacts.feature_store import ParquetFeatureStore
from taxi_eta.artifacts.files_source import FileSource
from taxi_eta.ml import TARGET
from taxi_eta.ml.features import build_features
from taxi_eta.ml.schema import OPTIONAL_COLUMNS, TRIP_COLUMNS, shape
pattern, root = sys.argv[1], sys.argv[2]
trips, _ = FileSource(root, pattern).read_trips([*TRIP_COLUMNS, *OPTIONAL_COLUMNS, TARGET])
shaped, report = shape(trips, True, 0.01, "bench")
ParquetFeatureStore(root).write("1.0.0", build_features(shaped, [7, 8, 9, 16, 17, 18]))
print(report.summary())
"""

TRAIN = """
import sys
from taxi_eta.artifacts.names import ReleaseNames
from taxi_eta.config import load_config
from taxi_eta.pipelines import inference_steps, steps
from omegaconf import OmegaConf
root, train_rows, model_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
names = ReleaseNames("bench", "1.0.0", "1.0.0", root)
model = OmegaConf.to_container(load_config("local", []).model, resolve=True)
print(steps.train_and_evaluate(names, model, 0.2, 42, model_path, None, train_rows,
                               model_path + ".sample.json"))
"""


# Imports from bytecode, as on a user's machine: a shell that sets PYTHONDONTWRITEBYTECODE
# would make every step compile its libraries again (about 1.3 s here).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


WARM = "import taxi_eta.pipelines.feature_build, taxi_eta.ml.fitting, sklearn.ensemble, pandera"


def measured(project: Path, script: str, *args: str) -> dict[str, float]:
    """Run `script` in a fresh interpreter of the project: wall time and its peak RSS."""
    python = str(project / ".venv/bin/python")
    started = time.perf_counter()
    process = subprocess.Popen([python, "-c", script, *args], cwd=project, env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    out, err = process.stdout.read(), process.stderr.read()  # type: ignore[union-attr]
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{script.splitlines()[1]} failed:\n{out}\n{err}")
    print(out.strip().splitlines()[-1])
    return {"wall_s": round(wall, 1), "peak_mb": round(usage.ru_maxrss / 1024)}


RELEASE_MODEL = """
import sys
from taxi_eta.artifacts.data_sources import SyntheticSource
from taxi_eta.artifacts.names import ReleaseNames
from taxi_eta.pipelines import inference_steps, steps
root, model_path = sys.argv[1], sys.argv[2]
names = ReleaseNames("bench", "1.0.0", "1.0.0", root)
source = SyntheticSource(root, 20000, 1)
steps.ensure_features(names, 20000, 1, [7, 8, 9, 16, 17, 18], source=source)
metrics = steps.train_and_evaluate(names, {"_target_": "sklearn.linear_model.Ridge"}, 0.2, 1,
                                   model_path)
print(steps.publish_model(names, model_path, metrics, "bench", {}))
"""

# One shard of a batch-inference run: its two steps, as its pipeline task runs them.
INFER_SHARD = """
import sys
from taxi_eta.artifacts.files_source import FileSource
from taxi_eta.artifacts.intervals import Interval
from taxi_eta.artifacts.names import ReleaseNames
from taxi_eta.pipelines import inference_steps, steps
root, pattern, scratch, run = sys.argv[1:5]
shard, shards = int(sys.argv[5]), int(sys.argv[6])
names = ReleaseNames("bench", "1.0.0", "1.0.0", root)
source = FileSource(root, pattern, batch_path=pattern)
features, batch = f"{scratch}/features-{shard}.parquet", f"{scratch}/batch-{shard}.json"
inference_steps.make_batch_features(names, 0, 0, [7, 8, 9, 16, 17, 18], features, batch,
                          Interval.resolve(), source, 0.01, True, shard, shards)
print(inference_steps.predict_batch(names, features, batch, f"{run}-{shards}", None, shard, shards))
"""


# The same shards as the local engine runs them: forks of a warm worker, which holds the
# libraries the steps import (`engines.workers.PRELOAD`), so no shard pays for its imports.
FORKED_SHARDS = """
import importlib, json, os, sys, time
from taxi_eta.engines.workers import PACKAGE_MODULES, PRELOAD
for name in (*PRELOAD, *(f"taxi_eta.{module}" for module in PACKAGE_MODULES)):
    importlib.import_module(name)
from taxi_eta.artifacts.files_source import FileSource
from taxi_eta.artifacts.intervals import Interval
from taxi_eta.artifacts.names import ReleaseNames
from taxi_eta.pipelines import inference_steps, steps
root, pattern, scratch, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
names = ReleaseNames("bench", "1.0.0", "1.0.0", root)


def shard_task(run, shard, shards):
    source = FileSource(root, pattern, batch_path=pattern)
    features, batch = f"{scratch}/{run}-features-{shard}", f"{scratch}/{run}-batch-{shard}.json"
    inference_steps.make_batch_features(names, 0, 0, [7, 8, 9, 16, 17, 18], features, batch,
                              Interval.resolve(), source, 0.01, True, shard, shards)
    inference_steps.predict_batch(names, features, batch, run, None, shard, shards)


results = {1: [], 2: []}
for round_ in range(rounds):
    for shards in (1, 2):
        started, children = time.perf_counter(), []
        for shard in range(shards):
            child = os.fork()
            if child == 0:
                sys.stdout = open(os.devnull, "w")
                shard_task(f"forked-{round_}-{shards}", shard, shards)
                os._exit(0)
            children.append(child)
        peaks = []
        for child in children:
            _, status, usage = os.wait4(child, 0)
            assert os.waitstatus_to_exitcode(status) == 0, f"a forked shard failed: {status}"
            peaks.append(round(usage.ru_maxrss / 1024))
        results[shards].append({"wall_s": round(time.perf_counter() - started, 1),
                                "peak_mb_per_shard": peaks})
print(json.dumps(results))
"""


def shards_in_parallel(project: Path, args: list[str], shards: int) -> dict[str, object]:
    """Every shard's process started at once, as the engines' parallel tasks run: the wall
    time until the last ends, and each one's peak RSS."""
    python = str(project / ".venv/bin/python")
    started = time.perf_counter()
    processes = [
        subprocess.Popen([python, "-c", INFER_SHARD, *args, str(shard), str(shards)],
                         cwd=project, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        for shard in range(shards)
    ]
    peaks = []
    for process in processes:
        _, status, usage = os.wait4(process.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"shard failed: {process.stderr.read()}")  # type: ignore[union-attr]
        peaks.append(round(usage.ru_maxrss / 1024))
    return {"wall_s": round(time.perf_counter() - started, 1), "peak_mb_per_shard": peaks}


def trips_folder(project: Path, data: Path, size: int) -> str:
    """A glob of `size` trips: the first size/FILE_ROWS files of one shared set, made once
    and linked into a folder of their own."""
    made = data / "all"
    made.mkdir(exist_ok=True)
    have, need = len(list(made.glob("trips-*.parquet"))), size // FILE_ROWS
    if need > have:
        subprocess.run([str(project / ".venv/bin/python"), "-c", WRITE, str(made), str(have),
                        str(need - have)], check=True, cwd=project)
    folder = data / f"size-{size}"
    folder.mkdir(exist_ok=True)
    for n in range(need):
        link = folder / f"trips-{n:03d}.parquet"
        if not link.exists():
            link.symlink_to(made / link.name)
    return str(folder / "*.parquet")


def main(only_inference: bool = False) -> None:
    """Every part; with `only_inference` (`bench_scale.py inference`), part 3 alone, its
    figures replacing those of the last full run's results."""
    figures: dict[str, object] = {"cores": os.cpu_count(), "file_rows": FILE_ROWS,
                                  "batch_rows": 500_000, "feature_step": {}, "release": {},
                                  "feature_rounds": FEATURE_ROUNDS}
    if only_inference:
        figures = json.loads((RESULTS / "scale.json").read_text())
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        project = generated_project(work / "project")
        subprocess.run([str(project / ".venv/bin/python"), "-c", WARM], cwd=project, env=ENV,
                       check=True)  # bytecode of every library the steps import
        data = work / "data"
        data.mkdir()
        for size in () if only_inference else SIZES:
            pattern = trips_folder(project, data, size)
            case: dict[str, object] = {}
            rounds = FEATURE_ROUNDS if size <= BASELINE_UP_TO else 1
            runs: dict[str, list[dict[str, float]]] = {"streamed": [], "one_frame": []}
            for round_ in range(rounds):  # alternated, as inference's rounds
                for kind, script in (("streamed", STREAMED), ("one_frame", ONE_FRAME)):
                    if kind == "one_frame" and size > BASELINE_UP_TO:
                        continue
                    root = work / f"store-{kind}-{size}-{round_}"
                    runs[kind].append(measured(project, script, pattern, str(root)))
                    shutil.rmtree(root)
                    print(f"{size:,} trips, {kind}: {runs[kind][-1]}")
            for kind, found in runs.items():
                if found:
                    wall = median(r["wall_s"] for r in found)
                    case[kind] = {"wall_s": wall, "wall_s_rounds": [r["wall_s"] for r in found],
                                  "peak_mb": max(r["peak_mb"] for r in found),
                                  "trips_per_s": round(size / wall)}
            if "one_frame" in case:
                streamed, whole = case["streamed"], case["one_frame"]
                case["throughput_streamed_over_one_frame"] = round(
                    streamed["trips_per_s"] / whole["trips_per_s"], 2)  # type: ignore[index]
                case["peak_streamed_over_one_frame"] = round(
                    streamed["peak_mb"] / whole["peak_mb"], 2)  # type: ignore[index]
            figures["feature_step"][str(size)] = case  # type: ignore[index]
        for size, train_rows in () if only_inference else RELEASES:
            pattern = trips_folder(project, data, size)
            root = work / f"release-{size}"
            features = measured(project, STREAMED, pattern, str(root))
            training = measured(project, TRAIN, str(root), str(train_rows), str(work / "m.pkl"))
            figures["release"][f"{size} trips, train_rows {train_rows}"] = {  # type: ignore[index]
                "feature_step": features, "training": training,
                "peak_mb_every_process": max(features["peak_mb"], training["peak_mb"])}
            shutil.rmtree(root)
            print(f"release of {size:,} trips: {features}, {training}")
        # 3. Batch inference of 10 M trips: one shard, then two in parallel.
        pattern = trips_folder(project, data, INFERENCE_TRIPS)
        root = work / "inference"
        subprocess.run([str(project / ".venv/bin/python"), "-c", RELEASE_MODEL, str(root),
                        str(work / "ridge.pkl")], cwd=project, env=ENV, check=True,
                       capture_output=True)
        inference: dict[str, object] = {"trips": INFERENCE_TRIPS, "rounds": ROUNDS}
        runs: dict[int, list[dict[str, object]]] = {1: [], 2: []}
        for round_ in range(ROUNDS):  # alternated, so a slow spell of the machine hits both
            for shards in (1, 2):
                scratch = work / f"inference-{shards}-{round_}"
                scratch.mkdir()
                runs[shards].append(shards_in_parallel(
                    project, [str(root), pattern, str(scratch), f"bench-{round_}"], shards))
                print(f"inference of {INFERENCE_TRIPS:,} trips, {shards} shard(s): "
                      f"{runs[shards][-1]}")
        for shards, measured_runs in runs.items():
            inference[f"{shards} shard(s)"] = {
                "wall_s_median": median(r["wall_s"] for r in measured_runs),  # type: ignore[misc]
                "wall_s": [r["wall_s"] for r in measured_runs],
                "peak_mb_per_shard_max": max(
                    max(r["peak_mb_per_shard"]) for r in measured_runs),  # type: ignore[call-overload]
            }
        one, two = inference["1 shard(s)"], inference["2 shard(s)"]
        inference["wall_2_shards_over_1"] = round(
            two["wall_s_median"] / one["wall_s_median"], 2)  # type: ignore[index]
        scratch = work / "inference-forked"
        scratch.mkdir()
        forked = json.loads(subprocess.run(
            [str(project / ".venv/bin/python"), "-c", FORKED_SHARDS, str(root), pattern,
             str(scratch), str(ROUNDS)], cwd=project, env=ENV, check=True, capture_output=True,
            text=True).stdout.splitlines()[-1])
        for shards, measured_runs in forked.items():
            inference[f"{shards} shard(s), forked from a warm worker"] = {
                "wall_s_median": median(r["wall_s"] for r in measured_runs),
                "wall_s": [r["wall_s"] for r in measured_runs],
                "peak_mb_per_shard_max": max(max(r["peak_mb_per_shard"]) for r in measured_runs),
            }
            print(f"inference, {shards} shard(s) forked: {measured_runs}")
        inference["forked_wall_2_shards_over_1"] = round(
            median(r["wall_s"] for r in forked["2"]) / median(r["wall_s"] for r in forked["1"]), 2)
        figures["inference"] = inference
    save("scale", figures)


if __name__ == "__main__":
    main(only_inference=sys.argv[1:] == ["inference"])
