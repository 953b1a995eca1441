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

    return pd.util.hash_pandas_object(ids.astype(str), index=False).to_numpy(dtype=np.uint64)


def duplicate_ids(scan: Callable[[], Iterable[pd.Series]]) -> set[str]:
    """The ids that `scan()` (batches of ids; called once, or twice when a hash repeats)
    yields more than once, as text. Empty ids are left to the schema."""
    candidates = _repeated_hashes(scan())
    if not candidates.size:
        return set()
    counts: Counter[str] = Counter()
    for ids in scan():
        ids = ids.dropna()
        counts.update(ids[np.isin(id_hashes(ids), candidates)].astype(str))
    return {trip_id for trip_id, n in counts.items() if n > 1}


def _repeated_hashes(batches: Iterable[pd.Series]) -> np.ndarray:
    shift = np.uint64(64 - BUCKET_BITS)
    with tempfile.TemporaryDirectory(prefix="trip-ids-") as spill:
        paths = [Path(spill) / f"{bucket:02d}.u64" for bucket in range(BUCKETS)]
        files = [path.open("ab") for path in paths]
        try:
            for ids in batches:
                hashes = id_hashes(ids.dropna())
                bucket = (hashes >> shift).astype(np.intp)
                order = np.argsort(bucket, kind="stable")
                ends = np.cumsum(np.bincount(bucket, minlength=BUCKETS))
                for index, chunk in enumerate(np.split(hashes[order], ends[:-1])):
                    if chunk.size:
                        chunk.tofile(files[index])
        finally:
            for handle in files:
                handle.close()
        repeated = []
        for path in paths:
            values, counts = np.unique(np.fromfile(path, dtype=np.uint64), return_counts=True)
            repeated.append(values[counts > 1])
    return np.concatenate(repeated)
