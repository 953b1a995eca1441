"""The HTML reports' charts: drawn by matplotlib, inlined in the page as SVG.

matplotlib rather than Vega-Lite: its SVG is the finished picture (axes, ticks, labels,
legend), so a report stays one file that opens anywhere offline with no script, where a
Vega-Lite chart needs its JavaScript runtime (about 1 MB inlined) and draws only in a
browser. Text stays text (`svg.fonttype: none`), so a page's DOM names every tick; ids are
fixed (`svg.hashsalt`), so the same report is the same file.

Every chart has both axes with ticks and a label with its unit; metrics are compared each on
its own scale; histograms count trips; residuals and differences have their zero drawn.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from html import escape
from typing import Any

import numpy as np

from {{ cookiecutter.package }}.errors import UserError

OLD_COLOUR, NEW_COLOUR = "#1f77b4", "#d62728"
COLOURS = (OLD_COLOUR, NEW_COLOUR)
BINS = 40
# What each metric of `ml.evaluate` is measured in (r2 has no unit).
UNITS = {"mae": "minutes", "rmse": "minutes", "bias": "minutes", "r2": "", "mape": "%"}
STYLE: Any = {  # matplotlib's rc settings (Any: its stubs type the keys as literals)
    "svg.fonttype": "none",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}


def _figure(width: float, height: float, columns: int = 1) -> tuple[Any, Any]:
    try:
        from matplotlib.figure import Figure  # no pyplot: no global figure state
    except ImportError:
        raise UserError(
            "the HTML report's charts need matplotlib, of the dev dependency group: "
            "`uv sync` installs it"
        ) from None

    figure = Figure(figsize=(width, height), layout="constrained")
    return figure, figure.subplots(1, columns, squeeze=False)[0]


def _svg(figure: Any, plot_id: str, title: str) -> str:
    """The figure as an inline `<svg id=plot_id class="plot">`."""
    import matplotlib

    out = io.StringIO()
    salted: Any = {**STYLE, "svg.hashsalt": plot_id}
    with matplotlib.rc_context(salted):
        figure.savefig(out, format="svg", metadata={"Date": None})
    svg = out.getvalue()
    svg = svg[svg.index("<svg") :]  # no XML declaration or DOCTYPE inside a page
    return svg.replace(
        "<svg ", f'<svg id="{plot_id}" class="plot" role="img" aria-label="{escape(title)}" ', 1
    )


def metric_panels(
    metrics: Sequence[str], versions: tuple[str, str], values: dict[str, tuple[float, float]]
) -> str:
    """Each metric in a panel of its own, on its own scale: a bar per version, its value
    written on it."""
    import matplotlib

    with matplotlib.rc_context(STYLE):
        figure, axes = _figure(1.9 * max(len(metrics), 1), 2.6, max(len(metrics), 1))
        for ax, metric in zip(axes, metrics, strict=False):
            bars = ax.bar(versions, values[metric], color=COLOURS, width=0.6)
            for bar, version in zip(bars, versions, strict=True):
                bar.set_gid(f"bar-{metric}-{version}")
            ax.bar_label(bars, fmt="%.3g", padding=2)
            ax.axhline(0, color="#555", linewidth=0.8)
            unit = UNITS.get(metric, "")
            ax.set_title(metric)
            ax.set_ylabel(f"{metric} ({unit})" if unit else metric)
            ax.set_xlabel("version")
            ax.margins(y=0.15)
        return _svg(figure, "plot-metrics", "each metric on its own scale, by version")


def histograms(
    plot_id: str,
    title: str,
    label: str,
    series: Sequence[tuple[str, np.ndarray]],
    zero_line: bool = False,
) -> str:
    """The series' distributions on shared bins, as step lines counting trips; with
    `zero_line`, a dashed line at 0 (residuals: 0 is a perfect prediction)."""
    import matplotlib

    values = np.concatenate([np.asarray(s, dtype=float) for _, s in series])
    edges = np.histogram_bin_edges(values, bins=BINS)
    with matplotlib.rc_context(STYLE):
        figure, (ax,) = _figure(7.0, 3.0)
        for (name, data), colour in zip(series, COLOURS, strict=False):
            _, _, patches = ax.hist(
                data, bins=edges, histtype="step", linewidth=1.8, color=colour, label=name
            )
            for patch in patches:
                patch.set_gid(f"series-{plot_id}-{name}")
        if zero_line:
            ax.axvline(0, color="#555", linestyle="--", linewidth=1, gid=f"zero-{plot_id}")
        ax.set_xlabel(label)
        ax.set_ylabel("trips")
        ax.legend(title="version")
        return _svg(figure, plot_id, title)


# What each verdict of an A/B interval is drawn in (the chart's key names them).
VERDICT_COLOURS = {
    "better": "#2ca02c",
    "worse": "#d62728",
    "equivalent": "#1f77b4",
    "inconclusive": "#7f7f7f",
}


def intervals(
    plot_id: str,
    title: str,
    rows: Sequence[tuple[str, float, float, float, str]],
    margin: float,
    unit: str = "minutes",
) -> str:
    """One horizontal interval per row (label, estimate, low, high, verdict) against zero and
    the margin either side of it: a row whose interval lies inside the band is equivalent,
    beyond it better (left) or worse (right); each drawn in its verdict's colour, with a
    key."""
    import matplotlib

    with matplotlib.rc_context(STYLE):
        figure, (ax,) = _figure(7.0, 1.2 + 0.32 * len(rows))
        ax.axvspan(-margin, margin, color="#999", alpha=0.18, label=f"margin ±{margin:g}")
        ax.axvline(0, color="#555", linewidth=1, gid=f"zero-{plot_id}")
        keyed: set[str] = set()
        for y, (label, estimate, low, high, verdict) in enumerate(rows):
            finite = np.isfinite([estimate, low, high]).all()
            if finite:
                colour = VERDICT_COLOURS.get(verdict, "#222")
                line = ax.errorbar(
                    [estimate], [y], xerr=[[estimate - low], [high - estimate]],
                    fmt="o" if label != "all" else "D", color=colour, capsize=3,
                    label=verdict if verdict not in keyed else None,
                )  # fmt: skip
                keyed.add(verdict)
                line.lines[0].set_gid(f"interval-{plot_id}-{label}")
        ax.set_yticks(range(len(rows)), [row[0] for row in rows])
        ax.invert_yaxis()  # the clusters top down, as in the table; "all" last
        ax.set_ylabel("user cluster")
        ax.set_xlabel(f"MAE difference, candidate - control ({unit}); left is better")
        _legend_above(ax, 1 + len(keyed))
        return _svg(figure, plot_id, title)


def _legend_above(ax: Any, entries: int) -> None:
    """The legend in a row above the axes, where it covers no bar or line."""
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.01), ncol=max(entries, 1), frameon=False)


def quantile_curves(
    plot_id: str, title: str, label: str, series: Sequence[tuple[str, Sequence[float]]]
) -> str:
    """Numeric distributions from their quantiles (`ml.drift`), as cumulative shares: x the
    value, y the share of trips at or below it."""
    import matplotlib

    from {{ cookiecutter.package }}.ml.drift import PERCENTS

    with matplotlib.rc_context(STYLE):
        figure, (ax,) = _figure(7.0, 3.0)
        for (name, quantiles), colour in zip(series, COLOURS, strict=False):
            (line,) = ax.plot(quantiles, PERCENTS * 100, color=colour, linewidth=1.8, label=name)
            line.set_gid(f"series-{plot_id}-{name}")
        ax.set_xlabel(label)
        ax.set_ylabel("trips at or below (%)")
        _legend_above(ax, len(series))
        return _svg(figure, plot_id, title)


def share_bars(
    plot_id: str, title: str, label: str, series: Sequence[tuple[str, dict[str, int]]]
) -> str:
    """Categorical distributions as side-by-side bars of each category's share of trips."""
    import matplotlib

    keys = sorted({k for _, counts in series for k in counts}, key=lambda k: (len(k), k))
    width = 0.8 / max(len(series), 1)
    with matplotlib.rc_context(STYLE):
        figure, (ax,) = _figure(7.0, 3.0)
        for index, ((name, counts), colour) in enumerate(zip(series, COLOURS, strict=False)):
            total = sum(counts.values()) or 1
            shares = [100 * counts.get(k, 0) / total for k in keys]
            positions = np.arange(len(keys)) + (index - (len(series) - 1) / 2) * width
            bars = ax.bar(positions, shares, width=width, color=colour, label=name)
            for bar in bars:
                bar.set_gid(f"series-{plot_id}-{name}")
        ax.set_xticks(np.arange(len(keys)), keys)
        ax.set_xlabel(label)
        ax.set_ylabel("share of trips (%)")
        _legend_above(ax, len(series))
        return _svg(figure, plot_id, title)
