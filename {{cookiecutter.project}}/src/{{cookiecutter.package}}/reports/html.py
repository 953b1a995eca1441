"""`inv compare --html report.html`: one self-contained page to look at, not read.

Plots are inline SVG drawn here (no plotting library, no script, nothing fetched), so the
file opens anywhere, offline, and can be attached to a pull request or a ticket:
the metrics side by side, the two versions' prediction distributions on the fixed batch,
and their residuals (prediction - actual).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from pathlib import Path

import numpy as np

from {{ cookiecutter.package }}.reports.compare import CompareError, Comparison

OLD_COLOUR, NEW_COLOUR = "#1f77b4", "#d62728"
WIDTH, HEIGHT, MARGIN = 640, 260, 40
BINS = 40

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 70rem; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.5rem 0; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.legend span { display: inline-block; width: 0.8rem; height: 0.8rem; margin: 0 0.3rem; }
svg { background: #fafafa; border: 1px solid #ddd; }
"""


def _svg(plot_id: str, title: str, body: list[str]) -> str:
    return "\n".join(
        [
            f'<svg id="{plot_id}" class="plot" xmlns="http://www.w3.org/2000/svg" '
            f'width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img">',
            f"<title>{escape(title)}</title>",
            *body,
            "</svg>",
        ]
    )


def _axis(low: float, high: float, label: str) -> list[str]:
    base = HEIGHT - MARGIN
    return [
        f'<line x1="{MARGIN}" y1="{base}" x2="{WIDTH - MARGIN}" y2="{base}" stroke="#555"/>',
        f'<text x="{MARGIN}" y="{base + 16}" font-size="11">{low:.3g}</text>',
        f'<text x="{WIDTH - MARGIN}" y="{base + 16}" font-size="11" '
        f'text-anchor="end">{high:.3g}</text>',
        f'<text x="{WIDTH / 2}" y="{base + 30}" font-size="12" '
        f'text-anchor="middle">{escape(label)}</text>',
    ]


def histograms(plot_id: str, title: str, label: str, series: list[tuple[str, np.ndarray]]) -> str:
    """Overlaid histograms of several series on shared bins."""
    values = np.concatenate([s for _, s in series])
    edges = np.histogram_bin_edges(values, bins=BINS)
    counts = [np.histogram(s, bins=edges)[0] / max(len(s), 1) for _, s in series]
    top = max(float(c.max()) for c in counts) or 1.0
    span = float(edges[-1] - edges[0]) or 1.0

    def x(value: float) -> float:
        return MARGIN + (value - edges[0]) / span * (WIDTH - 2 * MARGIN)

    def y(share: float) -> float:
        return HEIGHT - MARGIN - share / top * (HEIGHT - 2 * MARGIN)

    body = _axis(float(edges[0]), float(edges[-1]), label)
    for (name, _), share, colour in zip(series, counts, (OLD_COLOUR, NEW_COLOUR), strict=False):
        points = []
        for left, right, value in zip(edges[:-1], edges[1:], share, strict=True):
            points += [f"{x(left):.1f},{y(value):.1f}", f"{x(right):.1f},{y(value):.1f}"]
        body.append(
            f'<polyline class="series" data-version="{escape(name)}" fill="none" '
            f'stroke="{colour}" stroke-width="2" points="{" ".join(points)}"/>'
        )
    return _svg(plot_id, title, body)


def metric_bars(comparison: Comparison) -> str:
    """Each metric as a pair of bars, scaled to the larger of the two (counts such as
    n_test are in the table, not drawn)."""
    names = [
        m
        for m in comparison.metric_names
        if m in comparison.old.metrics and m in comparison.new.metrics and not m.startswith("n_")
    ]
    group = (WIDTH - 2 * MARGIN) / max(len(names), 1)
    bar = group / 3
    body = _axis(0, 0, "")[:1]
    for i, metric in enumerate(names):
        pair = (comparison.old.metrics[metric], comparison.new.metrics[metric])
        scale = max(abs(v) for v in pair) or 1.0
        for j, (value, colour) in enumerate(zip(pair, (OLD_COLOUR, NEW_COLOUR), strict=True)):
            height = abs(value) / scale * (HEIGHT - 2 * MARGIN - 14)
            left = MARGIN + i * group + bar * (0.5 + j)
            body.append(
                f'<rect class="bar" x="{left:.1f}" y="{HEIGHT - MARGIN - height:.1f}" '
                f'width="{bar * 0.9:.1f}" height="{height:.1f}" fill="{colour}">'
                f"<title>{escape(metric)}: {value:.4g}</title></rect>"
            )
            body.append(
                f'<text x="{left + bar * 0.45:.1f}" y="{HEIGHT - MARGIN - height - 3:.1f}" '
                f'font-size="10" text-anchor="middle">{value:.3g}</text>'
            )
        body.append(
            f'<text x="{MARGIN + (i + 0.5) * group:.1f}" y="{HEIGHT - MARGIN + 16}" '
            f'font-size="12" text-anchor="middle">{escape(metric)}</text>'
        )
    return _svg("plot-metrics", "metrics side by side", body)


def table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render(comparison: Comparison, project: str) -> str:
    old, new = comparison.old, comparison.new
    metrics = [
        (m, f"{old.metrics.get(m, float('nan')):.4g}", f"{new.metrics.get(m, float('nan')):.4g}")
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
        table(("metric", old.version, new.version), metrics),
        metric_bars(comparison),
        "<h2>Predictions on one fixed batch, each version with its own code</h2>",
        f"<p>{escape(comparison.agreement())}</p>",
        table(("statistic", old.version, new.version), comparison.prediction_stats()),
        histograms("plot-predictions", "prediction distributions", "ETA (minutes)", series),
        "<h2>Residuals (prediction - actual)</h2>",
        histograms("plot-residuals", "residual distributions", "minutes", residuals),
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
