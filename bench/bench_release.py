"""The local release on the sample data: wall time with a per-step breakdown, the overhead
of kfp's local execution against calling the same step functions directly, the speed-up
of a release whose (pinned) feature version exists already, and the cost of running a
version in its own environment: building it cold (empty uv cache) and warm, and train-adhoc
in the version's environment against the same run with the checkout's interpreter."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import TOOLS, generated_project, median, run, save, timed  # noqa: E402

REPEAT = 3

# Both variants run in a fresh interpreter, as a pipeline task does: imports are part of it.
DIRECT = """
import sys, tempfile
from taxi_eta.config import load_config
from taxi_eta.artifacts.names import names_for
from taxi_eta.pipelines import steps
from taxi_eta.release.workflows import workflow_parameters
from taxi_eta.release.context import ReleaseContext
import json
cfg = load_config("local", [f"env.artifact_root={sys.argv[1]}"])
ctx = ReleaseContext.create(cfg)
p = workflow_parameters(ctx, "training", "bench")
names = ctx.names
steps.ensure_features(names, p["n_trips"], p["seed"], p["rush_hours"])
model_path = tempfile.mktemp()
metrics = steps.train_and_evaluate(names, json.loads(p["model_config"]), p["test_fraction"],
                                   p["seed"], model_path)
steps.publish_model(names, model_path, metrics, "bench", json.loads(p["config"]))
"""
VIA_KFP = """
import sys
from taxi_eta.config import load_config
from taxi_eta.release.context import ReleaseContext
from taxi_eta.release.workflows import train_adhoc
cfg = load_config("local", [f"env.artifact_root={sys.argv[1]}"])
train_adhoc(ReleaseContext.create(cfg), "bench")
"""
# train-adhoc timed inside the process, after setup. "own": the version's code is published
# and its environment exists (warm), so every task runs with the version's interpreter;
# "checkout": no published code, so the tasks run with the checkout's interpreter.
ADHOC = """
import sys, time
from taxi_eta.config import load_config
from taxi_eta.release.code_publishing import publish_code
from taxi_eta.release.context import ReleaseContext
from taxi_eta.release.workflows import train_adhoc
ctx = ReleaseContext.create(load_config("local", [f"env.artifact_root={sys.argv[1]}"]))
head = ctx.git.head()
if sys.argv[2] == "own":
    publish_code(ctx, head)
    ctx.engine.prepare(ctx.names)
started = time.perf_counter()
train_adhoc(ctx, head)
print("ELAPSED", time.perf_counter() - started)
"""
# Build the environment of the published version into an empty folder.
ENV_BUILD = """
import sys, time
from pathlib import Path
from taxi_eta.artifacts.code import read_code
from taxi_eta.config import load_config
from taxi_eta.engines.version_env import VersionEnvironments
from taxi_eta.release.code_publishing import publish_code
from taxi_eta.release.context import ReleaseContext
ctx = ReleaseContext.create(load_config("local", [f"env.artifact_root={sys.argv[1]}"]))
record = read_code(ctx.store, ctx.names) or publish_code(ctx, ctx.git.head())
environments = VersionEnvironments(ctx.store, Path(sys.argv[2]), ctx.names.version)
started = time.perf_counter()
environments.ensure(ctx.names, record)
print("ELAPSED", time.perf_counter() - started)
"""


def elapsed(result) -> float:
    return float(result.stdout.rsplit("ELAPSED", 1)[1])


def release(project: Path) -> dict:
    inv = str(project / ".venv/bin/inv")
    seconds = timed(lambda: run([inv, "release"], project, IMAGE_BUILDER="none"), 1)[0]
    version = run([str(TOOLS / "poetry"), "version", "--short"], project).stdout.strip()
    record = json.loads((project / f"artifacts/releases/{version}.json").read_text())
    return {"version": version, "wall_s": round(seconds, 3), "steps_s": record["timings_s"]}


def bump(project: Path, rule: str) -> None:
    run([str(TOOLS / "poetry"), "version", rule], project)
    run(["git", "commit", "-q", "-am", f"bump {rule}"], project)


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        project = generated_project(root)
        python = str(project / ".venv/bin/python")
        counter = iter(range(1000))
        direct = timed(lambda: run([python, "-c", DIRECT, str(root / f"d{next(counter)}")],
                                   project), REPEAT)
        via_kfp = timed(lambda: run([python, "-c", VIA_KFP, str(root / f"k{next(counter)}")],
                                    project), REPEAT)

        code_root = str(root / "code-store")
        cold = elapsed(run([python, "-c", ENV_BUILD, code_root, str(root / "env-cold")],
                           project, UV_CACHE_DIR=str(root / "empty-uv-cache")))
        warm = [elapsed(run([python, "-c", ENV_BUILD, code_root, str(root / f"env-warm{i}")],
                            project)) for i in range(REPEAT)]
        checkout_runs, own_runs = [], []
        for i in range(REPEAT):
            for kind, samples in (("checkout", checkout_runs), ("own", own_runs)):
                result = run([python, "-c", ADHOC, str(root / f"{kind}{i}"), kind], project)
                samples.append(elapsed(result))

        releases = [release(project)]               # 0.1.0: features computed
        bump(project, "patch")
        releases.append(release(project))           # 0.1.1: features computed
        features = project / "conf/features/default.yaml"
        features.write_text(features.read_text().replace("version: ${version:}",
                                                          "version: 0.1.1"))
        bump(project, "patch")
        releases.append(release(project))           # 0.1.2: features 0.1.1 reused
    computed = [r["steps_s"]["train-adhoc"] for r in releases[:2]]
    reused = releases[2]["steps_s"]["train-adhoc"]
    save("release", {
        "releases": releases,
        "training_direct_s": median(direct),
        "training_via_kfp_local_s": median(via_kfp),
        "kfp_local_over_direct": round(median(via_kfp) / median(direct), 2),
        "train_adhoc_features_computed_s": median(computed),
        "train_adhoc_features_reused_s": reused,
        "feature_reuse_speedup": round(median(computed) / reused, 2),
        "version_env_build_cold_s": round(cold, 3),
        "version_env_build_warm_s": median(warm),
        "train_adhoc_checkout_interpreter_s": median(checkout_runs),
        "train_adhoc_version_env_s": median(own_runs),
        "version_env_adds_to_a_run_s": round(median(own_runs) - median(checkout_runs), 3),
        "repeat": REPEAT,
    })


if __name__ == "__main__":
    main()
