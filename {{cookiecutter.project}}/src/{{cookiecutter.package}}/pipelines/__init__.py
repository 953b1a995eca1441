"""Kubeflow Pipelines: components and pipelines wrapping the plain functions of `ml/`."""
