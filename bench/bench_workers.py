"""Warm workers (issue: local runs at the speed of a function call), all ratios in one run.

- training 0.1.0 through the local engine against calling the step functions directly, both
  in fresh processes: with workers off (every task a new interpreter), with no worker alive
  (the run starts one), and with the version's worker alive;
- `inv run-inference` with the version's worker alive against `python -c "import pandas,
  sklearn.ensemble"` in the same environment;
- `inv release` of a version whose environment exists, its worker not alive and alive;
- the import time of each pipeline step's modules, in a fresh interpreter.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_release import DIRECT  # noqa: E402
from common import generated_project, median, run, save, timed  # noqa: E402

REPEAT = 5

# What `inv train-adhoc` does (its code step finds the code published and the environment
# built, and starts the worker), in a fresh process.
VIA_ENGINE = """
import sys
from taxi_eta.config import load_config
from taxi_eta.release.context import ReleaseContext
from taxi_eta.release.plan import make_steps
overrides = [f"env.artifact_root={sys.argv[1]}", f"env.worker_idle_seconds={sys.argv[2]}"]
ctx = ReleaseContext.create(load_config("local", overrides))
make_steps(ctx, ctx.git.head(), only=["code", "train-adhoc"])
"""
PUBLISH = """
import sys
from taxi_eta.config import load_config
from taxi_eta.release.code_publishing import publish_code
from taxi_eta.release.context import ReleaseContext
ctx = ReleaseContext.create(load_config("local", [f"env.artifact_root={sys.argv[1]}"]))
publish_code(ctx, ctx.git.head())
ctx.environments.python_for(ctx.names)
"""
STEP_IMPORTS = {
    "build-features": "import taxi_eta.pipelines.step_table, taxi_eta.ml.features, "
    "taxi_eta.ml.schema, pandera.pandas, pyarrow.parquet",
    "train": "import taxi_eta.pipelines.step_table, taxi_eta.ml.fitting, taxi_eta.ml.evaluate, "
    "sklearn.ensemble, pyarrow.parquet",
    "predict": "import taxi_eta.pipelines.step_table, taxi_eta.ml.predict, taxi_eta.ml.features, "
    "taxi_eta.ml.schema, sklearn.ensemble, pyarrow.parquet",
}


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        project = generated_project(root)
        python, inv = str(project / ".venv/bin/python"), str(project / ".venv/bin/inv")
        workers = {"WARM_WORKERS_DIR": str(root / "w"), "IMAGE_BUILDER": "none"}
        counter = iter(range(1000))

        def stop() -> None:
            run([inv, "workers", "--stop"], project, **workers)

        def fresh_root() -> str:
            where = str(root / f"a{next(counter)}")
            run([python, "-c", PUBLISH, where], project, **workers)
            return where

        def via_engine(idle: str, cold: bool) -> float:
            where = fresh_root()
            if cold:
                stop()
            started = time.perf_counter()
            run([python, "-c", VIA_ENGINE, where, idle], project, **workers)
            return time.perf_counter() - started

        direct = timed(lambda: run([python, "-c", DIRECT, fresh_root()], project), REPEAT)
        off = [via_engine("0", cold=True) for _ in range(REPEAT)]
        cold = [via_engine("300", cold=True) for _ in range(REPEAT)]
        warm = [via_engine("300", cold=False) for _ in range(REPEAT)]

        # run-inference, worker alive, against importing pandas and scikit-learn.
        shared = fresh_root()
        override = ["-o", f"env.artifact_root={shared}"]
        run([inv, "train-adhoc", *override], project, **workers)
        run([inv, "deploy-workflow", *override], project, **workers)
        inference = timed(lambda: run([inv, "run-inference", *override], project, **workers),
                          REPEAT)
        imports = timed(lambda: run([python, "-c", "import pandas, sklearn.ensemble"], project),
                        REPEAT)

        # inv release with the environment built: worker stopped, then alive.
        def release(alive: bool) -> float:
            where = fresh_root()
            if not alive:
                stop()
            started = time.perf_counter()
            run([inv, "release", "-o", f"env.artifact_root={where}"], project, **workers)
            return time.perf_counter() - started

        release_cold = [release(alive=False) for _ in range(3)]
        release_warm = [release(alive=True) for _ in range(3)]
        step_imports = {
            step: median(timed(lambda s=statement: run([python, "-c", s], project), REPEAT))
            for step, statement in STEP_IMPORTS.items()
        }
        stop()
    save("workers", {
        "training_direct_s": median(direct),
        "training_engine_workers_off_s": median(off),
        "training_engine_no_worker_alive_s": median(cold),
        "training_engine_worker_alive_s": median(warm),
        "engine_workers_off_over_direct": round(median(off) / median(direct), 2),
        "engine_no_worker_alive_over_direct": round(median(cold) / median(direct), 2),
        "engine_worker_alive_over_direct": round(median(warm) / median(direct), 2),
        "run_inference_worker_alive_s": median(inference),
        "import_pandas_sklearn_s": median(imports),
        "run_inference_over_imports": round(median(inference) / median(imports), 2),
        "release_env_built_no_worker_s": median(release_cold),
        "release_env_built_worker_alive_s": median(release_warm),
        "step_imports_s": step_imports,
        "repeat": REPEAT,
    })


if __name__ == "__main__":
    main()
