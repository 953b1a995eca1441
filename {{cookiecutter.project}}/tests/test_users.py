"""User ids of any type map to user clusters by one stable hash (`ml.users`): integers,
strings and UUIDs, in pandas here and in BigQuery SQL (`test_bigquery.py`)."""

from __future__ import annotations

import hashlib
import uuid

import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.package }}.ml.data import make_trips
from {{ cookiecutter.package }}.ml.schema import shape
from {{ cookiecutter.package }}.ml.users import NO_CLUSTER, user_cluster, user_key

IDS = [0, 1, 411, -7, 2**40, "u411", " u411 ", "411", str(uuid.UUID(int=12345)), "Ünïcode"]


def by_the_documented_rule(key: str, n: int = 8) -> int:
    """The README's rule, written out as a product's engineer would."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:14], 16) % n


def test_integers_strings_and_uuids_map_by_the_documented_rule() -> None:
    for user_id in IDS:
        expected = by_the_documented_rule(str(user_id).strip())
        assert user_cluster(user_id) == expected, user_id
    assert user_cluster(411) == user_cluster("411") == user_cluster(np.int64(411))
    assert user_cluster(411.0) == user_cluster(411)  # an integer column read with gaps
    assert user_cluster(uuid.UUID(int=12345)) == user_cluster(str(uuid.UUID(int=12345)))
    assert user_cluster("u411") == user_cluster(" u411 ") == 5


def test_an_array_of_ids_maps_as_each_id_does_and_marks_what_is_not_an_id() -> None:
    ids = pd.Series([*IDS, None, "", "  ", 1.5, float("nan")], dtype=object)
    clusters = user_cluster(ids)
    assert clusters.dtype == np.int64
    assert list(clusters[: len(IDS)]) == [user_cluster(i) for i in IDS]
    assert list(clusters[len(IDS) :]) == [NO_CLUSTER] * 5
    assert list(user_cluster(pd.Series([True, False]))) == [NO_CLUSTER] * 2  # a flag, not an id
    assert [user_key(v) for v in (None, "", 1.5, True)] == [None] * 4
    with pytest.raises(ValueError, match="is not a user id"):
        user_cluster("")


def test_clusters_are_balanced_for_many_users() -> None:
    counts = np.bincount(user_cluster(np.arange(80_000)), minlength=8)
    assert counts.min() > 0.95 * 10_000 and counts.max() < 1.05 * 10_000
    strings = np.bincount(user_cluster([str(uuid.UUID(int=i)) for i in range(8_000)]))
    assert strings.min() > 0.85 * 1_000


def test_string_and_uuid_ids_are_shaped_and_unusable_ids_are_invalid_rows() -> None:
    trips = make_trips(400, 3).drop(columns=["user_cluster"])
    trips["user_id"] = [f"user-{i % 37}" for i in range(200)] + [
        str(uuid.UUID(int=i % 41)) for i in range(200)
    ]
    trips = trips.astype({"user_id": object})
    trips.loc[[5, 250], "user_id"] = ["", None]
    shaped, report = shape(trips, True, 0.01)
    assert report.invalid == {"user_id: not an id (an integer or a string)": 2}
    assert len(shaped) == 398
    assert list(shaped["user_cluster"]) == [
        user_cluster(i) for i in trips["user_id"].drop(index=[5, 250])
    ]
