"""Hydra's `_target_` convention without Hydra: a class named by its import path, built with
the config's arguments. Pipeline tasks, which receive their configuration as JSON, use it
instead of importing Hydra."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any


def instantiate(spec: Mapping[str, Any] | None, default: str, **context: Any) -> Any:
    """`spec["_target_"](**spec, **context)`; `default` when there is no spec.

    `context` (e.g. the artifact root) goes to the classes whose constructor takes it.
    """
    arguments = {k: v for k, v in dict(spec or {}).items() if not k.startswith("_")}
    module_name, _, class_name = str((spec or {}).get("_target_", default)).rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    accepted = cls.__init__.__code__.co_varnames
    arguments.update({k: v for k, v in context.items() if k in accepted})
    return cls(**arguments)
