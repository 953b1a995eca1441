"""What drift costs: the summary a batch inference run adds to its record (`ml.drift.summarize`
on each part of its trips, against the prediction itself as the baseline, on the same
parts), and `inv drift` over 1 M predicted trips (100 run records of 10,000 trips), its
wall time and the peak RSS of its process (VmHWM). Medians of REPEAT. Prints and saves
bench/results/drift.json."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import generated_project, save  # noqa: E402

REPEAT = 5
# In the project's interpreter: the cost per part of 100,000 trips, summary vs prediction.
PER_PART = f"REPEAT = {REPEAT}\n" + """
import json, statistics, time
from taxi_eta.ml import drift
from taxi_eta.ml.data import make_trips
from taxi_eta.ml.features import build_features, model_input
from taxi_eta.ml.fitting import fit, split
from taxi_eta.ml.predict import predict_etas
features = build_features(make_trips(100_000, 1), [7, 8, 9])
model = fit(features.iloc[:20_000], {"_target_": "sklearn.ensemble.HistGradientBoostingRegressor",
                                     "max_iter": 50})
def timed(action):
    samples = []
    for _ in range(REPEAT):
        started = time.perf_counter(); action(); samples.append(time.perf_counter() - started)
    return statistics.median(samples)
etas = predict_etas(model, model_input(features))
predict_s = timed(lambda: predict_etas(model, model_input(features)))
summary_s = timed(lambda: drift.summarize(features, etas))
print(json.dumps({"trips_per_part": len(features), "predict_s": round(predict_s, 4),
                  "summarize_s": round(summary_s, 4),
                  "summarize_over_predict": round(summary_s / predict_s, 3),
                  "summary_bytes": len(json.dumps(drift.summarize(features, etas)))}))
"""
# 100 run records of 10,000 trips each (1 M predicted trips) and a released reference.
RECORDS = """
import json, sys
from taxi_eta.artifacts import prediction_runs
from taxi_eta.artifacts.store import open_store
from taxi_eta.ml import drift
from taxi_eta.ml.data import make_trips
from taxi_eta.ml.features import build_features
root = sys.argv[1]
store = open_store(root)
for run in range(100):
    features = build_features(make_trips(10_000, 1000 + run), [7, 8, 9])
    etas = features["distance_km"].to_numpy() * 2.5
    summary = drift.summarize(features, etas)
    prediction_runs.write(store, "0.1.0", f"run-{run:03d}", {"inputs": summary})
"""
MEASURE = """
import json, resource, sys, time
from pathlib import Path
sys.argv = ["inv", "drift", "--version", "0.1.0", "-o", f"env.artifact_root={sys.argv[1]}"]
started = time.perf_counter()
from invoke import Collection, Program
sys.path.insert(0, ".")
import tasks
try:
    Program(namespace=Collection.from_module(tasks), binary="inv").run(sys.argv)
except SystemExit:
    pass
wall = time.perf_counter() - started
hwm = next(int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines()
           if l.startswith("VmHWM"))
print(json.dumps({"wall_s": round(wall, 2), "vmhwm_mb": round(hwm / 1024)}), file=sys.stderr)
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        project = generated_project(scratch)
        python = str(project / ".venv/bin/python")
        per_part = json.loads(subprocess.run([python, "-c", PER_PART], check=True,
                                             capture_output=True, text=True).stdout)
        root = scratch / "artifacts"
        # A released version with its reference: the quick release's model and metadata.
        release = ("from conftest import release_model; import sys; from pathlib import Path; "
                   "release_model(Path(sys.argv[1]), '0.1.0', "
                   "{'_target_': 'sklearn.linear_model.Ridge'}, Path(sys.argv[2]))")
        subprocess.run([python, "-c", release, str(root), str(scratch)], check=True,
                       capture_output=True, cwd=project / "tests")
        subprocess.run([python, "-c", RECORDS, str(root)], check=True, capture_output=True)
        runs = []
        for _ in range(REPEAT):
            done = subprocess.run([python, "-c", MEASURE, str(root)], capture_output=True,
                                  text=True, cwd=project, check=True)
            runs.append(json.loads(done.stderr.strip().splitlines()[-1]))
            output = done.stdout
        runs.sort(key=lambda r: r["wall_s"])
        figures = {"per_part_of_100k_trips": per_part,
                   "inv_drift_over_1M_trips_in_100_runs": runs[len(runs) // 2],
                   "inv_drift_output": output.splitlines()[:1]}
    save("drift", figures)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
