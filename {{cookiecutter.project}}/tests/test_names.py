import pytest

from {{ cookiecutter.package }}.artifacts.names import (
    InvalidVersionError,
    ReleaseNames,
    check_run_id,
    names_for,
)


@pytest.fixture
def names() -> ReleaseNames:
    return ReleaseNames(
        project="taxi",
        version="1.2.0",
        feature_version="1.1.0",
        artifact_root="gs://bucket",
        registry="eu-docker.pkg.dev/p/r",
    )


def test_every_versioned_name_follows_the_contract(names: ReleaseNames) -> None:
    assert names.git_tag == "v1.2.0"
    assert names.image == "eu-docker.pkg.dev/p/r/taxi:1.2.0"
    assert names.features_key() == "features/1.1.0/train/manifest.json"
    assert names.model_key("0123456789abcdef" * 4) == "models/1.2.0/model-0123456789abcdef.pkl"
    assert names.model_metadata_key == "models/1.2.0/metadata.json"
    assert names.workflow_key("training") == "workflows/1.2.0/training.yaml"
    assert names.workflow_key("inference") == "workflows/1.2.0/inference.yaml"
    assert names.pipeline_name("training") == "taxi-training"
    assert names.pipeline_version_name == "1.2.0"
    assert names.recurring_run_name("inference") == "taxi-inference-v1.2.0"
    assert names.predictions_key("r1") == "predictions/1.2.0/r1.parquet"
    assert names.endpoint_path == "/v1.2.0/predict"
    assert names.deployment_name == "taxi-v1-2-0"
    assert names.release_record_key == "releases/1.2.0.json"
    assert names.uri(names.model_metadata_key) == "gs://bucket/models/1.2.0/metadata.json"


def test_without_registry_the_image_stays_in_local_storage() -> None:
    names = ReleaseNames("taxi", "0.1.0", "0.1.0", "/tmp/a")
    assert names.image == "localhost/taxi:0.1.0"


@pytest.mark.parametrize("bad", ["1.0.0+local", "01.2", "v1.0", "1.0 ", "", "latest", "1.0.0/x"])
def test_invalid_versions_are_refused(bad: str) -> None:
    with pytest.raises(InvalidVersionError, match="invalid version"):
        ReleaseNames("taxi", bad, "0.1.0", "/tmp/a")


def test_feature_version_follows_the_release_version_unless_pinned(cfg) -> None:
    assert names_for(cfg).feature_version == names_for(cfg).version
    assert names_for(cfg, "9.9.9").feature_version == "9.9.9"
    cfg.features.version = "0.0.1"
    assert names_for(cfg).feature_version == "0.0.1"
    assert names_for(cfg, "9.9.9").feature_version == "9.9.9"


@pytest.mark.parametrize(
    "run_id", ["../../x", "../../models/9.9.9/x", "", "a/b", ".hidden", "x" * 129, "a..b", "a b"]
)
def test_run_ids_that_could_form_other_paths_are_refused(run_id: str) -> None:
    with pytest.raises(InvalidVersionError, match="invalid run id"):
        ReleaseNames("taxi", "0.1.0", "0.1.0", "/tmp/a").predictions_key(run_id)


def test_run_ids_that_name_a_file() -> None:
    names = ReleaseNames("taxi", "0.1.0", "0.1.0", "/tmp/a")
    assert names.predictions_key("20261128T092743-296d2a") == (
        "predictions/0.1.0/20261128T092743-296d2a.parquet"
    )
    assert check_run_id("batch_1.v2") == "batch_1.v2"


def test_bigquery_table_names_carry_the_feature_version() -> None:
    from {{ cookiecutter.package }}.artifacts.names import bigquery_features_table

    assert bigquery_features_table("train", "1.2.0") == "train_v1_2_0"
    assert bigquery_features_table("train", "2.0.0rc1") == "train_v2_0_0rc1"
    assert bigquery_features_table("train") == "train"  # the version_column layout
    with pytest.raises(ValueError):
        bigquery_features_table("train", "1.2.0; DROP TABLE x")
