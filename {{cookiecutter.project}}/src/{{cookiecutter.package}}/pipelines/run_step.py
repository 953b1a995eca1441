"""One command task of a workflow, for engines that run commands (Airflow).

    python -m {{ cookiecutter.package }}.pipelines.run_step build-features|train|predict

The tasks and their steps are the step table's (`pipelines.step_table`): a task runs its
steps in order, passing artifacts between them as files. The parameters arrive as
base64-encoded JSON in STEP_ARGUMENTS (no quoting through a shell or a template engine can
alter them); RUN_ID names an inference run, START and END its data interval;
LINEAGE the lineage settings of a run `inv` started; OPENLINEAGE_PARENT_ID (`namespace/job/
run id`, from the Airflow OpenLineage provider's `lineage_parent_id` macro) makes the task
instance the parent of the steps' lineage runs.
The result is the last line printed, which Airflow keeps as the task's XCom (and, in a pod
started by KubernetesPodOperator, /airflow/xcom/return.json). A known failure is one
`error:` line and exit code 1.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

from {{ cookiecutter.package }}.errors import UserError
from {{ cookiecutter.package }}.pipelines.openlineage_runs import Lineage, RunRef
from {{ cookiecutter.package }}.pipelines.step_runs import run_task
from {{ cookiecutter.package }}.pipelines.step_table import task_names

XCOM_DIR = Path("/airflow/xcom")


def encode(arguments: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(arguments, sort_keys=True).encode()).decode()


def decode(text: str) -> dict[str, Any]:
    return dict(json.loads(base64.b64decode(text)))


def run(
    task: str,
    arguments: dict[str, Any],
    run_id: str = "",
    start: str = "",
    end: str = "",
    shard: int = 0,
    lineage: str = "",
    lineage_parent: str = "",
) -> str:
    """Run `task`; a run id, a data interval and lineage settings given at run time (a
    manual run's conf, the DAG run's data interval) take the place of the compiled
    defaults; `shard` is the mapped task's (SHARD); `lineage_parent` the Airflow task
    instance's lineage run, the parent of the steps' runs."""
    interval = {name: value for name, value in (("start", start), ("end", end)) if value}
    if lineage and "lineage" in arguments:
        arguments = {**arguments, "lineage": lineage}
    parent = RunRef.parse(lineage_parent)
    if parent is not None and "lineage" in arguments:
        arguments = {
            **arguments,
            "lineage": Lineage.from_json(arguments["lineage"]).to_json(parent),
        }
    return str(run_task(task, {**arguments, "run_id": run_id, **interval, "shard": shard}))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: run_step " + "|".join(task_names()), file=sys.stderr)
        return 2
    try:
        result = run(
            args[0],
            decode(os.environ["STEP_ARGUMENTS"]),
            os.environ.get("RUN_ID", ""),
            os.environ.get("START", ""),
            os.environ.get("END", ""),
            int(os.environ.get("SHARD", "0")),
            os.environ.get("LINEAGE", ""),
            os.environ.get("OPENLINEAGE_PARENT_ID", ""),
        )
    except (UserError, ValueError, KeyError) as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(result)  # the last line: BashOperator's XCom
    if XCOM_DIR.is_dir():  # in a KubernetesPodOperator pod with do_xcom_push
        (XCOM_DIR / "return.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
