import shutil
import tomllib
from pathlib import Path

import pytest

from {{ cookiecutter.package }}.artifacts.names import names_of_model
from {{ cookiecutter.package }}.config import QUOTED, ConfigError, load_config, unknown_setting
from {{ cookiecutter.package }}.serving.router import create_router
from {{ cookiecutter.package }}.version import PROJECT, PROJECT_ROOT, read_version


def pyproject_version() -> str:
    with (PROJECT_ROOT / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)["project"]["version"]


def test_version_comes_from_pyproject() -> None:
    assert read_version() == pyproject_version()
    assert load_config().version == pyproject_version()
    assert load_config().features.version == pyproject_version()


def test_the_project_name_is_read_from_one_place(tmp_path: Path) -> None:
    with (PROJECT_ROOT / "pyproject.toml").open("rb") as handle:
        assert tomllib.load(handle)["project"]["name"] == PROJECT
    assert load_config("local").project == PROJECT
    assert load_config("dev").env.experiment == f"{PROJECT}-dev"
    assert names_of_model("1.0.0", str(tmp_path)).project == PROJECT
    assert create_router(str(tmp_path), "http://127.0.0.1:9/{}".format).title == f"{PROJECT} router"


@pytest.mark.parametrize("env,engine", [("local", "local"), ("dev", "kfp"), ("prod", "kfp")])
def test_each_environment_composes(env: str, engine: str) -> None:
    cfg = load_config(env)
    assert cfg.env.name == env
    assert cfg.env.engine == engine
    root = str(cfg.env.artifact_root)
    assert root.startswith("gs://") if env != "local" else Path(root).is_absolute()


