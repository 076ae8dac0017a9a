"""Sweep summaries and figures from run results (pure: records in, tables/figures out).

:func:`aggregate` groups results by (method, sparsity) over seeds with the statistics of
DESIGN §3.5 (:mod:`tscnc.stats`): accuracies as the mean with a 95 % Student-t interval, κ as the
geometric mean of the runs' median κ with its min and max (∞ if any run's median is ∞).
:func:`sweep_figure` draws clean accuracy, robust accuracy and κ against sparsity, one trace per
method — the picture the dashboard shows live; κ = ∞ is drawn as ∞: a distinct marker on a
labelled "∞" band at the top of the log κ axis (:func:`kappa_axis`), never dropped.
:func:`write_html` saves the figure self-contained.

Example::

    >>> rows = aggregate(results)                                   # doctest: +SKIP
    >>> sweep_figure(rows, attack="pgd").write_html("report.html")  # doctest: +SKIP
"""

from __future__ import annotations

import html
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tscnc import stats
from tscnc.palette import METHOD_COLORS, method_rank
from tscnc.records import RunResult
from tscnc.spec import param_label, param_name

# ``attack`` name that selects the per-run minimum over the attacks evaluated.
MIN_ATTACK = "min"
INF_LABEL = "∞"
INF_SYMBOL = "triangle-up"     # marker of a κ = ∞ point (finite points: circles)


@dataclass(frozen=True)
class Point:
    """One (method, sparsity) over its ``n`` seeds.

    Accuracies are seed means; ``*_ci`` are the half-widths of their 95 % Student-t intervals
    (None for n < 2). ``robust_min`` is the mean over seeds of each run's minimum accuracy over
    the attacks it was evaluated with (the worst attack per run). κ: ``kappa_median`` is the
    geometric mean over seeds of each run's median per-layer κ, with the min and max of those
    medians (∞ if any is ∞); ``kappa_max`` is the largest per-layer κ of any run.
    """

    method: str
    sparsity: float
    n: int
    clean: float
    clean_ci: float | None
    robust: dict[str, float]
    robust_ci: dict[str, float | None]
    robust_min: float | None
    robust_min_ci: float | None
    kappa_median: float
    kappa_median_min: float
    kappa_median_max: float
    kappa_max: float
    sparsity_actual: float

    def robust_of(self, attack: str) -> tuple[float | None, float | None]:
        """(mean, CI half-width) under ``attack``, or the per-run minimum for ``"min"``."""
        if attack == MIN_ATTACK:
            return self.robust_min, self.robust_min_ci
        return self.robust.get(attack), self.robust_ci.get(attack)


def run_min_accuracy(r: RunResult) -> float | None:
    """A run's minimum robust accuracy over the attacks it was evaluated with (None: no attack)."""
    return min(r.robust_accuracy.values()) if r.robust_accuracy else None


def aggregate(results: Iterable[RunResult]) -> list[Point]:
    """One :class:`Point` per (method, grid values, sparsity); with grid values the point's
    ``method`` names them, e.g. ``tscnc lambda_cnc=0.1`` (a trace of its own)."""
    groups: dict[tuple[str, float], list[RunResult]] = {}
    for r in results:
        label = " ".join([r.method.value, *(f"{param_name(p)}={param_label(v)}"
                                            for p, v in r.params.items())])
        groups.setdefault((label, r.sparsity), []).append(r)
    points = []
    for (method, sp), rs in groups.items():
        clean = stats.mean_ci([r.clean_accuracy for r in rs])
        attacks = sorted({a for r in rs for a in r.robust_accuracy})
        robust: dict[str, float] = {}
        robust_ci: dict[str, float | None] = {}
        for a in attacks:
            m = stats.mean_ci([r.robust_accuracy[a] for r in rs if a in r.robust_accuracy])
            robust[a], robust_ci[a] = m.mean, m.half_width
        mins = [v for v in (run_min_accuracy(r) for r in rs) if v is not None]
        rmin = stats.mean_ci(mins) if mins else None
        kappa = stats.kappa_summary([r.condition_number.median for r in rs])
        points.append(Point(
            method=method, sparsity=sp, n=len(rs), clean=clean.mean, clean_ci=clean.half_width,
            robust=robust, robust_ci=robust_ci,
            robust_min=rmin.mean if rmin else None,
            robust_min_ci=rmin.half_width if rmin else None,
            kappa_median=kappa.geo_mean, kappa_median_min=kappa.min,
            kappa_median_max=kappa.max,
            kappa_max=max(r.condition_number.max for r in rs),
            sparsity_actual=statistics.fmean(r.sparsity_actual for r in rs)))
    return sorted(points, key=lambda p: (method_rank(p.method.split()[0]), p.method,
                                         p.sparsity))


