"""Fit a model described by a Hydra model config (`_target_` + constructor arguments)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
from sklearn.model_selection import train_test_split

from {{ cookiecutter.package }}.ml import TARGET
from {{ cookiecutter.package }}.ml.evaluate import evaluate
from {{ cookiecutter.package }}.ml.features import model_input
from {{ cookiecutter.package }}.targets import instantiate


def make_model(model_cfg: Mapping[str, Any]) -> Any:
    if "_target_" not in model_cfg:
        raise ValueError("model config needs a _target_ (e.g. sklearn.linear_model.Ridge)")
    return instantiate(model_cfg, str(model_cfg["_target_"]))


def check_training_config(model_cfg: Mapping[str, Any], n_trips: int, test_fraction: float) -> None:
    """Refuse a configuration that training would fail on, before any data is made.

    The estimator is built and its parameters checked: scikit-learn's own validation where
    the estimator declares its constraints (types and ranges, checked there, not in the
    constructor), else a fit on a few rows of the model's input shape, which any
    scikit-learn-compatible regressor (LightGBM, XGBoost, a team's own) runs its checks in.
    So `max_depth=abc` fails here, in a second, rather than minutes into a pipeline. Raises
    ValueError with a one-line message.
    """
    if int(n_trips) < 10:
        raise ValueError(f"data.n_trips must be at least 10, got {n_trips}")
    if not 0 < float(test_fraction) < 1:
        raise ValueError(f"data.test_fraction must be between 0 and 1, got {test_fraction}")
    target = model_cfg.get("_target_", "?")
    try:
        model = make_model(model_cfg)
        if not (
            callable(getattr(model, "fit", None)) and callable(getattr(model, "predict", None))
        ):
            raise TypeError("not a regressor: it has no fit and predict")
        if hasattr(model, "_parameter_constraints"):  # scikit-learn's own, and cheap
            model._validate_params()
        else:
            _fit_a_few_rows(model)
    except Exception as error:  # imports and libraries raise many types: all "bad config"
        cause = error.__cause__ or error
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise ValueError(f"model {target}: {first}") from None


def _fit_a_few_rows(model: Any) -> None:
    """A fit on 64 rows shaped as the model's input: what a library checks its settings in."""
    import numpy as np

    from {{ cookiecutter.package }}.ml.features import FEATURE_COLUMNS

    rng = np.random.default_rng(0)
    rows = rng.random((64, len(FEATURE_COLUMNS)))
    model.fit(rows, 5 + 20 * rows[:, 0])


def split(
    features: pd.DataFrame, test_fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A deterministic train/test split: training and evaluation steps agree on it."""
    train, test = train_test_split(features, test_size=test_fraction, random_state=seed)
    return train, test


def fit(train: pd.DataFrame, model_cfg: Mapping[str, Any]) -> Any:
    model = make_model(model_cfg)
    model.fit(model_input(train), train[TARGET].to_numpy())
    return model


def fit_and_evaluate(
    features: pd.DataFrame, model_cfg: Mapping[str, Any], test_fraction: float, seed: int
) -> tuple[Any, dict[str, float]]:
    """Train on the split of `features`; return the model and its test metrics."""
    train, test = split(features, test_fraction, seed)
    model = fit(train, model_cfg)
    return model, evaluate(model, test)
