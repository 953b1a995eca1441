"""A version server's cold start: from launching `python -m taxi_eta.serving.app` (as the
image runs it) to its first 200 on a prediction, for a released boosted-trees model served
from its numpy form (the default) and from its pickle (SERVING_MODEL=pickle: scikit-learn
and the flat trees, as before), alternated ROUNDS times; medians. Then each server's
throughput at concurrency 32, one-trip predictions (`bench/load.py`'s client), so the
numpy form is seen to keep it. Prints and saves bench/results/cold_start.json.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serving import free_port  # noqa: E402
from common import generated_project, save  # noqa: E402
from load import LOAD, RELEASE_TWO  # noqa: E402

ROUNDS = 5
TRIP = {"trips": [{"trip_id": "t", "distance_km": 4.2, "pickup_hour": 8, "weekday": 1,
                   "area_cluster": 0}]}


def launch(python: str, root: str, model: str) -> tuple[float, subprocess.Popen, int]:
    """Seconds from launch to the first 200 of a prediction; the running server."""
    port = free_port()
    env = {**os.environ, "ARTIFACT_ROOT": root, "MODEL_VERSION": "0.1.0", "HOST": "127.0.0.1",
           "PORT": str(port), "SERVING_MODEL": model}
    started = time.perf_counter()
    process = subprocess.Popen([python, "-m", "taxi_eta.serving.app"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v0.1.0/predict",
                                     data=json.dumps(TRIP).encode(),
                                     headers={"content-type": "application/json"})
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return time.perf_counter() - started, process, port
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"the {model} server exited: {process.returncode}") from None
            time.sleep(0.01)


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        project = generated_project(scratch)
        python, root = str(project / ".venv/bin/python"), str(scratch / "artifacts")
        subprocess.run([python, "-c", RELEASE_TWO, root], check=True, capture_output=True)
        seconds: dict[str, list[float]] = {"numpy": [], "pickle": []}
        for _ in range(ROUNDS):
            for model in seconds:
                took, process, _ = launch(python, root, model)
                seconds[model].append(took)
                process.kill()
                process.wait()
        figures: dict = {
            model: {"launch_to_first_200_s": round(statistics.median(found), 3),
                    "runs_s": [round(s, 3) for s in found]}
            for model, found in seconds.items()
        }
        numpy, pickle = (figures[m]["launch_to_first_200_s"] for m in ("numpy", "pickle"))
        figures["numpy_over_pickle"] = round(numpy / pickle, 3)
        for model in seconds:
            _, process, port = launch(python, root, model)
            try:
                result = subprocess.run(
                    [python, "-c", LOAD, str(port), "/v0.1.0/predict", "32", "4000", "1"],
                    check=True, capture_output=True, text=True)
                figures[model]["c32_one_trip"] = json.loads(result.stdout)
            finally:
                process.kill()
                process.wait()
    save("cold_start", figures)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
