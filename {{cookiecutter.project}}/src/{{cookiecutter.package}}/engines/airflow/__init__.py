"""Apache Airflow as the workflow engine: one DAG per version and workflow.

`client` speaks Airflow's REST API, `dags` writes a version's DAG file, `engine` is the
engine (`env.engine: airflow`).

Airflow does not version DAGs, so the id does: `<project>_training__v1_2_0` and
`<project>_inference__v1_2_0` (`ReleaseNames.airflow_dag_id`). Registering a version's
workflow writes its DAG file to the DAGs folder (a local path, or Composer's
`gs://<bucket>/dags` through the artifact store), create-only: the same file again is a
no-op, a different one under the same version is refused. Then it waits until Airflow has
parsed it. Its schedule is in the file (from `conf/config.yaml: schedules`); whether it runs
is the DAG's paused state: new DAGs start paused, `create_schedules` unpauses, `retire` and
`rollback` pause and unpause, nothing is ever deleted.

Each task runs `python -m {{ cookiecutter.package }}.pipelines.run_step` with the version's
own interpreter (its environment, built from its released wheel), so every version runs its
own code beside the others. In a cluster (`AIRFLOW_OPERATOR=kubernetes`, e.g. Cloud
Composer) each task is a KubernetesPodOperator running the same command in the version's
image.

Everything goes through Airflow's stable REST API (v2): `AIRFLOW_HOST`, and a token
(`AIRFLOW_TOKEN`) or a user (`AIRFLOW_USERNAME`, `AIRFLOW_PASSWORD`) exchanged at
`/auth/token`.
"""

from {{ cookiecutter.package }}.engines.airflow.client import AirflowClient, google_access_token
from {{ cookiecutter.package }}.engines.airflow.dags import DagWriter
from {{ cookiecutter.package }}.engines.airflow.engine import AirflowEngine
from {{ cookiecutter.package }}.pipelines.step_table import parameters_of

__all__ = [
    "AirflowClient",
    "AirflowEngine",
    "DagWriter",
    "google_access_token",
    "parameters_of",
]
