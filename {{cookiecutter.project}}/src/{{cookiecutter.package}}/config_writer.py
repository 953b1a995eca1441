"""A run's overrides written into conf/, so the next release trains what the run trained
(`inv experiments --adopt RUN`).

What a run changed is read from Hydra itself, not from the override strings: the config
composed with the run's overrides against the config as conf/ composes it. A changed group
option (`model=random_forest`, or one an experiment selects) goes to the defaults list of
conf/config.yaml; a changed value goes to the file that declares it: the selected option's
file for a group's settings (`conf/model/random_forest.yaml`), conf/config.yaml for the rest.
Files are edited line by line, so their comments and order stay; each change is returned
as `file: key: old -> new` for the user to review before committing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from {{ cookiecutter.package }}.config import CONF_DIR, ConfigError, register_resolvers

# Not the model's or the data's: where a run ran, how it was searched or logged.
NOT_ADOPTED_GROUPS = ("env", "hparams_search", "experiment", "tracking")
NOT_ADOPTED_KEYS = ("hydra", "env", "tracking", "version", "project", "package")


def adopt(overrides: Sequence[str], conf_dir: Path = CONF_DIR) -> list[str]:
    """Write what `overrides` change into `conf_dir`; one line per change made."""
    # A search's own settings (the sweeper, its study) say how the run was found, not what
    # it trained.
    kept = [
        o
        for o in overrides
        if not o.lstrip("+~").startswith("hydra.")
        and o.lstrip("+~").partition("=")[0] != "hparams_search"
    ]
    base_choices = _compose(conf_dir, [])[1]
    run, run_choices = _compose(conf_dir, kept)
    changes = []
    chosen = {
        group: option
        for group, option in run_choices.items()
        if group not in NOT_ADOPTED_GROUPS and "/" not in group and option is not None
    }
    for group, option in chosen.items():
        if base_choices.get(group) != option:
            old = _set_default(conf_dir / "config.yaml", group, option)
            changes.append(f"conf/config.yaml: defaults: {group}: {old} -> {option}")
    # Values against conf/ with the run's options chosen: what the run set, not what the
    # option's file already says.
    # Compared as written, before interpolation: `n_trips: ${data.n_trips}` follows
    # data.n_trips and stays as it is.
    base = _compose(conf_dir, [f"{g}={o}" for g, o in chosen.items()])[0]
    written: dict[tuple[str, ...], Any] = dict(_leaves(OmegaConf.to_container(base)))
    for path, value in _leaves(OmegaConf.to_container(run)):
        if path[0] in NOT_ADOPTED_KEYS:
            continue
        old = written.get(path, _MISSING)
        if old == value:
            continue
        if path[0] in chosen:
            file, keys = conf_dir / path[0] / f"{chosen[path[0]]}.yaml", path[1:]
        else:
            file, keys = conf_dir / "config.yaml", path
        _set_value(file, keys, value)
        shown = "(absent)" if old is _MISSING else _scalar(old)
        changes.append(
            f"{file.relative_to(conf_dir.parent)}: {'.'.join(keys)}: {shown} -> {_scalar(value)}"
        )
    return changes


_MISSING = object()


def _compose(conf_dir: Path, overrides: list[str]) -> tuple[DictConfig, dict[str, Any]]:
    register_resolvers()
    try:
        with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(f"the run's overrides {overrides} do not compose: {error}") from None
    choices = dict(OmegaConf.to_container(cfg.hydra.runtime.choices) or {})  # type: ignore[arg-type]
    with open_dict(cfg):
        del cfg["hydra"]  # its own interpolations need a running Hydra app
    return cfg, choices


def _leaves(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, str(key)))
    else:
        yield path, node


def _scalar(value: Any) -> str:
    """`value` as YAML writes it on one line (200, 0.05, null, [7, 8])."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _set_default(config: Path, group: str, option: str) -> str:
    """Select `option` for `group` in the defaults list; returns the option it replaces."""
    lines = config.read_text().splitlines(keepends=True)
    for number, line in enumerate(lines):
        head, _, comment = line.partition("#")
        stripped = head.strip()
        if stripped.startswith(f"- {group}:"):
            old = stripped.split(":", 1)[1].strip()
            indent = line[: len(line) - len(line.lstrip())]
            text = f"{indent}- {group}: {option}"
            if comment:  # kept in its column
                text = f"{text.ljust(len(head) - 1)} #{comment.rstrip()}"
            lines[number] = text.rstrip() + "\n"
            config.write_text("".join(lines))
            return old
    raise ConfigError(f"conf/config.yaml's defaults do not select a {group}: add `- {group}: ...`")


def _set_value(file: Path, keys: Sequence[str], value: Any) -> None:
    """Set `keys` (a path of mapping keys) to `value` in the YAML `file`, in place: the
    line that holds it keeps its comment; a key the file lacks is added under its parent."""
    lines = file.read_text().splitlines(keepends=True) if file.exists() else []
    start, end, indent = 0, len(lines), 0
    for depth, key in enumerate(keys):
        found = _find_key(lines, start, end, indent, key)
        last = depth == len(keys) - 1
        if found is None:
            pad = " " * indent
            new = [f"{pad}{'  ' * i}{k}:\n" for i, k in enumerate(keys[depth:-1])]
            new.append(f"{pad}{'  ' * (len(keys) - 1 - depth)}{keys[-1]}: {_scalar(value)}\n")
            if end > 0 and not lines[end - 1].endswith("\n"):
                lines[end - 1] += "\n"
            lines[end:end] = new
            break
        if last:
            line = lines[found]
            head, hash_, comment = line.partition(" #")
            prefix = head[: head.index(":") + 1]
            text = f"{prefix} {_scalar(value)}"
            if hash_:  # the comment kept in its column
                text = f"{text.ljust(len(head))} #{comment.rstrip()}"
            lines[found] = text.rstrip() + "\n"
            break
        # Into this key's block: the lines after it that are indented deeper (as deep as
        # its first setting; two spaces when it has none yet).
        start = found + 1
        inner = [n for n in range(start, len(lines)) if lines[n].strip()]
        deeper = [n for n in inner if not lines[n].lstrip().startswith("#")]
        child = _indent(lines[deeper[0]]) if deeper else 0
        indent = child if child > indent else indent + 2
        end = start
        while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) >= indent):
            end += 1
    file.write_text("".join(lines))


def _find_key(lines: list[str], start: int, end: int, indent: int, key: str) -> int | None:
    for number in range(start, end):
        line = lines[number]
        if _indent(line) == indent and line.strip().startswith(f"{key}:"):
            return number
    return None


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))
