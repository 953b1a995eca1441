import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.package }}.ml import MAIN_METRIC, TARGET
from {{ cookiecutter.package }}.ml.data import make_trips
from {{ cookiecutter.package }}.ml.features import (
    FEATURE_COLUMNS,
    build_features,
    feature_matrix,
    model_input,
)
from {{ cookiecutter.package }}.ml.fitting import check_training_config, fit_and_evaluate
from {{ cookiecutter.package }}.ml.predict import predict

RUSH = [7, 8, 9, 16, 17, 18]


def test_synthetic_trips_are_deterministic() -> None:
    pd.testing.assert_frame_equal(make_trips(200, seed=1), make_trips(200, seed=1))
    assert not make_trips(200, seed=1).equals(make_trips(200, seed=2))


def test_longer_and_rush_hour_trips_take_longer() -> None:
    trips = make_trips(5000, seed=0)
    long = trips[trips.distance_km > 10][TARGET].mean()
    short = trips[trips.distance_km < 3][TARGET].mean()
    assert long > 2 * short
    features = build_features(trips, RUSH)
    rush = features[features.is_rush_hour == 1]
    calm = features[features.is_rush_hour == 0]
    assert (rush[TARGET] / rush.distance_km).median() > (calm[TARGET] / calm.distance_km).median()


def test_features_carry_keys_columns_and_target() -> None:
    features = build_features(make_trips(50, seed=0), RUSH)
    assert set(FEATURE_COLUMNS) <= set(features.columns)
    assert {"trip_id", "user_cluster", TARGET} <= set(features.columns)
    unlabelled = build_features(make_trips(50, seed=0).drop(columns=[TARGET]), RUSH)
    assert TARGET not in unlabelled.columns


def test_models_beat_a_constant_guess_and_predict_per_trip() -> None:
    features = build_features(make_trips(2000, seed=0), RUSH)
    baseline = (features[TARGET] - features[TARGET].mean()).abs().mean()
    for target in ("sklearn.linear_model.Ridge", "sklearn.ensemble.HistGradientBoostingRegressor"):
        model, metrics = fit_and_evaluate(features, {"_target_": target}, 0.2, 0)
        assert metrics[MAIN_METRIC] < 0.6 * baseline
        predictions = predict(model, features.head(10), "1.0.0")
        assert list(predictions.columns) == [
            "trip_id",
            "user_cluster",
            "eta_minutes",
            "model_version",
        ]
        assert (predictions.model_version == "1.0.0").all()


def test_online_and_batch_paths_compute_the_same_features() -> None:
    trips = make_trips(300, seed=3)
    matrix = feature_matrix(
        trips.distance_km.to_numpy(),
        trips.pickup_hour.to_numpy(),
        trips.weekday.to_numpy(),
        trips.area_cluster.to_numpy(),
        RUSH,
    )
    assert matrix.shape == (300, len(FEATURE_COLUMNS))
    np.testing.assert_array_equal(matrix, model_input(build_features(trips, RUSH)))


def test_features_of_known_trips() -> None:
    """Worked by hand: a weekday rush-hour trip, the same hour on a Sunday (not rush hour:
    weekends have none) and a trip in the last area; no rush hours at all marks none."""
    matrix = feature_matrix(
        np.array([2.0, 2.0, 5.0]), np.array([8, 8, 23]), np.array([0, 6, 3]), np.array([3, 3, 7]),
        [7, 8, 9],
    )  # fmt: skip
    angle = 2 * np.pi * 8 / 24
    first = [2.0, np.log1p(2.0), np.sin(angle), np.cos(angle), 1.0, 0.0, *np.eye(8)[3]]
    np.testing.assert_array_equal(matrix[0], first)
    np.testing.assert_array_equal(matrix[1, 4:6], [0.0, 1.0])
    np.testing.assert_array_equal(matrix[2, 4:], [0.0, 0.0, *np.eye(8)[7]])
    none = feature_matrix(np.array([2.0]), np.array([8]), np.array([0]), np.array([3]), [])
    assert none[0, 4] == 0.0
    assert feature_matrix(*(np.array([]),) * 4, [8]).shape == (0, len(FEATURE_COLUMNS))


