"""The local release on the sample data: wall time with a per-step breakdown, the overhead
of kfp's local execution against calling the same step functions directly, and the speed-up
of a release whose (pinned) feature version exists already."""

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
        "repeat": REPEAT,
    })


if __name__ == "__main__":
    main()
