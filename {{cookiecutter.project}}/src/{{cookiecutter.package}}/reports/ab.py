"""`inv ab`: each live version against the control, on outcomes, per user cluster and
overall (the comparisons of `release.evidence`, the statistic of `ml.paired`)."""

from __future__ import annotations

import math
from html import escape
from pathlib import Path

from {{ cookiecutter.package }}.errors import ReleaseError
from {{ cookiecutter.package }}.ml.paired import Verdict
from {{ cookiecutter.package }}.release.evidence import Comparison
from {{ cookiecutter.package }}.reports import tables

COLUMNS = (
    "clusters",
    "n",
    "MAE",
    "MAE control",
    "bias",
    "bias control",
    "difference",
    "interval",
    "verdict",
)


def _number(value: float, sign: bool = False) -> str:
    if not math.isfinite(value):
        return "-"
    return f"{value:+.3f}" if sign else f"{value:.3f}"


def _more(needed: int | None) -> str:
    """` (~44 more)` outcomes, ` (more)` when there is no estimate, '' with a verdict."""
    if needed is None:
        return " (more)"
    return f" (~{needed} more)" if needed else ""


def row(scope: str, verdict: Verdict) -> dict[str, str]:
    low, high = verdict.interval
    return {
        "clusters": scope,
        "n": str(verdict.n),
        "MAE": _number(verdict.mae_candidate),
        "MAE control": _number(verdict.mae_control),
        "bias": _number(verdict.bias_candidate, sign=True),
        "bias control": _number(verdict.bias_control, sign=True),
        "difference": _number(verdict.difference, sign=True),
        "interval": f"[{_number(low, True)}, {_number(high, True)}]",
        "verdict": verdict.verdict + _more(verdict.more_outcomes_needed()),
    }


def rows(comparison: Comparison) -> list[dict[str, str]]:
    return [
        *(row(str(cluster), verdict) for cluster, verdict in comparison.clusters.items()),
        row("all", comparison.overall),
    ]


def heading(comparison: Comparison) -> str:
    rules = comparison.overall.gates
    return (
        f"{comparison.candidate} against control {comparison.control}: "
        f"{comparison.overall.verdict} (the trips both predicted since "
        f"{comparison.since:%Y-%m-%d %H:%M} UTC, with outcomes observed by "
        f"{comparison.until:%Y-%m-%d %H:%M}; "
        f"difference = MAE {comparison.candidate} - MAE {comparison.control} in minutes; "
        f"interval: always-valid bounds, {rules.confidence:.0%} each at any look, clusters "
        f"Holm-adjusted; margin {rules.margin_minutes} min)"
    )


def show(comparisons: list[Comparison], env: str) -> None:
    if not comparisons:
        print(f"only one live version on {env}: nothing to compare")
        return
    for comparison in comparisons:
        print(heading(comparison))
        tables.show(COLUMNS, rows(comparison), title=f"{comparison.candidate} on {env}")


def render(comparisons: list[Comparison], project: str, env: str) -> str:
    """The same tables as a self-contained page (no script, nothing fetched)."""
    from {{ cookiecutter.package }}.reports.html import STYLE, table

    sections = []
    for number, comparison in enumerate(comparisons, start=1):
        verdict = comparison.overall.verdict
        sections.append(
            f'<section class="comparison" data-candidate="{escape(comparison.candidate)}" '
            f'data-verdict="{escape(verdict)}">'
            f"<h2>{escape(heading(comparison))}</h2>"
            + interval_chart(comparison, f"plot-ab-{number}")
            + table(COLUMNS, [tuple(r[c] for c in COLUMNS) for r in rows(comparison)])
            + "</section>"
        )
    body = "".join(sections) or f"<p>only one live version on {escape(env)}</p>"
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(project)} A/B on "
        f"{escape(env)}</title><style>{STYLE}</style></head><body><h1>{escape(project)}: "
        f"A/B verdicts on {escape(env)}</h1>{body}</body></html>"
    )


def interval_chart(comparison: Comparison, plot_id: str) -> str:
    """Each cluster's interval, and the overall one, against zero and the margin: the
    verdict at a glance (inside the band: equivalent; left of it: better; right: worse)."""
    from {{ cookiecutter.package }}.reports import charts

    scopes = [*((str(c), v) for c, v in comparison.clusters.items()), ("all", comparison.overall)]
    bounds = [(scope, v.difference, *v.interval, v.verdict) for scope, v in scopes]
    title = f"{comparison.candidate} against {comparison.control}, by user cluster"
    return charts.intervals(plot_id, title, bounds, comparison.overall.gates.margin_minutes)


def write(path: Path, comparisons: list[Comparison], project: str, env: str) -> Path:
    """Write the page (creating its folder); returns its absolute path."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(comparisons, project, env), encoding="utf-8")
    except OSError as error:
        raise ReleaseError(f"cannot write {path}: {error.strerror or error}") from None
    return path.resolve()