def test_training_config_is_checked_before_any_data_is_made() -> None:
    good = {"_target_": "sklearn.ensemble.HistGradientBoostingRegressor", "max_depth": 3}
    check_training_config(good, 100, 0.2)
    for model, n_trips, fraction, message in (
        ({**good, "max_depth": "abc"}, 100, 0.2, "max_depth"),
        ({**good, "no_such_param": 1}, 100, 0.2, "no_such_param"),
        ({"_target_": "sklearn.nope.Model"}, 100, 0.2, "sklearn.nope.Model"),
        (good, 0, 0.2, "n_trips"),
        (good, 100, 1.5, "test_fraction"),
    ):
        with pytest.raises(ValueError, match=message):
            check_training_config(model, n_trips, fraction)


class BoostedStumps:
    """A regressor of another library's kind (scikit-learn-compatible, none of scikit-learn's
    private parameter constraints): it checks its settings when it fits, as LightGBM and
    XGBoost do."""

    def __init__(self, n_estimators: int = 10, learning_rate: float = 0.1) -> None:
        self.n_estimators, self.learning_rate = n_estimators, learning_rate

    def get_params(self, deep: bool = True) -> dict:
        return {"n_estimators": self.n_estimators, "learning_rate": self.learning_rate}

    def fit(self, features: np.ndarray, target: np.ndarray) -> "BoostedStumps":
        if not isinstance(self.n_estimators, int) or self.n_estimators < 1:
            raise ValueError(f"n_estimators must be a positive integer, got {self.n_estimators!r}")
        self.mean_ = float(np.mean(target))
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.full(len(features), self.mean_)


class NotARegressor:
    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha


class SklearnSubclassWithoutConstraints(BoostedStumps):
    """As LGBMRegressor is: a scikit-learn BaseEstimator without `_parameter_constraints`
    (the check used to call `_validate_params` on it and fail for every setting)."""

    _validate_params = None  # present, as BaseEstimator's is


def test_any_scikit_learn_compatible_regressor_is_checked_by_a_small_fit() -> None:
    """Issue 54: `-o model=lightgbm` was refused for every setting."""
    for cls in ("BoostedStumps", "SklearnSubclassWithoutConstraints"):
        target = f"{__name__}.{cls}"
        check_training_config({"_target_": target, "n_estimators": 50}, 100, 0.2)
        with pytest.raises(ValueError) as refused:
            check_training_config({"_target_": target, "n_estimators": "many"}, 100, 0.2)
        assert str(refused.value) == (
            f"model {target}: n_estimators must be a positive integer, got 'many'"
        )
    with pytest.raises(ValueError, match=r"NotARegressor: not a regressor: it has no fit"):
        check_training_config({"_target_": f"{__name__}.NotARegressor"}, 100, 0.2)


def test_evaluation_scores_the_prediction_function_that_serves(monkeypatch) -> None:
    """A change to how predictions are made (every ETA a minute later) shows in the metrics:
    evaluation calls `predict_etas`, as batch and online inference do. The bias moves by the
    minute exactly; the MAE by less (errors of both signs partly cancel the shift)."""
    import importlib

    from {{ cookiecutter.package }}.ml import evaluate as evaluation
    from {{ cookiecutter.package }}.ml import predict as prediction

    features = build_features(make_trips(2000, seed=0), RUSH)
    model, before = fit_and_evaluate(
        features, {"_target_": "sklearn.linear_model.Ridge"}, 0.2, seed=1
    )
    original = prediction.predict_etas
    monkeypatch.setattr(prediction, "predict_etas", lambda m, x: original(m, x) + 1.0)
    importlib.reload(evaluation)  # it holds the function, as the released code would
    try:
        test = features.sample(frac=0.2, random_state=1)
        shifted = evaluation.evaluate(model, test)
        assert evaluation.predict_etas is prediction.predict_etas
        monkeypatch.undo()
        importlib.reload(evaluation)
        unshifted = evaluation.evaluate(model, test)
    finally:
        monkeypatch.undo()
        importlib.reload(evaluation)
    assert shifted["bias"] - unshifted["bias"] == pytest.approx(1.0, abs=0.01)
    assert shifted[MAIN_METRIC] > unshifted[MAIN_METRIC] + 0.05
    assert before[MAIN_METRIC] > 0