def _pm(mean: float | None, ci: float | None, digits: int = 3) -> str:
    if mean is None:
        return "–"
    return f"{mean:.{digits}f}" + ("" if ci is None else f"±{ci:.{digits}f}")


def fmt_kappa(v: float) -> str:
    return INF_LABEL if math.isinf(v) else f"{v:.3g}"


def format_table(points: Sequence[Point], attacks: Sequence[str] | None = None) -> str:
    """Plain-text table: method, sparsity, clean, robust per attack (and their minimum when
    there are several), κ median / max; accuracies as mean±(95 % CI half-width)."""
    attacks = list(attacks or sorted({a for p in points for a in p.robust}))
    with_min = len(attacks) > 1
    head = (["method", "sparsity", "actual", "n", "clean"] + [f"rob:{a}" for a in attacks]
            + (["rob:min"] if with_min else []) + ["κ median", "κ max"])
    rows = [head]
    for p in points:
        rows.append([p.method, f"{p.sparsity:g}", f"{p.sparsity_actual:.3f}", str(p.n),
                     _pm(p.clean, p.clean_ci)]
                    + [_pm(*p.robust_of(a)) for a in attacks]
                    + ([_pm(p.robust_min, p.robust_min_ci)] if with_min else [])
                    + [fmt_kappa(p.kappa_median), fmt_kappa(p.kappa_max)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@dataclass(frozen=True)
class KappaAxis:
    """Log κ axis with an "∞" band on top: finite values in ``[low, top_finite]`` (log10
    units), ∞ drawn at ``inf_at`` inside the band ``[band_from, high]``."""

    low: float
    top_finite: float
    band_from: float
    inf_at: float
    high: float

    def y(self, kappa: float) -> float:
        """Where κ is drawn (data units of a log axis): κ itself, or 10^inf_at for ∞."""
        return 10 ** self.inf_at if math.isinf(kappa) else kappa


def kappa_axis(values: Iterable[float]) -> KappaAxis:
    """The κ axis for ``values`` (∞ allowed): the finite range padded to whole decades, then a
    gap of half a decade and a one-decade band that holds ∞.

    Example::

        >>> a = kappa_axis([3.0, 120.0, math.inf])
        >>> (a.low, a.top_finite, a.band_from, a.inf_at, a.high)
        (0.0, 3.0, 3.5, 4.0, 4.5)
    """
    finite = [math.log10(max(v, 1.0)) for v in values if math.isfinite(v)]
    low = math.floor(min(finite)) if finite else 0.0
    top = max(float(math.ceil(max(finite))), low + 1.0) if finite else 1.0
    return KappaAxis(low=float(low), top_finite=top, band_from=top + 0.5, inf_at=top + 1.0,
                     high=top + 1.5)


def _category(sparsity: float) -> str:
    return f"{sparsity:g}"


def sweep_figure(points: Sequence[Point], attack: str = "pgd", title: str = "TSCNC sweep") -> Any:
    """Three panels against sparsity: clean accuracy, robust accuracy (``attack``; ``"min"``:
    the per-run minimum over attacks), κ (log) — error bars are 95 % intervals over seeds; on the
    κ panel the whisker reaches the largest per-layer κ, and κ = ∞ sits on the "∞" band as a
    triangle."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    attack_title = "minimum over attacks" if attack == MIN_ATTACK else attack
    fig = make_subplots(rows=1, cols=3, subplot_titles=(
        "clean accuracy", f"robust accuracy ({attack_title})",
        "condition number κ (median, whisker: max)"))
    axis = kappa_axis([v for p in points for v in (p.kappa_median, p.kappa_max)])
    for method in sorted({p.method for p in points}, key=lambda m: (method_rank(m), m)):
        ps = sorted((p for p in points if p.method == method), key=lambda p: p.sparsity)
        x = [_category(p.sparsity) for p in ps]
        c = METHOD_COLORS.get(method)
        common = dict(mode="lines+markers", name=method, legendgroup=method,
                      line=dict(color=c), marker=dict(color=c))
        fig.add_trace(go.Scatter(x=x, y=[p.clean for p in ps], error_y=dict(
            array=[p.clean_ci or 0 for p in ps]), **common), row=1, col=1)
        rob = [p.robust_of(attack) for p in ps]
        fig.add_trace(go.Scatter(x=x, y=[m for m, _ in rob], error_y=dict(
            array=[ci or 0 for _, ci in rob]), showlegend=False, **common), row=1, col=2)
        # Finite medians on the line; a whisker up to the largest layer κ (to the band if ∞).
        ky = [p.kappa_median if math.isfinite(p.kappa_median) else None for p in ps]
        kerr = [axis.y(p.kappa_max) - y if y is not None else None for p, y in zip(ps, ky,
                                                                                strict=True)]
        fig.add_trace(go.Scatter(x=x, y=ky, error_y=dict(array=kerr, arrayminus=[0] * len(x),
                                                          symmetric=False),
                                 showlegend=False, **common), row=1, col=3)
        inf = [p for p in ps if math.isinf(p.kappa_median)]
        if inf:
            fig.add_trace(go.Scatter(
                x=[_category(p.sparsity) for p in inf], y=[axis.y(math.inf)] * len(inf),
                mode="markers",
                name=f"{method}: κ = ∞", legendgroup=method, showlegend=False,
                marker=dict(color=c, symbol=INF_SYMBOL, size=12, line=dict(width=1,
                                                                            color="#333")),
                hovertemplate=f"{method}<br>sparsity %{{x}}<br>κ median = ∞<extra></extra>"),
                row=1, col=3)
    if any(math.isinf(p.kappa_median) for p in points):
        # One legend entry explaining the marker (no data of its own).
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"κ = {INF_LABEL}",
                                 marker=dict(color="#bbb", symbol=INF_SYMBOL, size=12,
                                             line=dict(width=1, color="#333"))),
                      row=1, col=3)
    fig.update_yaxes(range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    decades = list(range(int(axis.low), int(axis.top_finite) + 1))
    fig.update_yaxes(type="log", range=[axis.low, axis.high], row=1, col=3,
                     tickvals=[10 ** d for d in decades] + [10 ** axis.inf_at],
                     ticktext=[f"{10 ** d:g}" for d in decades] + [INF_LABEL])
    # The band: a shaded strip across the κ panel, labelled ∞ (tick and annotation).
    fig.add_hrect(y0=10 ** axis.band_from, y1=10 ** axis.high, fillcolor="#888",
                  opacity=0.15, line_width=0, row=1, col=3)
    fig.add_annotation(text=f"κ = {INF_LABEL} (rank-deficient)", xref="x3 domain", x=0.02,
                       xanchor="left", yref="y3", y=axis.high - 0.1, yanchor="top",
                       showarrow=False, font=dict(size=11, color="#444"))
    # Sparsities as evenly spaced categories (0.9, 0.95 and 0.99 would crowd a linear axis).
    categories = [_category(sp) for sp in sorted({p.sparsity for p in points})]
    for col in (1, 2, 3):
        fig.update_xaxes(title_text="sparsity", type="category", categoryorder="array",
                         categoryarray=categories, row=1, col=col)
    fig.update_layout(title=title, height=420, width=1250, template="plotly_white")
    return fig


def write_html(points: Sequence[Point], path: Path, attack: str = "pgd",
               title: str = "TSCNC sweep", summary: str | None = None) -> Path:
    """Self-contained HTML (Plotly.js inlined: opens offline). ``summary``: a text table
    (:func:`tscnc.summary.format_summary`: intervals and paired differences) shown below."""
    sweep_figure(points, attack=attack, title=title).write_html(
        str(path), include_plotlyjs=True, full_html=True)
    if summary:
        page = path.read_text(encoding="utf-8")
        block = (f'<h3 style="font-family:sans-serif">Seed statistics (95 % t-intervals; '
                 f'differences paired by seed)</h3>\n<pre id="summary">{html.escape(summary)}'
                 f'</pre>\n')
        path.write_text(page.replace("</body>", block + "</body>", 1), encoding="utf-8")
    return path
