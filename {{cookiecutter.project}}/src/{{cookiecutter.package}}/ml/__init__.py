"""Plain ML functions: data, features, training, evaluation, prediction. No kfp, no I/O.

What the model predicts and how it is scored live here, importable at no cost.
"""

TARGET = "eta_minutes"
MAIN_METRIC = "mae"  # mean absolute error in minutes: lower is better
