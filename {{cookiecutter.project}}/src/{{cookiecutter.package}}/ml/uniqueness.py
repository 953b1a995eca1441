"""Which trip ids occur more than once in data too large for one frame.

`trip_id` is unique across everything a feature version is built from, however many files
and batches that is. One frame checks it with the schema; a stream of batches cannot, so
the ids are checked here first, out of core:

1. each id is hashed to 64 bits (pandas' hash with its fixed key: the same on every run and
   machine) and the hashes are spilled to `BUCKETS` files by their top bits;
2. each bucket (about 1/BUCKETS of the ids) is checked for repeated hashes in memory;
3. a repeated hash is only a candidate: a second pass keeps the ids whose hash is one and
   counts them exactly, so a hash collision never drops a trip.

Memory: one batch of ids and one bucket of hashes (8 bytes an id, divided by BUCKETS); disk:
8 bytes an id, in a temporary folder removed at the end.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

BUCKET_BITS = 6
BUCKETS = 1 << BUCKET_BITS


def id_hashes(ids: pd.Series) -> np.ndarray:
    """A 64-bit hash of each id, as text (an integer id and its text are one id)."""
    import pandas as pd

    # categorize=False: hash each value as it is; the default first factorizes the values,
    # a hash table of every id, to hash the distinct ones (ids are nearly all distinct).
    hashed = pd.util.hash_pandas_object(ids.astype(str), index=False, categorize=False)
    return hashed.to_numpy(dtype=np.uint64)


class IdSpill:
    """Ids' hashes spilled to bucket files as batches go by (`add`); `repeated()` then gives
    the hashes seen more than once. Use as a context manager: the files go at its end."""

    def __init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="trip-ids-")
        self._paths = [Path(self._folder.name) / f"{b:02d}.u64" for b in range(BUCKETS)]
        self._files = [path.open("ab") for path in self._paths]

    def __enter__(self) -> IdSpill:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()
        self._folder.cleanup()

    def _close(self) -> None:
        for handle in self._files:
            handle.close()

    def add(self, ids: pd.Series) -> None:
        hashes = id_hashes(ids.dropna())
        bucket = (hashes >> np.uint64(64 - BUCKET_BITS)).astype(np.intp)
        order = np.argsort(bucket, kind="stable")
        ends = np.cumsum(np.bincount(bucket, minlength=BUCKETS))
        for index, chunk in enumerate(np.split(hashes[order], ends[:-1])):
            if chunk.size:
                chunk.tofile(self._files[index])

    def repeated(self) -> np.ndarray:
        self._close()
        found = []
        for path in self._paths:
            values, counts = np.unique(np.fromfile(path, dtype=np.uint64), return_counts=True)
            found.append(values[counts > 1])
        return np.concatenate(found)


def confirmed(candidates: np.ndarray, batches: Iterable[pd.Series]) -> set[str]:
    """Of the ids whose hash is a candidate, those that really occur more than once."""
    if not candidates.size:
        return set()
    counts: Counter[str] = Counter()
    for ids in batches:
        ids = ids.dropna()
        counts.update(ids[np.isin(id_hashes(ids), candidates)].astype(str))
    return {trip_id for trip_id, n in counts.items() if n > 1}


def duplicate_ids(scan: Callable[[], Iterable[pd.Series]]) -> set[str]:
    """The ids that `scan()` (batches of ids; called once, or twice when a hash repeats)
    yields more than once, as text. Empty ids are left to the schema."""
    with IdSpill() as spill:
        for ids in scan():
            spill.add(ids)
        candidates = spill.repeated()
    return confirmed(candidates, scan()) if candidates.size else set()
