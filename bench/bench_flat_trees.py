"""One model call of the default model (boosted trees, `conf/model/gradient_boosting.yaml`)
as the version server makes it: scikit-learn's `predict` (the baseline) against the same
trees laid out as flat arrays (`ml/flat_trees.py`), for calls of 1, 8, 32 and 64 rows, in one
process with one native thread, as a server runs. Medians of 2000 calls each; the two
predictors alternate in blocks so drift hits both alike. Also checks that both give the same
numbers on every call measured. Prints and saves bench/results/flat_trees.json."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import generated_project, save  # noqa: E402

MEASURE = """
import json, os, statistics, sys, time
import numpy as np
from omegaconf import OmegaConf
from taxi_eta.ml.data import make_trips
from taxi_eta.ml.features import build_features, model_input
from taxi_eta.ml.fitting import fit
from taxi_eta.ml.flat_trees import FlatTrees
from threadpoolctl import threadpool_limits

threadpool_limits(1)
cfg = OmegaConf.load(os.path.join(sys.argv[1], "conf", "model", "gradient_boosting.yaml"))
features = build_features(make_trips(4000, 42), [7, 8, 9, 16, 17, 18])
model = fit(features, OmegaConf.to_container(cfg))
flat = FlatTrees(model)
rows = model_input(features)
figures, same = {}, True
for n in (1, 8, 32, 64):
    batch = np.ascontiguousarray(rows[:n])
    samples = {"scikit_learn": [], "flat_trees": []}
    for _ in range(20):
        for name, predict in (("scikit_learn", model.predict), ("flat_trees", flat.predict)):
            for _ in range(100):
                started = time.perf_counter()
                predict(batch)
                samples[name].append(time.perf_counter() - started)
    same = same and np.array_equal(model.predict(batch), flat.predict(batch))
    sk, ft = (statistics.median(samples[k]) * 1e3 for k in ("scikit_learn", "flat_trees"))
    figures[f"{n}_rows"] = {"scikit_learn_ms": round(sk, 4), "flat_trees_ms": round(ft, 4),
                            "flat_over_scikit_learn": round(ft / sk, 3)}
figures["trees"] = len(model._predictors)
figures["same_numbers"] = bool(same)
print(json.dumps(figures))
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        project = generated_project(Path(scratch))
        result = subprocess.run(
            [str(project / ".venv" / "bin" / "python"), "-c", MEASURE, str(project)],
            cwd=project, check=True, capture_output=True, text=True,
        )
    save("flat_trees", json.loads(result.stdout))


if __name__ == "__main__":
    main()
