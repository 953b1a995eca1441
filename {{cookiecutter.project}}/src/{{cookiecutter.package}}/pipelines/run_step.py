"""One pipeline step from the command line, for engines that run commands (Airflow).

    python -m {{ cookiecutter.package }}.pipelines.run_step build-features|train|predict

The step's arguments arrive as base64-encoded JSON in STEP_ARGUMENTS (no quoting through a
shell or a template engine can alter them); RUN_ID names an inference run. The result is
the last line printed, which Airflow keeps as the task's XCom (and, in a pod started by
KubernetesPodOperator, /airflow/xcom/return.json). The steps are the ones kfp's
components call (`pipelines.steps`); only the glue differs. A known failure is one
`error:` line and exit code 1.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from {{ cookiecutter.package }}.artifacts.names import ReleaseNames
from {{ cookiecutter.package }}.errors import UserError
from {{ cookiecutter.package }}.pipelines import steps

STEPS = ("build-features", "train", "predict")
XCOM_DIR = Path("/airflow/xcom")


def encode(arguments: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(arguments, sort_keys=True).encode()).decode()


def decode(text: str) -> dict[str, Any]:
    return dict(json.loads(base64.b64decode(text)))


def run(step: str, arguments: dict[str, Any], run_id: str = "") -> str:
    if step not in STEPS:
        raise UserError(f"unknown step {step!r}: use one of {', '.join(STEPS)}")
    names = ReleaseNames(
        arguments["project"],
        arguments["version"],
        arguments["feature_version"],
        arguments["artifact_root"],
    )
    storage = arguments.get("storage", "{}")
    features = steps.feature_store_of(names, storage)
    n_trips, seed, rush_hours = arguments["n_trips"], arguments["seed"], arguments["rush_hours"]
    source = steps.data_source_of(names, storage, n_trips, seed)
    invalid_share = steps.max_invalid_share(storage)
    if step == "build-features":
        return steps.ensure_features(
            names, n_trips, seed, rush_hours, features, source, invalid_share
        )
    with tempfile.TemporaryDirectory() as scratch:
        if step == "train":  # fit, evaluate and publish: one task, the model never leaves it
            model_path = str(Path(scratch) / "model.pkl")
            metrics = steps.train_and_evaluate(
                names,
                json.loads(arguments["model_config"]),
                arguments["test_fraction"],
                arguments["seed"],
                model_path,
                features,
            )
            return steps.publish_model(
                names,
                model_path,
                metrics,
                arguments["git_sha"],
                json.loads(arguments["config"]),
                features,
            )
        if step == "predict":
            batch = str(Path(scratch) / "batch.parquet")
            steps.make_batch_features(
                names, n_trips, seed, rush_hours, batch, source, invalid_share
            )
            sink = steps.predictions_of(names, storage)
            return steps.predict_batch(names, batch, run_id, sink) or "no user clusters"
    raise UserError(f"unknown step {step!r}: use one of {', '.join(STEPS)}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: run_step " + "|".join(STEPS), file=sys.stderr)
        return 2
    try:
        result = run(args[0], decode(os.environ["STEP_ARGUMENTS"]), os.environ.get("RUN_ID", ""))
    except (UserError, ValueError, KeyError) as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(result)  # the last line: BashOperator's XCom
    if XCOM_DIR.is_dir():  # in a KubernetesPodOperator pod with do_xcom_push
        (XCOM_DIR / "return.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
