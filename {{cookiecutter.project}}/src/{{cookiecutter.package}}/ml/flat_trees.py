"""Boosted trees laid out as flat arrays, so that one call walks every tree at once.

scikit-learn's `HistGradientBoostingRegressor` predicts tree by tree: one compiled call and
its set-up per tree, whatever the number of rows. Online, a call carries a few trips, so
those per-tree costs are the whole prediction: 1.3 ms for the default 200 trees, for one
trip as for eight. Here the trees' nodes are copied once into flat arrays and walked level
by level with numpy, all trees and all rows together: 0.06 ms for one trip, 0.15 ms for
eight (`bench/bench_flat_trees.py`). The walk's cost grows with the rows and
scikit-learn's hardly, so a call of more than `MAX_ROWS` rows goes to scikit-learn. The
comparisons are scikit-learn's (`x <= threshold` goes left; a missing value goes where
training sent missing values) and the leaves are added in its order, so the predictions are
the same bit for bit (`tests/test_flat_trees.py`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_ROWS = 64  # where the walk stops being cheaper than scikit-learn (measured: ~128)


class FlatTrees:
    """A fitted single-output `HistGradientBoostingRegressor` on numeric features."""

    def __init__(self, model: Any) -> None:
        trees = [predictors[0].nodes for predictors in model._predictors]
        sizes = np.array([len(tree) for tree in trees])
        offsets = np.repeat(np.cumsum(sizes) - sizes, sizes)
        nodes = np.concatenate(trees)
        own = np.arange(len(nodes))
        leaf = nodes["is_leaf"].astype(bool)
        # A leaf points at itself: walking on from it stays there, so every tree can take
        # the same number of steps (the deepest leaf's depth) with no per-tree bookkeeping.
        left = np.where(leaf, own, nodes["left"] + offsets)
        right = np.where(leaf, own, nodes["right"] + offsets)
        self.children = np.stack([right, left], axis=1).ravel()  # [2 * node + went_left]
        self.feature = nodes["feature_idx"].astype(np.intp)
        self.threshold = nodes["num_threshold"]
        self.missing_left = nodes["missing_go_to_left"].astype(bool)
        self.value = nodes["value"]
        self.roots = np.cumsum(sizes) - sizes
        self.steps = int(nodes["depth"][leaf].max())
        self.baseline = float(np.asarray(model._baseline_prediction).ravel()[0])
        self.inverse_link = model._loss.link.inverse
        self.n_features = int(model.n_features_in_)
        self.model = model

    @staticmethod
    def supports(model: Any) -> bool:
        """Whether `model` is one this layout predicts exactly (else use its own predict)."""
        from sklearn.ensemble import HistGradientBoostingRegressor

        return (
            isinstance(model, HistGradientBoostingRegressor)
            and getattr(model, "n_trees_per_iteration_", 0) == 1
            and (model.is_categorical_ is None or not model.is_categorical_.any())
        )

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        # Loaded from its arrays alone (`ml.numpy_models`) there is no model: all rows walk.
        if self.model is not None and len(matrix) > MAX_ROWS:
            return self.model.predict(matrix)
        rows = np.asarray(matrix, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} features, got {rows.shape}")
        if np.isinf(rows).any():  # scikit-learn refuses infinity (missing values are NaN)
            raise ValueError("input contains infinity")
        n_rows = len(rows)
        cells = rows.ravel()
        row_start = (np.arange(n_rows) * self.n_features)[:, None]
        node = np.broadcast_to(self.roots, (n_rows, len(self.roots)))
        for _ in range(self.steps):
            x = cells[row_start + self.feature[node]]
            went_left = x <= self.threshold[node]
            missing = np.isnan(x)
            if missing.any():
                went_left = np.where(missing, self.missing_left[node], went_left)
            node = self.children[2 * node + went_left]
        # Start from the baseline and add tree after tree, as scikit-learn does: a running
        # sum (not numpy's pairwise sum) rounds the same way, hence the same numbers.
        leaves = np.concatenate([np.full((n_rows, 1), self.baseline), self.value[node]], 1)
        return self.inverse_link(np.cumsum(leaves, axis=1)[:, -1])

    def probe_rows(self) -> np.ndarray:
        """Rows on split thresholds (where `<=` decides) and a row of missing values."""
        splits = np.flatnonzero(self.children[0::2] != np.arange(len(self.value)))
        chosen = splits[np.linspace(0, len(splits) - 1, MAX_ROWS - 1).astype(int)]
        rows = np.zeros((MAX_ROWS, self.n_features))
        rows[np.arange(MAX_ROWS - 1), self.feature[chosen]] = self.threshold[chosen]
        rows[-1] = np.nan
        return rows


def fast_predictor(model: Any) -> Any:
    """`model`, or its flat trees where they predict the same numbers for less per call.

    The flat trees are checked against the model's own `predict` when loaded: on any
    difference, or a scikit-learn whose fitted attributes are laid out otherwise, the model
    predicts for itself.
    """
    if not FlatTrees.supports(model):
        return model
    try:
        flat = FlatTrees(model)
        probe = flat.probe_rows()
        same = bool(np.array_equal(flat.predict(probe), model.predict(probe)))
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return model
    return flat if same else model
