"""Static report (tscnc.report): seed statistics of DESIGN §3.5 and κ = ∞ drawn on its band."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from tscnc import report
from tscnc.records import ConditionSummary, RunResult


def _result(method: str, sparsity: float, seed: int, clean: float, robust: dict[str, float],
            kappa: float, kappa_max: float | None = None) -> RunResult:
    return RunResult(
        run=f"{method}-s{sparsity:g}-seed{seed}", method=method, sparsity=sparsity,
        sparsity_actual=sparsity, sparsity_per_layer={"fc": sparsity}, seed=seed,
        clean_accuracy=clean, robust_accuracy=robust,
        condition_number=ConditionSummary(median=kappa, max=kappa_max or kappa,
                                          per_layer={"fc": kappa}),
        lipschitz_upper=1.0, security_curve=[], flags=[], attacks=[], checkpoint="", spec={},
        versions={}, wall_time=1.0)


def test_aggregate_uses_t_intervals_and_geometric_kappa() -> None:
    rng = np.random.default_rng(3)
    clean = rng.uniform(0.8, 0.9, 4)
    pgd = rng.uniform(0.5, 0.6, 4)
    aa = pgd - rng.uniform(0.0, 0.05, 4)
    kappas = 10 ** rng.uniform(0.5, 2.5, 4)
    rs = [_result("hydra", 0.9, s, clean[s], {"pgd": pgd[s], "autoattack": aa[s]}, kappas[s])
          for s in range(4)]
    (p,) = report.aggregate(rs)
    half = st.t.ppf(0.975, 3) * st.sem(clean)
    assert p.n == 4
    assert p.clean == pytest.approx(clean.mean()) and p.clean_ci == pytest.approx(half)
    assert p.robust_ci["pgd"] == pytest.approx(st.t.ppf(0.975, 3) * st.sem(pgd))
    mins = np.minimum(pgd, aa)
    assert p.robust_min == pytest.approx(mins.mean())
    assert p.robust_min_ci == pytest.approx(st.t.ppf(0.975, 3) * st.sem(mins))
    assert p.kappa_median == pytest.approx(st.gmean(kappas))
    assert (p.kappa_median_min, p.kappa_median_max) == (kappas.min(), kappas.max())
    text = report.format_table([p])
    assert "rob:min" in text and f"{clean.mean():.3f}±{half:.3f}" in text
    # One seed: no interval, and an ∞ median makes the summary ∞.
    (one,) = report.aggregate([_result("tscnc", 0.99, 0, 0.5, {"pgd": 0.3}, math.inf)])
    assert one.clean_ci is None and math.isinf(one.kappa_median)
    assert "∞" in report.format_table([one])


def test_kappa_axis_puts_infinity_on_a_band_above_every_finite_value() -> None:
    a = report.kappa_axis([1.5, 7e3, math.inf])
    assert (a.low, a.top_finite) == (0.0, 4.0)
    assert a.top_finite < a.band_from < a.inf_at < a.high
    assert a.y(math.inf) == 10 ** a.inf_at and a.y(12.0) == 12.0
    assert report.kappa_axis([math.inf]).inf_at > 0


def test_sweep_figure_draws_infinite_kappa_on_the_band() -> None:
    """The 0.99 points with κ = ∞ are drawn (before: dropped), as triangles on the ∞ band."""
    rs = []
    for seed in (0, 1):
        for method, kappas in (("hydra", (12.0, math.inf)), ("tscnc", (6.0, math.inf))):
            for sp, k in zip((0.9, 0.99), kappas, strict=True):
                rs.append(_result(method, sp, seed, 0.9, {"pgd": 0.6 - 0.01 * seed}, k,
                                  kappa_max=k * 3))
    points = report.aggregate(rs)
    fig = report.sweep_figure(points, attack="pgd")
    axis = report.kappa_axis([v for p in points for v in (p.kappa_median, p.kappa_max)])
    kappa_traces = [t for t in fig.data if t.yaxis == "y3"]
    on_band = [(t.name, x, y) for t in kappa_traces if t.marker.symbol == report.INF_SYMBOL
               for x, y in zip(t.x, t.y, strict=True) if x is not None]
    assert sorted(on_band) == [("hydra: κ = ∞", "0.99", 10 ** axis.inf_at),
                               ("tscnc: κ = ∞", "0.99", 10 ** axis.inf_at)]
    assert list(fig.layout.xaxis3.categoryarray) == ["0.9", "0.99"]
    # Finite medians stay on their lines; the ∞ medians are gaps there, not fake numbers.
    lines = {t.name: list(t.y) for t in kappa_traces if t.mode == "lines+markers"}
    assert lines == {"hydra": [12.0, None], "tscnc": [6.0, None]}
    # The band is labelled ∞ on the axis, and shaded above every finite value.
    yaxis = fig.layout.yaxis3
    assert yaxis.type == "log" and list(yaxis.range) == [axis.low, axis.high]
    assert dict(zip(yaxis.ticktext, yaxis.tickvals, strict=True))["∞"] == 10 ** axis.inf_at
    (band,) = [s for s in fig.layout.shapes if s.yref == "y3"]
    assert band.y0 == 10 ** axis.band_from > 36.0 and band.y1 == 10 ** axis.high
    assert any("∞" in (a.text or "") for a in fig.layout.annotations)
    # The minimum over attacks is selectable for the robust panel.
    rob = [t for t in report.sweep_figure(points, attack="min").data if t.yaxis == "y2"]
    assert [list(t.y) for t in rob] == [[0.595, 0.595], [0.595, 0.595]]
