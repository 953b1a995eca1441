"""What `inv versions`, `inv compare` and `inv experiments` show, from real artifacts."""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from conftest import chart_axes, release_model

from {{ cookiecutter.package }}.artifacts.code import commit_code
from {{ cookiecutter.package }}.artifacts.names import names_for
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.reports import experiments, fixed_batch, html, tables, versions
from {{ cookiecutter.package }}.reports.compare import Comparison, Scored, flatten
from {{ cookiecutter.package }}.reports.versions import with_change


def scored(version: str, predicted: list[float], mae: float, depth: int) -> Scored:
    return Scored(
        version=version,
        metrics={"mae": mae, "r2": 0.9},
        config=flatten({"model": {"max_depth": depth}, "env": {"name": "local"}, "version": 1}),
        actual=np.array([10.0, 20.0, 30.0, 40.0]),
        predicted=np.array(predicted),
    )


@pytest.fixture
def comparison() -> Comparison:
    return Comparison(
        old=scored("1.0.0", [11.0, 19.0, 31.0, 39.0], 1.0, 6),
        new=scored("1.1.0", [10.0, 22.0, 30.5, 40.0], 0.8, 3),
    )


def test_plain_tables_are_aligned_with_the_header_first() -> None:
    out = io.StringIO()  # not a terminal: plain text, as scripts and logs get it
    tables.show(("version", "mae"), [{"version": "1.0.0", "mae": "1.5"}], title="t", out=out)
    assert out.getvalue() == "version  mae\n1.0.0    1.5\n"


def test_metric_changes_are_signed_from_the_previous_version() -> None:
    assert with_change(1.471, None) == "1.471"
    assert with_change(1.612, 1.471) == "1.612 (+0.141)"
    assert with_change(0.95, 0.97) == "0.95 (-0.02)"
    assert with_change(None, 1.0) == "-"
    # Versions evaluated on different test trips: a value, no change.
    assert with_change(1.286, 1.47, same_test_set=False) == "1.286 (other test set)"


def test_compare_shows_no_change_between_metrics_of_different_test_sets(
    comparison: Comparison, capsys
) -> None:
    from dataclasses import replace

    from {{ cookiecutter.package }}.reports.compare import show

    old = replace(comparison.old, test_set="1200 trips of data aaa (split 0.3, seed 42)")
    new = replace(comparison.new, test_set="800 trips of data bbb (split 0.2, seed 42)")
    show(Comparison(old=old, new=new))
    out = capsys.readouterr().out
    metrics = out.split("configuration")[0]
    assert "mae" in metrics and "-0.2" not in metrics  # 0.8 - 1.0, across test sets
    assert "no change shown: 1.0.0 was evaluated on 1200 trips of data aaa" in out
    show(comparison)  # the same test set: the change is shown
    assert "-0.2" in capsys.readouterr().out.split("configuration")[0]


def test_a_comparison_shows_config_changes_but_not_the_environment(
    comparison: Comparison,
) -> None:
    assert comparison.config_changes == [("model.max_depth", "6", "3")]
    stats = dict((name, (a, b)) for name, a, b in comparison.prediction_stats())
    assert stats["mae on this batch"] == ("1.000", "0.625")
    assert comparison.agreement() == (
        "4 trips: mean |difference| 1.38 min, max 3.00 min, 25.0% differ by more than 1 min"
    )


def test_the_html_report_is_self_contained_with_its_three_plots(
    comparison: Comparison, tmp_path: Path
) -> None:
    path = html.write(tmp_path / "reports" / "compare.html", comparison, "taxi")
    page = path.read_text()
    assert "<script" not in page and "src=" not in page  # offline: nothing fetched,
    assert all(link.startswith("#") for link in re.findall(r'href="([^"]*)"', page))  # no link out
    for plot in ("plot-metrics", "plot-predictions", "plot-residuals"):
        start = page.index(f'<svg id="{plot}"')
        svg = ET.fromstring(page[start : page.index("</svg>", start) + len("</svg>")])
        assert len(svg) > 1, plot  # well-formed, drawn
    charts = chart_axes(page)
    # Every chart: both axes with ticks. The metrics: a panel each, on its own scale.
    assert all(x >= 2 and y >= 2 for axes in charts.values() for x, y in axes), charts
    assert len(charts["plot-metrics"]) == len(
        [m for m in comparison.metric_names if not m.startswith("n_")]
    )
    assert page.count('id="bar-') == 2 * len(charts["plot-metrics"])
    for plot in ("plot-predictions", "plot-residuals"):  # both versions' distributions
        versions = (comparison.old.version, comparison.new.version)
        assert {f"series-{plot}-{version}" for version in versions} == set(
            re.findall(rf'id="(series-{plot}-[\d.]+)', page)
        )
    assert 'id="zero-plot-residuals"' in page and 'id="zero-plot-predictions"' not in page
    assert ">trips<" in page and ">prediction - actual (minutes)<" in page  # axis labels
    assert "model.max_depth" in page
    # As the terminal shows them (issue 52): each metric's change, and floats people read.
    assert "<th>change</th>" in page and "<td>-0.2</td>" in page
    assert flatten({"model": {"learning_rate": 0.1 + 0.2}}) == {"model.learning_rate": "0.3"}


