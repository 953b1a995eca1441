"""`inv compare --html report.html`: one self-contained page to look at, not read.

The charts (`reports.charts`: matplotlib, inlined as SVG; no script, nothing fetched), so the
file opens anywhere, offline, and can be attached to a pull request or a ticket: each metric
on its own scale, the two versions' prediction distributions on the fixed batch, and their
residuals (prediction - actual) against zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from pathlib import Path

from {{ cookiecutter.package }}.reports import charts
from {{ cookiecutter.package }}.reports.compare import CompareError, Comparison, change

OLD_COLOUR, NEW_COLOUR = charts.OLD_COLOUR, charts.NEW_COLOUR

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 70rem; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.5rem 0; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.legend span { display: inline-block; width: 0.8rem; height: 0.8rem; margin: 0 0.3rem; }
svg.plot { display: block; margin: 0.5rem 0; max-width: 100%; height: auto; }
"""


def metric_panels(comparison: Comparison) -> str:
    """Each metric both versions have, in a panel on its own scale (counts such as n_test
    are in the table, not drawn)."""
    old, new = comparison.old, comparison.new
    names = [
        m
        for m in comparison.metric_names
        if m in old.metrics and m in new.metrics and not m.startswith("n_")
    ]
    values = {m: (old.metrics[m], new.metrics[m]) for m in names}
    return charts.metric_panels(names, (old.version, new.version), values)


def table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render(comparison: Comparison, project: str) -> str:
    old, new = comparison.old, comparison.new
    same = old.test_set == new.test_set  # a change is shown only on the same test set
    metrics = [
        (
            m,
            f"{old.metrics.get(m, float('nan')):.4g}",
            f"{new.metrics.get(m, float('nan')):.4g}",
            change(old.metrics.get(m), new.metrics.get(m)) if same else "-",
        )
        for m in comparison.metric_names
    ]
    config = comparison.config_changes
    legend = (
        f'<p class="legend"><span style="background:{OLD_COLOUR}"></span>{escape(old.version)}'
        f'<span style="background:{NEW_COLOUR}"></span>{escape(new.version)}</p>'
    )
    series = [(old.version, old.predicted), (new.version, new.predicted)]
    residuals = [(old.version, old.residuals), (new.version, new.residuals)]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(project)}: {escape(old.version)} vs {escape(new.version)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{escape(project)}: {escape(old.version)} vs {escape(new.version)}</h1>",
        legend,
        "<h2>Metrics (test split)</h2>",
        table(("metric", old.version, new.version, "change"), metrics),
        metric_panels(comparison),
        "<h2>Predictions on one fixed batch, each version with its own code</h2>",
        f"<p>{escape(comparison.agreement())}</p>",
        table(("statistic", old.version, new.version), comparison.prediction_stats()),
        charts.histograms(
            "plot-predictions", "prediction distributions", "predicted ETA (minutes)", series
        ),
        "<h2>Residuals (prediction - actual)</h2>",
        charts.histograms(
            "plot-residuals",
            "residual distributions",
            "prediction - actual (minutes)",
            residuals,
            zero_line=True,
        ),
        "<h2>Configuration changes</h2>",
        table(("config", old.version, new.version), config)
        if config
        else "<p>The same configuration (env.* aside).</p>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write(path: Path, comparison: Comparison, project: str) -> Path:
    """Write the page (creating its folder); returns its absolute path."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(comparison, project))
    except OSError as error:
        raise CompareError(f"cannot write {path}: {error.strerror or error}") from None
    return path.resolve()
