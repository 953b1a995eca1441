"""The artifact store contract, against a local directory and a real GCS emulator server."""

from pathlib import Path

import pytest

from {{ cookiecutter.package }}.artifacts.store import (
    AlreadyExistsError,
    ArtifactStore,
    LocalStore,
    StoreError,
    open_store,
)


@pytest.fixture(params=["local", "gcs"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return open_store(str(tmp_path / "store"))
    return open_store(request.getfixturevalue("gcs_root"))


def test_write_read_exists_list(store: ArtifactStore) -> None:
    assert not store.exists("models/1.0.0/model.pkl")
    store.write("models/1.0.0/model.pkl", b"model")
    store.write("models/1.0.0/metadata.json", b"{}")
    store.write("features/1.0.0/train.parquet", b"f")
    assert store.exists("models/1.0.0/model.pkl")
    assert store.read("models/1.0.0/model.pkl") == b"model"
    assert store.list("models/") == ["models/1.0.0/metadata.json", "models/1.0.0/model.pkl"]
    assert store.uri("models/1.0.0/model.pkl").endswith("/models/1.0.0/model.pkl")


def test_released_artifacts_are_never_overwritten(store: ArtifactStore) -> None:
    store.write("models/1.0.0/model.pkl", b"first")
    with pytest.raises(AlreadyExistsError, match="immutable"):
        store.write("models/1.0.0/model.pkl", b"second")
    assert store.read("models/1.0.0/model.pkl") == b"first"


def test_replace_is_for_mutable_records(store: ArtifactStore) -> None:
    store.replace("schedules/1.0.0.json", b"on")
    store.replace("schedules/1.0.0.json", b"off")
    assert store.read("schedules/1.0.0.json") == b"off"


def test_missing_key_is_a_clear_error(store: ArtifactStore) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        store.read("models/9.9.9/model.pkl")


def test_local_writes_leave_no_partial_file(tmp_path: Path, monkeypatch) -> None:
    store = LocalStore(tmp_path)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("os.link", fail)
    with pytest.raises(OSError, match="disk full"):
        store.write("models/1.0.0/model.pkl", b"x" * 1000)
    assert not (tmp_path / "models/1.0.0/model.pkl").exists()
    assert [p.name for p in (tmp_path / "models/1.0.0").iterdir()] == []


def test_keys_cannot_escape_the_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="outside the store"):
        LocalStore(tmp_path / "store").write("../escape.txt", b"x")
    assert not (tmp_path / "escape.txt").exists()


def test_unsupported_scheme_is_refused() -> None:
    with pytest.raises(StoreError, match="unsupported artifact root"):
        open_store("s3://bucket")
