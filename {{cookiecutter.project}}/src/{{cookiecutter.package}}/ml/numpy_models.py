"""A released model as plain numpy arrays: what a version server predicts with, so that it
imports neither scikit-learn nor pandas and answers within a second or two of its launch.

`export(model)` writes the arrays of a model this module can predict exactly (boosted trees
as `ml.flat_trees` lays them out, with the identity link; linear models) as an `.npz`
(no pickle inside: `np.load(allow_pickle=False)` reads it); the release stores it beside the
pickled model, verified the same way (`artifacts.models`). Before it is written its
predictions are checked against the model's own, bit for bit, on rows that reach every
split and on rows past the flat trees' size limit; a model that differs, or of another kind,
gets no numpy form and is served from its pickle.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from {{ cookiecutter.package }}.ml.flat_trees import FlatTrees

TREE_ARRAYS = ("children", "feature", "threshold", "missing_left", "value", "roots")


class LinearArrays:
    """`X @ coef + intercept`, as scikit-learn's linear models compute it."""

    def __init__(self, coef: np.ndarray, intercept: float) -> None:
        self.coef, self.intercept = coef, intercept

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        return np.asarray(matrix, dtype=np.float64) @ self.coef + self.intercept


def _arrays(model: Any) -> dict[str, np.ndarray] | None:
    if FlatTrees.supports(model):
        if type(model._loss.link).__name__ != "IdentityLink":
            return None
        flat = FlatTrees(model)
        return {
            "kind": np.array("flat_trees"),
            **{name: getattr(flat, name) for name in TREE_ARRAYS},
            "steps": np.array(flat.steps),
            "baseline": np.array(flat.baseline),
            "n_features": np.array(flat.n_features),
        }
    from sklearn.linear_model import LinearRegression, Ridge

    if type(model) in (LinearRegression, Ridge) and np.ndim(model.coef_) == 1:
        return {
            "kind": np.array("linear"),
            "coef": np.asarray(model.coef_, dtype=np.float64),
            "intercept": np.array(float(model.intercept_)),
        }
    return None


def load(data: bytes) -> FlatTrees | LinearArrays:
    """The predictor of an exported model's bytes."""
    arrays = np.load(io.BytesIO(data), allow_pickle=False)
    kind = str(arrays["kind"])
    if kind == "linear":
        return LinearArrays(arrays["coef"], float(arrays["intercept"]))
    if kind != "flat_trees":
        raise ValueError(f"unknown numpy model kind {kind!r}")
    flat = FlatTrees.__new__(FlatTrees)
    for name in TREE_ARRAYS:
        setattr(flat, name, arrays[name])
    flat.steps, flat.n_features = int(arrays["steps"]), int(arrays["n_features"])
    flat.baseline = float(arrays["baseline"])
    flat.inverse_link = lambda raw: raw  # the identity: the only link exported
    flat.model = None  # no scikit-learn to hand big calls to: the walk takes them all
    return flat


def export(model: Any, seed: int = 0) -> bytes | None:
    """The model's numpy form, or None when there is none that predicts the same numbers."""
    try:
        arrays = _arrays(model)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return None
    if arrays is None:
        return None
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub: a bool first
    data = buffer.getvalue()
    predictor = load(data)
    rows = np.random.default_rng(seed).normal(size=(300, int(model.n_features_in_)))
    if isinstance(predictor, FlatTrees):
        rows = np.concatenate([FlatTrees(model).probe_rows(), rows])
    if not np.array_equal(predictor.predict(rows), model.predict(rows)):
        return None
    return data
