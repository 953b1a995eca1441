"""The one config loader: Hydra compose over conf/, with the version read from pyproject.toml.

`load_config` serves the invoke tasks and the tests; `python -m {{ cookiecutter.package }}.train`
uses `@hydra.main` over the same conf/ directory and the same `${version:}` resolver.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from {{ cookiecutter.package }}.errors import UserError
from {{ cookiecutter.package }}.version import PROJECT, PROJECT_ROOT, read_version

CONF_DIR = PROJECT_ROOT / "conf"
ENVIRONMENTS = ("local", "dev", "prod", "airflow")


class ConfigError(UserError, ValueError):
    """A configuration that cannot be composed: bad environment, override or value."""


def register_resolvers() -> None:
    # replace=True: Hydra may import this module more than once in a multirun.
    OmegaConf.register_new_resolver("version", read_version, replace=True)
    OmegaConf.register_new_resolver("project", lambda: PROJECT, replace=True)


def load_config(env: str = "local", overrides: Sequence[str] = ()) -> DictConfig:
    """Compose conf/config.yaml for `env` with Hydra overrides, fully resolved."""
    if env not in ENVIRONMENTS:
        raise ConfigError(f"unknown environment {env!r}: choose one of {', '.join(ENVIRONMENTS)}")
    register_resolvers()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR.resolve()), version_base="1.3"):
            cfg = compose(config_name="config", overrides=[f"env={env}", *overrides])
        OmegaConf.resolve(cfg)
        # A relative local artifact root means "in this project", wherever the task runs from.
        root = str(cfg.env.artifact_root)
        if "://" not in root and not Path(root).is_absolute():
            cfg.env.artifact_root = str((PROJECT_ROOT / root).resolve())
        dags = str(cfg.env.get("airflow", {}).get("dags_folder", ""))
        if dags and "://" not in dags and not Path(dags).is_absolute():
            cfg.env.airflow.dags_folder = str((PROJECT_ROOT / dags).resolve())
    except (HydraException, OmegaConfBaseException) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise ConfigError(f"invalid configuration {list(overrides)}: {first_line}") from error
    return cfg


def to_plain(cfg: DictConfig) -> dict:
    """The resolved config as plain JSON-able data (recorded in model metadata).

    Without `tracking`: where runs are logged is not part of what is trained or released,
    and a tracking URI from the environment must not change a compiled workflow."""
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    container.pop("hydra", None)
    container.pop("tracking", None)
    return container


register_resolvers()