def test_an_unwritable_report_is_one_error(comparison: Comparison, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(html.CompareError, match="cannot write"):
        html.write(tmp_path / "file" / "report.html", comparison, "taxi")


def test_the_fixed_batch_is_scored_by_the_released_model(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    release_model(root, "1.0.0", {"_target_": "sklearn.linear_model.Ridge"}, tmp_path)
    first = fixed_batch.score(str(root), "1.0.0", n_trips=200)
    again = fixed_batch.score(str(root), "1.0.0", n_trips=200)
    assert first == again  # fixed: the same trips every time
    assert len(first["actual"]) == len(first["predicted"]) == 200
    errors = np.abs(np.array(first["predicted"]) - np.array(first["actual"]))
    assert errors.mean() < 5  # a trained model, not noise


def write_run(root: Path, folder: str, overrides: list[str], mae: float | None) -> None:
    run = root / folder
    run.mkdir(parents=True)
    metrics = {"mae": mae, "r2": 0.9} if mae is not None else {}
    (run / "metadata.json").write_text(
        json.dumps({"version": "1.0.0", "overrides": overrides, "metrics": metrics})
    )


def test_experiments_are_listed_best_first(tmp_path: Path, capsys) -> None:
    write_run(tmp_path, "outputs/1.0.0/2024-01-01_10-00-00", [], 2.0)
    write_run(tmp_path, "multirun/1.0.0/2024-01-01_11-00-00/0", ["model=ridge"], 3.0)
    write_run(tmp_path, "multirun/1.0.0/2024-01-01_11-00-00/1", ["model=random_forest"], 1.5)
    write_run(tmp_path, "outputs/1.0.0/2024-01-01_12-00-00", ["model.max_depth=1"], None)
    (tmp_path / "outputs/1.0.0/broken").mkdir(parents=True)
    (tmp_path / "outputs/1.0.0/broken/metadata.json").write_text("{not json")

    found = experiments.find(tmp_path)
    assert [e.overrides for e in found] == [
        ["model=random_forest"],
        [],
        ["model=ridge"],
        ["model.max_depth=1"],
    ]
    experiments.show(found, limit=2)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["rank", "mae", "r2", "version", "overrides", "run"]
    assert lines[1].split()[:5] == ["1", "1.5", "0.9", "1.0.0", "model=random_forest"]
    assert len(lines) == 3


def test_runs_on_different_test_sets_are_ranked_apart(tmp_path: Path, capsys) -> None:
    def run(folder: str, n_trips: int, mae: float) -> None:
        write_run(tmp_path, folder, [f"data.n_trips={n_trips}"], mae)
        metadata_file = tmp_path / folder / "metadata.json"
        metadata = json.loads(metadata_file.read_text())
        metadata["metrics"]["n_test"] = n_trips // 5
        metadata["data"] = {"content_sha256": f"{n_trips:064d}"}
        metadata["config"] = {"data": {"seed": 42, "test_fraction": 0.2}}
        metadata_file.write_text(json.dumps(metadata))

    run("outputs/1.0.0/a", 4000, 1.6)
    run("outputs/1.0.0/b", 20000, 1.3)  # the lowest error, on another test set
    run("outputs/1.0.0/c", 4000, 1.4)
    experiments.show(experiments.find(tmp_path))
    out = capsys.readouterr().out
    assert out.startswith("3 experiments on 2 different test sets: ranked within each")
    tables = [block.splitlines() for block in out.split("\n\n")[1:]]
    assert [lines[0] for lines in tables] == [
        "test set: 800 trips of data 000000000000 (split 0.2, seed 42)",
        "test set: 4000 trips of data 000000000000 (split 0.2, seed 42)",
    ]
    first = [line.split()[:2] for line in tables[0][2:]]
    assert first == [["1", "1.4"], ["2", "1.6"]]  # ranked among the 4000-trip runs only
    assert [line.split()[:2] for line in tables[1][2:]] == [["1", "1.3"]]


def test_no_experiments_says_how_to_make_one(capsys) -> None:
    experiments.show([])
    assert "`inv train` writes them to outputs/" in capsys.readouterr().out


def test_versions_shows_an_altered_model_or_code_instead_of_released_yes(
    cfg, tmp_path: Path, artifact_root: Path
) -> None:
    ctx = ReleaseContext(cfg=cfg, names=names_for(cfg))
    release_model(artifact_root, cfg.version, {"_target_": "sklearn.linear_model.Ridge"}, tmp_path)
    code = commit_code(ctx.store, ctx.names, "p.whl", b"wheel", b"reqs\n", "t" * 40, "s" * 40, "3")
    ctx.store.write_text(ctx.names.release_record_key, "{}")
    assert versions.released_state(ctx) == "yes"

    def overwrite(key: str, data: bytes) -> None:  # what someone with bucket access could do
        path = artifact_root / key
        path.chmod(0o644)
        path.write_bytes(data)

    metadata = json.loads((artifact_root / ctx.names.model_metadata_key).read_text())
    overwrite(metadata["model_key"], b"not the released model")
    assert versions.released_state(ctx) == "ALTERED (model)"
    overwrite(code.wheel, b"not the released wheel")
    assert versions.released_state(ctx) == "ALTERED (model, code)"
    overwrite(ctx.names.code_record_key, b"{not json")
    assert versions.released_state(ctx) == "ALTERED (model, code)"
    table = versions.table(ctx)  # the whole table still renders
    assert "ALTERED (model, code)" in table and cfg.version in table
