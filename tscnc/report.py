"""Sweep summaries and figures from run results (pure: records in, tables/figures out).

:func:`aggregate` groups results by (method, sparsity) over seeds (mean and spread);
:func:`sweep_figure` draws clean accuracy, robust accuracy and κ against sparsity, one trace
per method — the picture the dashboard shows live; :func:`write_html` saves it self-contained.

Example::

    >>> rows = aggregate(results)                                   # doctest: +SKIP
    >>> sweep_figure(rows, attack="pgd").write_html("report.html")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tscnc.records import RunResult

METHOD_ORDER = ["dense", "lwm", "hydra", "tsc", "cnc", "tscnc"]


@dataclass(frozen=True)
class Point:
    """Mean and spread (half the min–max range over seeds) of one (method, sparsity)."""

    method: str
    sparsity: float
    n: int
    clean: float
    clean_spread: float
    robust: dict[str, float]
    robust_spread: dict[str, float]
    kappa_median: float          # geometric mean over seeds of the per-run median κ
    kappa_max: float             # largest per-run max κ
    sparsity_actual: float


def _mean_spread(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), (max(values) - min(values)) / 2


def _geo_mean(values: Sequence[float]) -> float:
    if any(math.isinf(v) for v in values):
        return math.inf
    return math.exp(statistics.fmean(math.log(max(v, 1e-300)) for v in values))


def aggregate(results: Iterable[RunResult]) -> list[Point]:
    groups: dict[tuple[str, float], list[RunResult]] = {}
    for r in results:
        groups.setdefault((r.method.value, r.sparsity), []).append(r)
    points = []
    for (method, sp), rs in groups.items():
        clean, clean_s = _mean_spread([r.clean_accuracy for r in rs])
        attacks = sorted({a for r in rs for a in r.robust_accuracy})
        robust, robust_s = {}, {}
        for a in attacks:
            robust[a], robust_s[a] = _mean_spread([r.robust_accuracy[a] for r in rs
                                                   if a in r.robust_accuracy])
        points.append(Point(
            method=method, sparsity=sp, n=len(rs), clean=clean, clean_spread=clean_s,
            robust=robust, robust_spread=robust_s,
            kappa_median=_geo_mean([r.condition_number.median for r in rs]),
            kappa_max=max(r.condition_number.max for r in rs),
            sparsity_actual=statistics.fmean(r.sparsity_actual for r in rs)))
    key = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(points, key=lambda p: (key.get(p.method, 99), p.sparsity))


def format_table(points: Sequence[Point], attacks: Sequence[str] | None = None) -> str:
    """Plain-text table: method, sparsity, clean, robust per attack, κ median / max."""
    attacks = list(attacks or sorted({a for p in points for a in p.robust}))
    head = ["method", "sparsity", "actual", "n", "clean"] + [f"rob:{a}" for a in attacks] + \
        ["κ median", "κ max"]
    rows = [head]
    for p in points:
        rows.append([p.method, f"{p.sparsity:g}", f"{p.sparsity_actual:.3f}", str(p.n),
                     f"{p.clean:.3f}±{p.clean_spread:.3f}"]
                    + [f"{p.robust.get(a, float('nan')):.3f}±{p.robust_spread.get(a, 0):.3f}"
                       for a in attacks]
                    + [f"{p.kappa_median:.3g}", f"{p.kappa_max:.3g}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def sweep_figure(points: Sequence[Point], attack: str = "pgd", title: str = "TSCNC sweep"):
    """Three panels against sparsity: clean accuracy, robust accuracy (``attack``), κ (log)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, subplot_titles=(
        "clean accuracy", f"robust accuracy ({attack})", "condition number κ (median, max)"))
    colors = dict(zip(METHOD_ORDER, ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a",
                                     "#19d3f3"], strict=True))
    for method in [m for m in METHOD_ORDER if any(p.method == m for p in points)]:
        ps = sorted((p for p in points if p.method == method), key=lambda p: p.sparsity)
        x = [p.sparsity for p in ps]
        c = colors.get(method)
        common = dict(mode="lines+markers", name=method, legendgroup=method,
                      line=dict(color=c), marker=dict(color=c))
        fig.add_trace(go.Scatter(x=x, y=[p.clean for p in ps], error_y=dict(
            array=[p.clean_spread for p in ps]), **common), row=1, col=1)
        fig.add_trace(go.Scatter(x=x, y=[p.robust.get(attack) for p in ps], error_y=dict(
            array=[p.robust_spread.get(attack, 0) for p in ps]), showlegend=False, **common),
            row=1, col=2)
        # κ = ∞ cannot sit on a log axis; such points are drawn at the top as open markers.
        ky = [p.kappa_median if math.isfinite(p.kappa_median) else None for p in ps]
        kerr = [(p.kappa_max - p.kappa_median) if math.isfinite(p.kappa_max) and y else None
                for p, y in zip(ps, ky, strict=True)]
        fig.add_trace(go.Scatter(x=x, y=ky, error_y=dict(array=kerr, arrayminus=[0] * len(x),
                                                          symmetric=False),
                                 showlegend=False, **common), row=1, col=3)
    fig.update_yaxes(range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    fig.update_yaxes(type="log", row=1, col=3)
    for col in (1, 2, 3):
        fig.update_xaxes(title_text="sparsity", row=1, col=col)
    fig.update_layout(title=title, height=420, width=1250, template="plotly_white")
    return fig


def write_html(points: Sequence[Point], path: Path, attack: str = "pgd",
               title: str = "TSCNC sweep") -> Path:
    """Self-contained HTML (Plotly.js inlined: opens offline)."""
    sweep_figure(points, attack=attack, title=title).write_html(
        str(path), include_plotlyjs=True, full_html=True)
    return path
