"""Which user cluster a user belongs to: the one mapping, in Python and in BigQuery SQL.

Traffic assignments give user clusters to versions, so every place that sees a user must
put them in the same cluster: the batch pipelines (from a trip's `user_id`), BigQuery (when
it reads trips), and the product's own clients, which send each trip's `user_cluster` to the
router. The rule, for a product's engineers to copy:

    key     = the id as text: an integer in decimal ("411"), a string as written, trimmed
              ("u411", "3f2b...-..."; a UUID in its usual 36-character form)
    cluster = int(hex(sha256(utf8(key)))[:14], 16) mod n_user_clusters

(the first 7 bytes of the SHA-256 of the key, as an unsigned number, modulo the number of
clusters: 8 by default, `traffic.n_user_clusters`). A user stays in one cluster while that
number stays the same. An id that is none of these (empty, a fraction, a boolean, missing)
has no cluster: its trip is an invalid row, counted and dropped like any other.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import uuid
from typing import Any

import numpy as np

N_USER_CLUSTERS = 8
HEX_DIGITS = 14  # 7 bytes: below 2**63, so BigQuery's INT64 holds it too
NO_CLUSTER = -1


def user_key(user_id: Any) -> str | None:
    """The text a user id is hashed as; None when it is not a usable id."""
    if isinstance(user_id, bool | np.bool_) or user_id is None:
        return None
    if isinstance(user_id, numbers.Integral):
        return str(int(user_id))
    if isinstance(user_id, numbers.Real):  # ids read as floats (a column with gaps)
        value = float(user_id)
        return str(int(value)) if math.isfinite(value) and value.is_integer() else None
    if isinstance(user_id, uuid.UUID):
        return str(user_id)
    if isinstance(user_id, str):
        return user_id.strip() or None
    return None


def cluster_of_key(key: str, n_clusters: int = N_USER_CLUSTERS) -> int:
    return int(hashlib.sha256(key.encode()).hexdigest()[:HEX_DIGITS], 16) % n_clusters


def user_cluster(user_id: Any, n_clusters: int = N_USER_CLUSTERS) -> Any:
    """The cluster of one user id (ValueError when it is not one), or, for an array or a
    Series of ids, an int64 array with NO_CLUSTER (-1) where an id is not usable. Each
    distinct id is hashed once."""
    if isinstance(user_id, str | uuid.UUID) or np.ndim(user_id) == 0:
        key = user_key(user_id)
        if key is None:
            raise ValueError(f"{user_id!r} is not a user id: use an integer or a string")
        return cluster_of_key(key, n_clusters)
    import pandas as pd

    codes, distinct = pd.factorize(np.asarray(user_id))  # a missing id: code -1
    table = _KNOWN.clusters(distinct, n_clusters)
    return np.where(codes >= 0, table[codes] if len(table) else NO_CLUSTER, NO_CLUSTER)


def _hashed(distinct: np.ndarray, n_clusters: int) -> np.ndarray:
    keys = [user_key(value) for value in distinct]
    return np.array(
        [NO_CLUSTER if key is None else cluster_of_key(key, n_clusters) for key in keys],
        dtype=np.int64,
    )


class _KnownClusters:
    """The clusters of the integer ids this process has hashed, kept across calls. A stream's
    batches meet the same riders again and again (the sample data's 10 M trips have 50 000
    riders), and each id's hash is a SHA-256 in Python: 2.7 s of a 10 M-trip inference
    shard before this memo. Integer ids only (a flag or a fraction never matches one), and
    at most LIMIT of them: past it, the memo starts over."""

    LIMIT = 2_000_000

    def __init__(self) -> None:
        self.known: dict[int, tuple[Any, np.ndarray]] = {}  # n_clusters: (ids, clusters)

    def clusters(self, distinct: np.ndarray, n_clusters: int) -> np.ndarray:
        if distinct.dtype.kind != "i":
            return _hashed(distinct, n_clusters)
        import pandas as pd

        ids, table = self.known.get(n_clusters, (pd.Index([], dtype=np.int64), np.empty(0, int)))
        where = ids.get_indexer(distinct)
        new = where < 0
        found = np.empty(len(distinct), dtype=np.int64)
        found[~new] = table[where[~new]]
        if new.any():
            found[new] = _hashed(distinct[new], n_clusters)
            if len(ids) + int(new.sum()) > self.LIMIT:
                ids, table = pd.Index([], dtype=np.int64), np.empty(0, int)
            ids = ids.append(pd.Index(distinct[new].astype(np.int64)))
            self.known[n_clusters] = (ids, np.concatenate([table, found[new]]))
        return found


_KNOWN = _KnownClusters()


def user_cluster_sql(column: str, n_clusters: int = N_USER_CLUSTERS) -> str:
    """The same mapping as a BigQuery SQL expression over an INT64 or STRING column."""
    key = f"TRIM(CAST(`{column}` AS STRING))"
    hashed = f"CAST(CONCAT('0x', SUBSTR(TO_HEX(SHA256({key})), 1, {HEX_DIGITS})) AS INT64)"
    return f"MOD({hashed}, {int(n_clusters)})"
