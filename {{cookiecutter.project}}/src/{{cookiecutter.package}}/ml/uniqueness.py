"""Which trip ids occur more than once in data too large for one frame.

`trip_id` is unique across everything a feature version is built from, however many files
and batches that is. One frame checks it with the schema; a stream of batches cannot, so
the ids are checked here first, out of core:

1. each id is hashed to 64 bits (`id_hashes`: the same on every run and machine) and the
   hashes are spilled to `BUCKETS` files by their top bits;
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
    import pyarrow as pa

BUCKET_BITS = 6
BUCKETS = 1 << BUCKET_BITS


# SplitMix64's finalizer (Steele, Lea and Flood 2014): every bit of a word moves every bit
# of the hash, so the hashes of ids that differ in one character are unrelated.
_MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))
_SEED = np.uint64(0x9E3779B97F4A7C15)


def _mixed(x: np.ndarray) -> np.ndarray:
    x = (x ^ (x >> np.uint64(30))) * _MIX[0]
    x = (x ^ (x >> np.uint64(27))) * _MIX[1]
    return x ^ (x >> np.uint64(31))  # type: ignore[no-any-return]


def id_hashes(ids: pd.Series | pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit hash of each id, as text (an integer id and its text are one id; a missing
    one hashes as the empty text): its length, then its UTF-8 bytes eight at a time (the
    last word padded with spaces), folded by SplitMix64's finalizer. The same on every run,
    machine and batch size; computed on whole columns by pyarrow and numpy, about 5x faster
    than pandas' `hash_pandas_object` on text (each shard of an inference run hashes every
    trip of its interval to find its own). Not a cryptographic hash: where a collision would
    matter (`confirmed`), the ids themselves are compared."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(ids, pa.Array | pa.ChunkedArray):
        text = ids
    else:
        try:
            text = pa.array(ids)  # no copy for Arrow-backed text
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed objects: each as its text
            text = pa.array(ids.astype(str), type=pa.large_string())
    if pa.types.is_integer(text.type):
        text = pc.cast(text, pa.large_string())
    elif not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        text = pa.array(text.to_pandas().astype(str), type=pa.large_string())
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    if not len(text):
        return np.empty(0, dtype=np.uint64)
    text = pc.fill_null(text, "")
    lengths = pc.binary_length(text).to_numpy().astype(np.uint64)
    width = 8 * max(1, -(-int(lengths.max()) // 8))
    # ascii_rpad pads bytes (not characters): every id becomes exactly `width` bytes.
    padded = pc.cast(pc.ascii_rpad(text, width=width, padding=" "), pa.binary(width))
    data = np.frombuffer(padded.buffers()[1], dtype=np.uint8)
    start = padded.offset * width
    words = data[start : start + len(padded) * width].view(np.uint64).reshape(-1, width // 8)
    n_words = (lengths + np.uint64(7)) // np.uint64(8)
    hashes = _mixed(lengths + _SEED)
    for k in range(width // 8):  # only an id's own words: its hash is the same in any batch
        hashes = np.where(np.uint64(k) < n_words, _mixed(hashes ^ words[:, k]), hashes)
    return hashes


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
