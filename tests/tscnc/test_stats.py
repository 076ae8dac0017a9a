"""Statistics across seeds (DESIGN §3.5) against independent computations (numpy, scipy)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as st

from tscnc.stats import Verdict, kappa_summary, mean_ci, paired_difference


@pytest.mark.parametrize("seed", range(6))
def test_mean_ci_matches_scipy_t_interval(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 9))
    x = rng.normal(0.7, 0.05, n)
    got = mean_ci(x.tolist())
    low, high = st.t.interval(0.95, n - 1, loc=x.mean(), scale=st.sem(x))
    assert got.n == n
    assert got.mean == pytest.approx(x.mean(), abs=1e-12)
    assert (got.low, got.high) == pytest.approx((low, high), abs=1e-12)
    assert got.half_width == pytest.approx((high - low) / 2, abs=1e-12)


def test_mean_ci_single_value_has_no_interval() -> None:
    got = mean_ci([0.5])
    assert (got.mean, got.low, got.high, got.n, got.half_width) == (0.5, None, None, 1, None)
    with pytest.raises(ValueError, match="at least one"):
        mean_ci([])
    with pytest.raises(ValueError, match="finite"):
        mean_ci([0.5, math.nan])


@pytest.mark.parametrize("seed", range(6))
def test_paired_difference_matches_ttest_rel(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(2, 9))
    b = rng.normal(0.6, 0.05, n)
    a = b + rng.normal(rng.choice([-0.05, 0.0, 0.05]), 0.02, n)
    seeds = [int(s) for s in rng.permutation(50)[:n]]
    # Dicts in different orders, and an unpaired seed on each side that must be ignored.
    method = dict(zip(seeds, a.tolist(), strict=True)) | {999: 5.0}
    baseline = dict(reversed(list(zip(seeds, b.tolist(), strict=True)))) | {998: -5.0}
    got = paired_difference(method, baseline)
    ref = st.ttest_rel(a, b).confidence_interval(0.95)
    assert got.n == n and got.excluded == 0
    assert got.mean == pytest.approx(float(np.mean(a - b)), abs=1e-12)
    assert (got.low, got.high) == pytest.approx((ref.low, ref.high), abs=1e-12)
    expected = (Verdict.better if ref.low > 0 else Verdict.worse if ref.high < 0
                else Verdict.tie)
    assert got.verdict == expected
    # Lower is better (κ): the same interval, the verdict mirrored.
    flipped = paired_difference(method, baseline, higher_is_better=False)
    assert (flipped.low, flipped.high) == (got.low, got.high)
    assert flipped.verdict == {Verdict.better: Verdict.worse, Verdict.worse: Verdict.better,
                               Verdict.tie: Verdict.tie}[expected]


def test_paired_difference_verdicts_on_clear_cases() -> None:
    base = {0: 0.50, 1: 0.60, 2: 0.70}
    assert paired_difference({s: v + 0.1 + 0.001 * s for s, v in base.items()},
                             base).verdict == Verdict.better
    assert paired_difference({s: v - 0.1 - 0.001 * s for s, v in base.items()},
                             base).verdict == Verdict.worse
    assert paired_difference({0: 0.51, 1: 0.59, 2: 0.70}, base).verdict == Verdict.tie
    one = paired_difference({0: 0.6}, {0: 0.5, 1: 0.4})
    assert (one.verdict, one.n, one.low, one.high) == (Verdict.insufficient, 1, None, None)
    assert one.mean == pytest.approx(0.1)
    none = paired_difference({0: 0.6}, {1: 0.5})
    assert none.verdict == Verdict.insufficient and math.isnan(none.mean)
    # A non-finite difference (κ = ∞ on one side) is left out and counted.
    inf = paired_difference({0: 1.0, 1: 2.0, 2: math.inf}, {0: 1.5, 1: 2.5, 2: 3.0},
                            higher_is_better=False)
    assert (inf.n, inf.excluded) == (2, 1)
    assert inf.mean == pytest.approx(-0.5)


def test_kappa_summary_geometric_mean_min_max() -> None:
    rng = np.random.default_rng(7)
    ks = (10 ** rng.uniform(0, 4, 5)).tolist()
    got = kappa_summary(ks)
    assert got.geo_mean == pytest.approx(float(st.gmean(ks)), rel=1e-12)
    assert (got.min, got.max, got.n) == (min(ks), max(ks), 5)
    inf = kappa_summary([3.0, math.inf, 5.0])
    assert math.isinf(inf.geo_mean) and inf.min == 3.0 and math.isinf(inf.max)
    with pytest.raises(ValueError):
        kappa_summary([])
    with pytest.raises(ValueError):
        kappa_summary([0.5])


def test_stats_module_does_not_import_torch() -> None:
    code = "import sys, tscnc.stats; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
