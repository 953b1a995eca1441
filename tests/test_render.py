"""Fast tier: render the template for every option combination and check what comes out."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from cookiecutter.exceptions import FailedHookException, UndefinedVariableInTemplate

from tests.conftest import DEFAULTS, render

COMBINATIONS = list(itertools.product(DEFAULTS["python_version"], DEFAULTS["license"],
                                      DEFAULTS["ci"]))

# The exact file set of the default project (MIT, GitHub Actions).
TASK_MODULES = ("__init__", "plumbing", "releasing", "verdicts", "runs", "serving",
                "experimenting", "operations", "development")
EXPECTED_FILES = {
    ".cruft.json", ".dockerignore", ".gitignore", "Dockerfile", "LICENSE", "README.md",
    "pyproject.toml", "uv.lock", *(f"tasks/{m}.py" for m in TASK_MODULES), "conf/config.yaml", "tests/conftest.py",
    "tests/kfp_api_double.py", "tests/vertex_api_double.py", "tests/test_vertex_engine.py",
    "tests/test_airflow.py", "tests/test_architecture.py",
    "tests/test_bigquery.py", "tests/test_step_table.py", "tests/test_workers.py",
    "tests/test_flat_trees.py", "tests/test_locked_installs.py", "tests/test_repeated_looks.py",
    "tests/test_bump.py", "tests/test_config.py", "tests/test_deployment.py",
    "tests/test_image.py", "tests/test_kfp_engine.py", "tests/test_ml.py", "tests/test_models.py",
    "tests/test_names.py", "tests/test_pipelines.py", "tests/test_release.py",
    "tests/test_reports.py", "tests/test_serving.py", "tests/test_store.py", "tests/test_tasks.py",
    "tests/test_traffic.py", "tests/test_version_code.py", ".github/workflows/cd-dev.yml",
    ".github/workflows/cd-prod.yml", ".github/workflows/ci.yml", "conf/env/airflow.yaml",
    "conf/env/dev.yaml", "conf/env/local.yaml", "conf/env/prod.yaml",
    "conf/experiment/deep_trees.yaml", "conf/experiment/forest.yaml",
    "conf/hparams_search/gradient_boosting_optuna.yaml",
    "conf/hparams_search/random_forest_optuna.yaml", "conf/hydra/sweeper/optuna.yaml",
    "conf/tracking/mlflow.yaml", "conf/tracking/none.yaml",
    "conf/lineage/none.yaml", "conf/lineage/console.yaml", "conf/lineage/file.yaml",
    "conf/lineage/http.yaml", "deploy/openlineage/facets.json",
    "src/taxi_eta/pipelines/openlineage_runs.py", "src/taxi_eta/pipelines/step_lineage.py",
    "src/taxi_eta/pipelines/step_runs.py",
    "conf/retention/default.yaml", "src/taxi_eta/release/retention.py",
    "tests/test_retention.py", "src/taxi_eta/release/sweep_records.py",
    "src/taxi_eta/release/debris.py", "src/taxi_eta/release/ticks.py",
    "src/taxi_eta/artifacts/leases.py", "src/taxi_eta/reports/retention_report.py",
    "tests/test_ticks.py", "tests/test_debris.py", "tests/test_pins.py",
    "tests/test_drift_calls.py", "tests/readme_layout.py", "tests/served.py",
    "tests/test_router.py",
    "src/taxi_eta/artifacts/gcs_store.py", "src/taxi_eta/artifacts/store_interface.py",
    "src/taxi_eta/artifacts/bigquery_predictions.py", "src/taxi_eta/engines/vertex_api.py",
    "src/taxi_eta/ml/confidence_sequences.py", "src/taxi_eta/ml/drift_statistics.py",
    "src/taxi_eta/pipelines/inference_steps.py", "src/taxi_eta/pipelines/step_context.py",
    "tests/test_lineage.py", "tests/test_metrics.py", "deploy/base/hpa.yaml",
    "deploy/base/pdb.yaml", "deploy/prometheus/prometheus.yml",
    "deploy/prometheus/kubernetes.yml", "deploy/grafana/serving.json",
    "tests/openlineage_spec/ColumnLineageDatasetFacet.json",
    "tests/openlineage_spec/DataQualityMetricsInputDatasetFacet.json",
    "tests/openlineage_spec/DatasetVersionDatasetFacet.json",
    "tests/openlineage_spec/EnvironmentVariablesRunFacet.json",
    "tests/openlineage_spec/ErrorMessageRunFacet.json",
    "tests/openlineage_spec/JobTypeJobFacet.json",
    "tests/openlineage_spec/OpenLineage.json",
    "tests/openlineage_spec/OutputStatisticsOutputDatasetFacet.json",
    "tests/openlineage_spec/ParentRunFacet.json",
    "tests/openlineage_spec/ProcessingEngineRunFacet.json",
    "tests/openlineage_spec/README.md",
    "tests/openlineage_spec/SQLJobFacet.json",
    "tests/openlineage_spec/SchemaDatasetFacet.json",
    "tests/openlineage_spec/SourceCodeLocationJobFacet.json",
    "tests/openlineage_spec/TagsJobFacet.json",
    "tests/openlineage_spec/TagsRunFacet.json",
    "src/hydra_plugins/taxi_eta_optuna.py", "src/taxi_eta/artifacts/tracking.py",
    "src/taxi_eta/tracking_server.py", "tests/test_experiments.py",
    "conf/data_source/bigquery.yaml", "conf/data_source/files.yaml",
    "conf/data_source/synthetic.yaml",
    "conf/feature_store/bigquery.yaml", "conf/feature_store/parquet.yaml",
    "conf/features/default.yaml", "conf/model/gradient_boosting.yaml",
    "conf/model/random_forest.yaml", "conf/model/ridge.yaml", "conf/predictions/bigquery.yaml",
    "conf/predictions/parquet.yaml", "deploy/base/deployment.yaml", "deploy/base/ingress.yaml",
    "deploy/base/kustomization.yaml", "deploy/base/service.yaml", "src/taxi_eta/__init__.py",
    "src/taxi_eta/config.py", "src/taxi_eta/errors.py", "src/taxi_eta/progress.py",
    "src/taxi_eta/background.py", "src/taxi_eta/release/local_servers.py",
    "src/taxi_eta/config_writer.py", "src/taxi_eta/engines/worker_homes.py",
    "src/taxi_eta/engines/worker_process.py", "src/taxi_eta/reports/charts.py",
    "src/taxi_eta/targets.py",
    "src/taxi_eta/train.py", "src/taxi_eta/version.py", "src/taxi_eta/artifacts/__init__.py",
    "src/taxi_eta/artifacts/bigquery.py", "src/taxi_eta/artifacts/bigquery_client.py",
    "src/taxi_eta/artifacts/code.py",
    "src/taxi_eta/artifacts/data_sources.py", "src/taxi_eta/artifacts/files_source.py",
    "src/taxi_eta/artifacts/bigquery_source.py", "src/taxi_eta/ml/schema.py",
    "tests/test_data_sources.py", "tests/test_ab.py", "src/taxi_eta/ml/paired.py",
    "src/taxi_eta/release/evidence.py", "src/taxi_eta/release/promotion.py",
    "src/taxi_eta/reports/ab.py", "src/taxi_eta/serving/shadow.py",
    "src/taxi_eta/serving/metrics.py", "src/taxi_eta/ml/drift.py",
    "src/taxi_eta/ml/numpy_models.py",
    "src/taxi_eta/reports/drift_report.py", "tests/test_drift.py",
    "src/taxi_eta/serving/batching.py",
    "src/taxi_eta/artifacts/feature_store.py", "src/taxi_eta/artifacts/models.py",
    "src/taxi_eta/artifacts/names.py", "src/taxi_eta/artifacts/predictions.py",
    "src/taxi_eta/artifacts/store.py", "src/taxi_eta/artifacts/traffic.py",
    "src/taxi_eta/engines/__init__.py", "src/taxi_eta/engines/airflow/__init__.py",
    "src/taxi_eta/engines/airflow/client.py", "src/taxi_eta/engines/airflow/dags.py",
    "src/taxi_eta/engines/airflow/engine.py",
    "src/taxi_eta/engines/kubeflow.py", "src/taxi_eta/engines/local.py",
    "src/taxi_eta/engines/vertex.py",
    "src/taxi_eta/engines/version_env.py", "src/taxi_eta/engines/workers.py",
    "src/taxi_eta/ml/__init__.py",
    "src/taxi_eta/ml/data.py", "src/taxi_eta/ml/evaluate.py", "src/taxi_eta/ml/features.py",
    "src/taxi_eta/ml/predict.py", "src/taxi_eta/ml/fitting.py", "src/taxi_eta/ml/flat_trees.py",
    "src/taxi_eta/pipelines/__init__.py",
    "src/taxi_eta/pipelines/kfp_pipelines.py", "src/taxi_eta/pipelines/step_table.py",
    "src/taxi_eta/pipelines/run_step.py", "src/taxi_eta/pipelines/steps.py",
    "src/taxi_eta/release/__init__.py", "src/taxi_eta/release/bump.py",
    "src/taxi_eta/release/code_publishing.py", "src/taxi_eta/release/context.py",
    "src/taxi_eta/release/deployment.py", "src/taxi_eta/release/git.py",
    "src/taxi_eta/release/image.py", "src/taxi_eta/release/inputs.py",
    "src/taxi_eta/release/lifecycle.py",
    "src/taxi_eta/release/plan.py", "src/taxi_eta/release/preflight.py",
    "src/taxi_eta/release/requirements.py",
    "src/taxi_eta/release/traffic_moves.py", "src/taxi_eta/release/workflows.py",
    "src/taxi_eta/reports/__init__.py", "src/taxi_eta/reports/compare.py",
    "src/taxi_eta/reports/experiments.py", "src/taxi_eta/reports/fixed_batch.py",
    "src/taxi_eta/reports/html.py", "src/taxi_eta/reports/tables.py",
    "src/taxi_eta/reports/versions.py", "src/taxi_eta/serving/__init__.py",
    "src/taxi_eta/serving/app.py", "src/taxi_eta/serving/endpoints.py",
    "src/taxi_eta/serving/forwarding.py",
    "src/taxi_eta/serving/limits.py",
    "src/taxi_eta/serving/router.py",
    "src/taxi_eta/ml/users.py", "src/taxi_eta/artifacts/sample_data.py", "tests/test_users.py",
    "src/taxi_eta/artifacts/intervals.py", "src/taxi_eta/artifacts/prediction_runs.py",
    "tests/test_intervals.py", "tests/test_feature_stream.py", "tests/test_shards.py",
    "src/taxi_eta/ml/uniqueness.py", "src/taxi_eta/pipelines/feature_build.py",
    "src/taxi_eta/ml/sampling.py",
}


def project_files(project: Path) -> set[str]:
    return {p.relative_to(project).as_posix() for p in project.rglob("*")
            if p.is_file() and ".git" not in p.relative_to(project).parts}


@pytest.fixture(scope="module")
def default_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(tmp_path_factory.mktemp("default"))


def test_default_project_has_exactly_the_expected_files(default_project: Path) -> None:
    assert project_files(default_project) == EXPECTED_FILES


def test_default_project_is_committed_locked_and_records_its_template(
        default_project: Path) -> None:
    def run(*command: str) -> str:
        return subprocess.run(command, cwd=default_project, capture_output=True, text=True,
                              check=True).stdout

    assert run("git", "status", "--porcelain") == ""
    assert set(run("git", "ls-files").split()) == EXPECTED_FILES
    # The committed lock is the one `uv sync --locked` (CI, CD, the image) accepts.
    run(str(Path(sys.executable).parent / "uv"), "lock", "--check", "--offline")
    record = json.loads((default_project / ".cruft.json").read_text())
    template = Path(__file__).resolve().parents[1]
    assert record["template"] == str(template)
    assert record["commit"] == subprocess.run(["git", "rev-parse", "HEAD"], cwd=template,
                                              capture_output=True, text=True).stdout.strip()
    assert record["context"]["cookiecutter"]["version"] == "0.1.0"


def test_the_first_bump_changes_one_line_of_the_lock(tmp_path: Path) -> None:
    """The hook writes the lock the way `inv bump` rewrites it (re-resolved from a lock), so
    the first bump's diff of uv.lock is the project's version line alone."""
    project = render(tmp_path)
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "0.1.0"', 'version = "0.2.0"'))
    subprocess.run([str(Path(sys.executable).parent / "uv"), "lock", "--quiet", "--offline"],
                   cwd=project, check=True)
    diff = subprocess.run(["git", "diff", "--numstat", "--", "uv.lock"], cwd=project,
                          capture_output=True, text=True, check=True).stdout.split()
    assert diff == ["1", "1", "uv.lock"]


@pytest.mark.parametrize("python_version,license_,ci", COMBINATIONS)
def test_every_option_combination_renders_cleanly(tmp_path: Path, python_version: str,
                                                  license_: str, ci: str) -> None:
    project = render(tmp_path, python_version=python_version, license=license_, ci=ci)
    files = project_files(project)
    assert ("LICENSE" in files) == (license_ != "Proprietary")
    assert any(f.startswith(".github/") for f in files) == (ci != "none")
    for name in files:
        text = (project / name).read_text()
        assert "{{" not in text.replace("${{", "") and "{%" not in text, name
        # .cruft.json is cruft's record of the answers, keyed "cookiecutter" by its format.
        if name != ".cruft.json":
            assert "cookiecutter" not in text, f"template variable left in {name}"
        if name.endswith(".toml"):
            tomllib.loads(text)
        elif name.endswith((".yaml", ".yml")):
            list(yaml.safe_load_all(text))
        elif name.endswith(".json"):
            json.loads(text)
        elif name.endswith(".py"):
            compile(text, name, "exec")
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"].startswith(f">={python_version}")
    assert pyproject.get("project", {}).get("license") == (
        None if license_ == "Proprietary" else license_)


def test_generated_project_is_a_git_repo_with_one_clean_commit(default_project: Path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=default_project, capture_output=True,
                              text=True, check=True).stdout.strip()

    assert git("branch", "--show-current") == "main"
    assert len(git("log", "--oneline").splitlines()) == 1
    assert git("status", "--porcelain") == ""


def test_the_version_is_written_in_exactly_one_file(tmp_path: Path) -> None:
    project = render(tmp_path, version="7.3.1")
    holders = {f for f in project_files(project) if "7.3.1" in (project / f).read_text()}
    # Written once, in pyproject.toml. The others only mirror it: uv.lock is derived from it
    # (`inv bump` refreshes it), .cruft.json records the answers the project was made with,
    # and the README's examples name the version the user chose. No code or config does.
    assert holders == {"pyproject.toml", "uv.lock", ".cruft.json", "README.md"}


def test_hostile_but_valid_answers_render_as_data(tmp_path: Path) -> None:
    author = "Zoë O'Brien-Łukasz (ML) <team>"
    description = "ETA model: 'fast' & <safe> — ünïcode ✓"
    project = render(tmp_path, author=author, description=description)
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["authors"][0]["name"] == author
    assert pyproject["project"]["description"] == description
    package_doc = (project / "src/taxi_eta/__init__.py").read_text()
    compile(package_doc, "__init__.py", "exec")


@pytest.mark.parametrize("text", [
    "x {% tags %} y",  # was: TemplateSyntaxError, a 35-line traceback
    "x {{ braces }} y",  # was: 'braces' is undefined
    "x {{ 7*7 }} y",  # was: rendered as "x 49 y"
    "x {# note #} y {% endraw %} z {%- raw -%}",
])
def test_answers_with_jinja_syntax_are_kept_as_text(tmp_path: Path, text: str) -> None:
    """cookiecutter renders answers as templates; the template keeps them as typed."""
    project = render(tmp_path, description=text, author=f"Ann {text}")
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["description"] == text
    assert pyproject["project"]["authors"][0]["name"] == f"Ann {text}"
    assert (project / "README.md").read_text().splitlines()[2] == text
    assert json.loads((project / ".cruft.json").read_text())["context"]["cookiecutter"][
        "description"] == text  # what `cruft update` renders again, kept as text there too


def test_an_answer_naming_another_answer_is_rendered_as_a_default_is(tmp_path: Path) -> None:
    project = render(tmp_path, bucket="{{ cookiecutter.gcp_project }}-data")
    assert "artifact_root: gs://taxi-eta-ml-data\n" in (project / "conf/env/prod.yaml").read_text()


@pytest.mark.parametrize("answers,error", [
    ({"project": "Bad Name", "package": "bad_name"}, "ERROR: project:"),
    ({"package": "import"}, "ERROR: package:"),
    ({"package": "os"}, "ERROR: package:"),
    ({"version": "1.0-banana"}, "ERROR: version:"),
    ({"bucket": "Bucket!"}, "ERROR: bucket:"),
    ({"gcp_project": "x"}, "ERROR: gcp_project:"),
    ({"region": "moon-1"}, "ERROR: region:"),
    ({"author": "a\"; import os; os.system('id') #"}, "ERROR: author:"),
    ({"description": "{{ cookiecutter.project }}\n"}, "ERROR: description:"),
])
def test_bad_answers_generate_nothing(tmp_path: Path, capfd, answers: dict,
                                      error: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(FailedHookException):
        render(out, **answers)
    assert error in capfd.readouterr().err
    leftovers = [p for p in out.rglob("*") if p.is_file()]
    assert leftovers == []
    assert not (tmp_path / "escape").exists()


@pytest.mark.parametrize("project", ["eta", "acme-delivery-eta-models"])
def test_generated_code_is_ruff_clean_whatever_the_name_length(tmp_path: Path,
                                                               project: str) -> None:
    """Names change line lengths: the formatter's verdict must not depend on them."""
    generated = render(tmp_path, project=project)
    ruff = str(Path(sys.executable).parent / "ruff")
    for command in ([ruff, "check", "--no-cache", "."],
                    [ruff, "format", "--check", "--no-cache", "."]):
        result = subprocess.run(command, cwd=generated, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("project", ["..", ".", "../escape", "a/b", "a\\\\b", ""])
def test_path_like_project_names_create_and_delete_nothing(tmp_path: Path, project: str) -> None:
    """cookiecutter removes the project directory when a hook fails; for `..` that directory
    would be the user's own. The name is refused before any directory exists."""
    keep = tmp_path / "keep.txt"
    keep.write_text("mine")
    out = tmp_path / "not-yet" / "out"  # does not exist: `out/..` would look new
    with pytest.raises(UndefinedVariableInTemplate) as refused:
        render(out, project=project)
    assert "is not a plain directory name" in str(refused.value.error)
    assert keep.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["keep.txt"]


def test_the_readmes_commands_name_no_version_the_user_did_not_choose(tmp_path: Path) -> None:
    """A project may start at any version: the README's commands name the one it was
    generated with (and what `inv bump --to minor` makes of it), or read it (`$(uv version
    --short)`), never an example's (issue 52)."""
    import re

    project = render(tmp_path, version="1.4.0")
    readme = (project / "README.md").read_text()
    commands = "\n".join(re.findall(r"```bash\n(.*?)```", readme, flags=re.S))
    versions = set(re.findall(r"(?<![\d.=])\d+\.\d+\.\d+(?![\d.])", commands))
    assert versions <= {"1.4.0", "1.5.0"}, versions
