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
    check_grammar(overrides)
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
        hint = unknown_setting(env, overrides)
        if hint:
            raise ConfigError(f"invalid configuration: {hint}") from error
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise ConfigError(f"invalid configuration {list(overrides)}: {first_line}") from error
    return cfg


# What Hydra's override grammar reads as syntax: a value holding one of these is quoted.
QUOTED = "{ } : = or spaces"


def check_grammar(overrides: Sequence[str]) -> None:
    """One line for an override Hydra's grammar cannot read, saying how to quote it: a value
    holding `{ } : =` or spaces must be quoted inside the override, e.g.
    `-o 'data_source.batch_path="x/dt={start:%Y-%m-%d}/*"'`."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for override in overrides:
        try:
            parser.parse_overrides([override])
        except OverrideParseException as error:
            why = (str(error).strip().splitlines() or ["not an override"])[0]
            key, _, value = override.partition("=")
            example = f"-o '{key}=\"{value}\"'"
            raise ConfigError(
                f"cannot read the override {override!r} ({why}): quote a value holding "
                + QUOTED
                + f", e.g. {example}"
            ) from None


def unknown_setting(env: str, overrides: Sequence[str]) -> str | None:
    """What is wrong with the first override that names a setting or a group option the
    config does not have, with the closest names (`model.max_dept=4`: did you mean
    `model.max_depth`?); None when every name exists. Hydra's own hint for a typo is to
    add the key (`+model.max_dept=4`), which only fails later, in the model."""
    from difflib import get_close_matches

    choices: list[tuple[str, str, str]] = []  # (key, value, override): group options
    settings: list[tuple[str, str, str]] = []
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep or key.startswith(("+", "~", "hydra.")):
            continue
        (choices if (CONF_DIR / key).is_dir() else settings).append((key, value, override))
    for group, value, _ in choices:
        if "(" in value:  # a sweep function (glob, choice, ...): Hydra expands it
            continue
        folder = CONF_DIR / group
        options = sorted(path.stem for path in folder.glob("*.yaml"))
        for option in (part.strip() for part in value.split(",")):  # a --multirun list too
            if option not in options:
                close = get_close_matches(option, options, n=1)
                guess = f"did you mean {group}={close[0]}? " if close else ""
                return f"no {group} named {option!r}: {guess}({group}: {', '.join(options)})"
    if not settings:
        return None
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR.resolve()), version_base="1.3"):
            base = compose(config_name="config", overrides=[f"env={env}", *(c[2] for c in choices)])
    except (HydraException, OmegaConfBaseException):
        return None
    for key, _, _ in settings:
        parent_key, dot, leaf = key.rpartition(".")
        parent = OmegaConf.select(base, parent_key) if parent_key else base
        if isinstance(parent, DictConfig) and leaf not in parent:
            names = [str(name) for name in parent]
            close = get_close_matches(leaf, names, n=1)
            guess = (
                f"did you mean {parent_key}{dot}{close[0]}?"
                if close
                else f"it has {', '.join(names)}"
            )
            where = parent_key or "the configuration"
            return f"{where} has no setting {leaf!r}: {guess} (+{key}=... adds a new one)"
    return None


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
