"""The online predictor of boosted trees answers exactly what scikit-learn answers."""

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge

from {{ cookiecutter.package }}.ml.flat_trees import MAX_ROWS, FlatTrees, fast_predictor


def training_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1000, 6))
    x[rng.random(x.shape) < 0.05] = np.nan  # training sees missing values: both directions
    y = np.nansum(x[:, :3], axis=1) * 3 + np.nan_to_num(x[:, 3]) ** 2 + rng.normal(size=1000)
    return x, y


def hard_rows(model: HistGradientBoostingRegressor, n: int, seed: int = 1) -> np.ndarray:
    """Rows that hit the edges: values exactly on split thresholds, missing values."""
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(n, 6))
    nodes = np.concatenate([p[0].nodes for p in model._predictors])
    splits = nodes[~nodes["is_leaf"].astype(bool)]
    picked = splits[rng.integers(0, len(splits), size=n)]
    rows[np.arange(n), picked["feature_idx"]] = picked["num_threshold"]  # `<=` goes left
    rows[rng.random(rows.shape) < 0.1] = np.nan
    return rows


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
def test_flat_trees_predict_the_same_numbers_bit_for_bit(loss: str) -> None:
    x, y = training_data()
    if loss == "poisson":
        y = np.abs(y) + 0.1
    model = HistGradientBoostingRegressor(max_iter=30, max_depth=5, loss=loss, random_state=0)
    model.fit(x, y)
    flat = fast_predictor(model)
    assert isinstance(flat, FlatTrees)
    rows = hard_rows(model, 300)
    for size in (1, 2, 7, MAX_ROWS, MAX_ROWS + 1):  # MAX_ROWS + 1: scikit-learn's own path
        for start in range(0, 200, size):
            chunk = rows[start : start + size]
            assert np.array_equal(flat.predict(chunk), model.predict(chunk))


def test_other_models_are_predicted_by_their_own_predict() -> None:
    x, y = training_data()
    ridge = Ridge().fit(np.nan_to_num(x), y)
    assert fast_predictor(ridge) is ridge
    categorical = np.column_stack([np.nan_to_num(x[:, :5]), np.arange(1000) % 4])
    by_category = HistGradientBoostingRegressor(max_iter=5, categorical_features=[5])
    by_category.fit(categorical, y)
    assert fast_predictor(by_category) is by_category  # category splits: not laid out here


def test_flat_trees_that_disagree_with_the_model_are_not_used() -> None:
    x, y = training_data()
    model = HistGradientBoostingRegressor(max_iter=5).fit(x, y)
    assert isinstance(fast_predictor(model), FlatTrees)
    # A field read differently (here the depth, which only the walk reads): other numbers,
    # caught by the check at load.
    for (predictor,) in model._predictors:
        predictor.nodes["depth"] = np.minimum(predictor.nodes["depth"], 1)
    assert fast_predictor(model) is model
    del model._baseline_prediction
    assert fast_predictor(model) is model


def test_bad_rows_are_refused_as_scikit_learn_refuses_them() -> None:
    x, y = training_data()
    flat = FlatTrees(HistGradientBoostingRegressor(max_iter=5).fit(x, y))
    with pytest.raises(ValueError, match="infinity"):
        flat.predict(np.full((1, 6), np.inf))
    with pytest.raises(ValueError, match="6 features"):
        flat.predict(np.zeros((1, 5)))


def test_the_numpy_form_predicts_the_same_numbers_without_scikit_learn() -> None:
    """`ml.numpy_models`: boosted trees (any number of rows: no scikit-learn to hand big
    calls to) and a linear model, bit for bit; a link it cannot reproduce gets no form."""
    from {{ cookiecutter.package }}.ml import numpy_models

    x, y = training_data()
    trees = HistGradientBoostingRegressor(max_iter=30, max_depth=5, random_state=0).fit(x, y)
    data = numpy_models.export(trees)
    assert data is not None and b"pickle" not in data
    loaded = numpy_models.load(data)
    for n in (1, MAX_ROWS, 1000):
        rows = hard_rows(trees, n, seed=n)
        assert np.array_equal(loaded.predict(rows), trees.predict(rows))
    clean = np.nan_to_num(x)
    linear = Ridge().fit(clean, y)
    exported = numpy_models.export(linear)
    assert exported is not None
    assert np.array_equal(numpy_models.load(exported).predict(clean), linear.predict(clean))
    poisson = HistGradientBoostingRegressor(max_iter=5, loss="poisson", random_state=0)
    assert numpy_models.export(poisson.fit(x, np.abs(y) + 0.1)) is None
