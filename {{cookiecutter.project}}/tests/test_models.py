"""Model publication and loading: one commit point under a race, verified loads."""

import multiprocessing
import pickle
from pathlib import Path

import pytest
from conftest import snapshot

from {{ cookiecutter.package }}.artifacts import models
from {{ cookiecutter.package }}.artifacts.names import ReleaseNames
from {{ cookiecutter.package }}.artifacts.store import AlreadyExistsError, StoreError, open_store

RACES = 300


def names(root: Path, i: int) -> ReleaseNames:
    return ReleaseNames("taxi", f"1.0.{i}", f"1.0.{i}", str(root))


def racer(root: Path, who: str, barrier, results) -> None:
    store = open_store(str(root))
    for i in range(RACES):
        barrier.wait()  # both publish the same version at the same moment, other bytes
        model = pickle.dumps({"trained_by": who, "race": i})
        try:
            models.publish(store, names(root, i), model, {"by": who})
            results.put((i, who, "won"))
        except AlreadyExistsError as error:
            results.put((i, who, str(error)))


@pytest.mark.heavy
def test_a_publish_race_has_one_winner_and_never_a_mixed_model(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    fork = multiprocessing.get_context("fork")
    barrier, results = fork.Barrier(2), fork.Queue()
    racers = [fork.Process(target=racer, args=(root, who, barrier, results)) for who in "ab"]
    for process in racers:
        process.start()
    outcomes: dict[int, list[tuple[str, str]]] = {}
    for _ in range(2 * RACES):
        i, who, outcome = results.get(timeout=120)
        outcomes.setdefault(i, []).append((who, outcome))
    for process in racers:
        process.join(timeout=30)
        assert process.exitcode == 0

    store = open_store(str(root))
    for i, pair in outcomes.items():
        winners = [who for who, outcome in pair if outcome == "won"]
        assert len(winners) == 1, pair
        (loser,) = [outcome for who, outcome in pair if outcome != "won"]
        assert "already released by another run" in loser
        metadata = models.read_metadata(store, names(root, i))
        assert metadata["by"] == winners[0]
        # The committed metadata names the winner's bytes, and they load, verified.
        assert models.load(store, names(root, i)) == {"trained_by": winners[0], "race": i}


def test_an_altered_model_is_refused_at_load(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    store = open_store(str(root))
    release = names(root, 0)
    committed = models.publish(store, release, pickle.dumps({"weights": [1, 2, 3]}), {})
    path = root / committed["model_key"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="does not match the sha256 recorded"):
        models.load(store, release)


def test_corrupt_or_missing_metadata_is_one_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    store = open_store(str(root))
    with pytest.raises(StoreError, match="no released model for version 1.0.0"):
        models.load(store, names(root, 0))
    store.write_text(names(root, 0).model_metadata_key, "{not json")
    before = snapshot(root)
    with pytest.raises(StoreError, match="is not model metadata"):
        models.load(store, names(root, 0))
    assert snapshot(root) == before