def test_overrides_and_experiments_apply() -> None:
    cfg = load_config("local", ["model.max_depth=3", "+experiment=forest"])
    assert cfg.model._target_.endswith("RandomForestRegressor")
    assert cfg.model.n_estimators == 200
    assert load_config("local", ["model.max_depth=3"]).model.max_depth == 3


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["model.max_dept=4"], "model has no setting 'max_dept': did you mean model.max_depth?"),
        (
            ["model=ridge", "model.alpah=1"],
            "model has no setting 'alpah': did you mean model.alpha?",
        ),
        (["data.n_trip=3"], "data has no setting 'n_trip': did you mean data.n_trips?"),
        (["model=ridgee"], "no model named 'ridgee': did you mean model=ridge? (model: "),
        (["no_such_key=1"], "the configuration has no setting 'no_such_key': it has "),
    ],
)
def test_a_typo_in_an_override_is_answered_with_the_closest_name(
    overrides: list[str], message: str
) -> None:
    """Hydra's own hint for `model.max_dept=4` is `+model.max_dept=4`, which adds the typo
    and fails later, in the model."""
    with pytest.raises(ConfigError) as caught:
        load_config("local", overrides)
    assert str(caught.value).startswith(f"invalid configuration: {message}")
    assert "\n" not in str(caught.value)
    assert unknown_setting("local", overrides) == str(caught.value).split(": ", 1)[1]
    assert unknown_setting("local", ["model=ridge", "model.alpha=2", "+model.new=1"]) is None
    # --multirun sweeps name several options, or a sweep function
    assert unknown_setting("local", ["model=ridge,random_forest", "model.alpha=1,2"]) is None
    assert unknown_setting("local", ["model=glob(r*)"]) is None
    assert unknown_setting("local", ["model=ridge, randm_forest"]).startswith(
        "no model named 'randm_forest': did you mean model=random_forest?"
    )


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["model=no_such_model"], "model"),
        (["model.max_depth=="], "cannot read the override"),
        (["no_such_key=1"], "no_such_key"),
    ],
)
def test_bad_overrides_are_one_line_errors(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_config("local", overrides)
    assert "\n" not in str(caught.value)


def test_an_override_hydra_cannot_read_says_how_to_quote_it() -> None:
    """Issue 52: `-o data_source.batch_path=x/dt={start:%Y-%m-%d}/*` failed with Hydra's
    `mismatched input '=' expecting <EOF>` and nothing more."""
    template = "x/dt={start:%Y-%m-%d}/*"
    with pytest.raises(ConfigError) as caught:
        load_config("local", ["data_source=files", f"data_source.batch_path={template}"])
    message = str(caught.value)
    assert message.startswith(f"cannot read the override 'data_source.batch_path={template}' (")
    example = f"""-o 'data_source.batch_path="{template}"'"""
    assert message.endswith("quote a value holding " + QUOTED + ", e.g. " + example)
    assert "\n" not in message
    quoted = load_config("local", ["data_source=files", f'data_source.batch_path="{template}"'])
    assert quoted.data_source.batch_path == template


def test_unknown_environment_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown environment 'staging'"):
        load_config("staging")


def test_traffic_counts_the_user_clusters_the_data_has() -> None:
    """The traffic assignment splits exactly the clusters users are hashed into."""
    from {{ cookiecutter.package }}.ml.users import N_USER_CLUSTERS

    assert load_config().traffic.n_user_clusters == N_USER_CLUSTERS


def composed_in(conf: Path, overrides: list[str]) -> dict:
    """The config `conf` composes with `overrides`, without what adopting leaves out."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = OmegaConf.to_container(compose("config", overrides=overrides), resolve=True)
    assert isinstance(cfg, dict)
    return {k: v for k, v in cfg.items() if k not in ("env", "tracking", "hparams_search")}


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.max_depth=4", "model.learning_rate=0.05", "data.n_trips=6000"],
        ["+experiment=forest", "model.min_samples_leaf=5"],
        ["model=ridge", "features.rush_hours=[7,8]"],
        # A trial of a search: the search itself is how the run was found, not adopted.
        ["hparams_search=gradient_boosting_optuna", "model.max_iter=300"],
    ],
)
def test_adopting_a_runs_overrides_makes_conf_compose_what_the_run_trained(
    tmp_path: Path, overrides: list[str]
) -> None:
    """`inv experiments --adopt`: after the edit, conf/ alone composes the run's config;
    every other line of every file (comments included) is as it was."""
    from {{ cookiecutter.package }}.config_writer import adopt

    conf = Path(shutil.copytree(PROJECT_ROOT / "conf", tmp_path / "conf"))
    before = {p: p.read_text().splitlines() for p in conf.rglob("*.yaml")}
    trained = composed_in(conf, [o for o in overrides if not o.startswith("hparams_search")])
    changes = adopt(overrides, conf)
    assert "  - hparams_search: null" in (conf / "config.yaml").read_text()
    assert composed_in(conf, []) == trained
    assert changes and all(": " in line and " -> " in line for line in changes)
    for path, lines in before.items():
        after = path.read_text().splitlines()
        changed = [n for n, (a, b) in enumerate(zip(lines, after, strict=False)) if a != b]
        assert len(changed) <= len(changes) and len(after) - len(lines) <= len(changes)
        for n in changed:  # a changed line keeps its comment
            assert ("#" in lines[n]) == ("#" in after[n]), (lines[n], after[n])
    assert adopt(overrides, conf) == []  # adopted: nothing more to write


def test_adopting_names_each_change_and_refuses_what_does_not_compose(tmp_path: Path) -> None:
    from {{ cookiecutter.package }}.config_writer import adopt

    conf = Path(shutil.copytree(PROJECT_ROOT / "conf", tmp_path / "conf"))
    assert adopt(["+experiment=forest"], conf) == [
        "conf/config.yaml: defaults: model: gradient_boosting -> random_forest",
        "conf/model/random_forest.yaml: n_estimators: 100 -> 200",
    ]
    assert "  - model: random_forest\n" in (conf / "config.yaml").read_text()
    before = {p: p.read_bytes() for p in conf.rglob("*.yaml")}
    with pytest.raises(ConfigError, match="do not compose"):
        adopt(["model=nope"], conf)
    assert {p: p.read_bytes() for p in conf.rglob("*.yaml")} == before
