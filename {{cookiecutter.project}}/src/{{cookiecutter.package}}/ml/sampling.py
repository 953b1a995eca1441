"""A deterministic sample of trips, bounded by the rows training may use (`data.train_rows`).

The sample is the `k` trips with the smallest hash of their `trip_id` (bottom-k sampling,
the hash of `ml.uniqueness`): a uniform sample without replacement, the same trips on every
rerun and whatever order the parts come in, and computed part by part, holding at most `k`
rows and one part.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from {{ cookiecutter.package }}.ml.uniqueness import id_hashes

HOW = "the {k:,} trips with the smallest 64-bit hash of trip_id (`ml.uniqueness.id_hashes`)"


def bottom_k(parts: Iterable[pd.DataFrame], k: int | None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The sample of at most `k` rows of `parts` (all of them without `k`), in the order the
    rows were read, and what the lineage records of it: rows seen, rows used, how chosen."""
    kept: pd.DataFrame | None = None
    hashes = np.empty(0, dtype=np.uint64)
    seen = 0
    for part in parts:
        seen += len(part)
        part_hashes = id_hashes(part["trip_id"]) if k is not None else np.empty(0, np.uint64)
        kept = part if kept is None else pd.concat([kept, part], ignore_index=True)
        hashes = np.concatenate([hashes, part_hashes])
        if k is not None and len(kept) > k:
            smallest = np.sort(np.argpartition(hashes, k - 1)[:k])  # in reading order
            kept, hashes = kept.iloc[smallest].reset_index(drop=True), hashes[smallest]
    frame = kept if kept is not None else pd.DataFrame()
    chosen = "all" if k is None or seen <= k else HOW.format(k=k)
    return frame.reset_index(drop=True), {
        "rows_seen": seen,
        "rows_used": len(frame),
        "sample": chosen,
    }
