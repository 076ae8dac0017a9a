"""tscnc.summary (the one summary of runs over seeds) and the reports that print it: the CLI's
seed-statistics table and the static report's table (issue 12)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as st

from tscnc import report
from tscnc.cli_run import seed_summary
from tscnc.records import ConditionSummary, RunResult
from tscnc.spec import Method, resolve
from tscnc.summary import SummaryInput, default_baseline, format_summary, summarize

SPEC = resolve(None, {"methods": ["hydra", "tscnc"], "sparsities": [0.9], "seeds": [0, 1, 2],
                      "grid": {"constraints.lambda_cnc": [0.01, 1.0]}})


def _results(seed: int = 0) -> list[RunResult]:
    rng = np.random.default_rng(seed)
    out = []
    for r in SPEC.runs():
        lift = 0.1 if r.method == Method.tscnc and r.params["constraints.lambda_cnc"] == 1.0 \
            else 0.0
        kappa = math.inf if (r.method, r.seed) == (Method.hydra, 2) else float(rng.uniform(2, 50))
        out.append(RunResult(
            run=r.key, method=r.method, sparsity=r.sparsity, sparsity_actual=r.sparsity,
            sparsity_per_layer={}, seed=r.seed, params=r.params,
            clean_accuracy=float(rng.uniform(0.7, 0.8)),
            robust_accuracy={"pgd": float(rng.uniform(0.3, 0.32) + lift),
                             "fgsm": float(rng.uniform(0.4, 0.5) + lift)},
            condition_number=ConditionSummary(median=kappa, max=kappa, per_layer={}),
            lipschitz_upper=1.0, security_curve=[], flags=[], attacks=[], checkpoint="",
            spec={}, versions={}, wall_time=1.0))
    return out


def test_summarize_groups_by_method_and_grid_values_and_pairs_by_seed() -> None:
    results = _results()
    s = summarize([SummaryInput(r.run, "sw", SPEC, r) for r in results],
                  baseline=Method.hydra)
    assert [g.key for g in s.groups] == [
        "method=hydra lambda_cnc=0.01 s=0.9", "method=hydra lambda_cnc=1 s=0.9",
        "method=tscnc lambda_cnc=0.01 s=0.9", "method=tscnc lambda_cnc=1 s=0.9"]
    g = s.groups[3]
    mine = {r.seed: r for r in results if r.method == Method.tscnc
            and r.params["constraints.lambda_cnc"] == 1.0}
    base = {r.seed: r for r in results if r.method == Method.hydra
            and r.params["constraints.lambda_cnc"] == 1.0}
    d = np.array([mine[k].robust_accuracy["pgd"] - base[k].robust_accuracy["pgd"]
                  for k in range(3)])
    low, high = st.t.interval(0.95, 2, loc=d.mean(), scale=st.sem(d))
    assert g.difference is not None and g.difference.baseline_key == s.groups[1].key
    rd = g.difference.robust_accuracy
    assert (rd.mean, rd.ci_low, rd.ci_high) == pytest.approx((d.mean(), low, high))
    assert rd.verdict.value == "better"           # +0.1 with a spread of 0.02: above 0
    assert s.groups[0].kappa.geo_mean == math.inf and s.groups[0].difference is None
    # Pooled over λ: 2 runs per seed; each seed's mean enters the pairing.
    pooled = summarize([SummaryInput(r.run, "sw", SPEC, r) for r in results],
                       group_by=["method"], baseline=Method.hydra, attack="fgsm")
    t = pooled.groups[1]
    assert t.n == 6 and t.seeds == [0, 1, 2]
    by_seed = [np.mean([r.robust_accuracy["fgsm"] for r in results if r.seed == k
                        and r.method == m]) for m in (Method.tscnc, Method.hydra)
               for k in range(3)]
    pd_ = np.array(by_seed[:3]) - np.array(by_seed[3:])
    assert t.difference is not None
    assert t.difference.robust_accuracy.mean == pytest.approx(pd_.mean())
    assert t.difference.robust_accuracy.n == 3


def test_summarize_refuses_unknown_keys_and_attacks() -> None:
    inputs = [SummaryInput(r.run, "sw", SPEC, r) for r in _results()]
    with pytest.raises(ValueError, match="^group_by: unknown key"):
        summarize(inputs, group_by=["method", "seed"])
    with pytest.raises(ValueError, match="^attack: "):
        summarize(inputs, attack="square")
    assert default_baseline([Method.dense, Method.hydra, Method.tscnc]) == Method.hydra
    assert default_baseline([Method.dense, Method.hydra]) is None
    assert default_baseline([Method.tscnc]) is None


def test_cli_table_and_static_report_show_intervals_and_differences(tmp_path: Path) -> None:
    results = _results()
    table = seed_summary(SPEC, results)
    assert table is not None
    lines = table.splitlines()
    assert "Δ robust vs hydra" in lines[0] and "verdict" in lines[0]
    row = next(line for line in lines if line.startswith("method=tscnc lambda_cnc=1 s=0.9"))
    assert row.split()[-1] == "better" and "[" in row          # mean [low, high]
    assert "∞" in next(line for line in lines if line.startswith("method=hydra lambda_cnc=1"))
    assert seed_summary(SPEC, []) is None
    # The static report: one trace per method and grid values, and the same table below.
    points = report.aggregate(results)
    assert sorted({p.method for p in points}) == ["hydra lambda_cnc=0.01", "hydra lambda_cnc=1",
                                                   "tscnc lambda_cnc=0.01", "tscnc lambda_cnc=1"]
    assert all(p.n == 3 for p in points)
    page = report.write_html(points, tmp_path / "r.html", attack="pgd", summary=table)
    text = page.read_text()
    assert '<pre id="summary">' in text and "Δ robust vs hydra" in text
    assert "method=tscnc lambda_cnc=1 s=0.9" in text
    assert format_summary(summarize([SummaryInput(r.run, "sw", SPEC, r) for r in results])) \
        .splitlines()[0].split() == ["group", "n", "clean", "robust", "(min)", "κ", "median",
                                     "(geo)"]
