"""Statistics across seeds (DESIGN §3.5); torch-free, used by reports, the API and benches.

Runs of one configuration that differ only in their seed are summarised as:

- accuracies: the mean with a 95 % Student-t interval, :func:`mean_ci`:
  x̄ ± t_{0.975, n−1} · s/√n, with s the sample standard deviation (ddof 1); no interval for
  n < 2;
- κ: the geometric mean exp(mean log κ_i) with its min and max, :func:`kappa_summary`; ∞ when any
  κ_i is ∞ (a rank-deficient layer is reported as such, never averaged away);
- a method against a baseline: the paired-by-seed difference d_s = m_s − b_s with the same
  t-interval over the seeds both have, :func:`paired_difference`, and a :class:`Verdict`:
  ``better`` / ``worse`` when the interval lies entirely on one side of 0 (which side is better
  is the caller's ``higher_is_better``), ``tie`` when it contains 0, ``insufficient`` with fewer
  than 2 pairs. A claim "holds" only when its verdict is ``better``.

Example::

    >>> m = mean_ci([0.70, 0.72, 0.71])
    >>> round(m.mean, 3), round(m.low, 3), round(m.high, 3)
    (0.71, 0.685, 0.735)
    >>> d = paired_difference({0: 0.71, 1: 0.69, 2: 0.70}, {0: 0.70, 1: 0.70, 2: 0.69})
    >>> d.n, d.verdict.value
    (3, 'tie')
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from scipy import stats as _scipy_stats

__all__ = ["CONFIDENCE", "KappaSummary", "MeanCI", "PairedDifference", "Verdict",
           "kappa_summary", "mean_ci", "paired_difference", "t_half_width"]

CONFIDENCE = 0.95


class Verdict(StrEnum):
    better = "better"
    worse = "worse"
    tie = "tie"                    # the interval contains 0
    insufficient = "insufficient"  # fewer than 2 pairs: no interval


@dataclass(frozen=True)
class MeanCI:
    """Mean of ``n`` values with its Student-t interval ``[low, high]`` (None for n < 2)."""

    mean: float
    low: float | None
    high: float | None
    n: int

    @property
    def half_width(self) -> float | None:
        return None if self.low is None or self.high is None else (self.high - self.low) / 2


@dataclass(frozen=True)
class KappaSummary:
    """Geometric mean of ``n`` condition numbers with their min and max (∞ if any is ∞)."""

    geo_mean: float
    min: float
    max: float
    n: int


@dataclass(frozen=True)
class PairedDifference:
    """Mean paired difference (method − baseline) over ``n`` seeds, its interval and verdict.

    ``excluded`` counts seeds both sides have but whose difference is not finite (e.g. κ = ∞ on
    one side): they cannot enter a t-interval and are left out, and reports say how many.
    """

    mean: float
    low: float | None
    high: float | None
    n: int
    verdict: Verdict
    excluded: int = 0


def t_half_width(values: Iterable[float], confidence: float = CONFIDENCE) -> float | None:
    """t_{(1+c)/2, n−1} · s/√n for ``n`` ≥ 2 finite values (s with ddof 1), else None."""
    xs = [float(v) for v in values]
    if len(xs) < 2:
        return None
    s = statistics.stdev(xs)
    return float(_scipy_stats.t.ppf((1 + confidence) / 2, len(xs) - 1)) * s / math.sqrt(len(xs))


def mean_ci(values: Iterable[float], confidence: float = CONFIDENCE) -> MeanCI:
    """Mean and Student-t interval of ``values`` (seeds of one configuration).

    Raises ``ValueError`` for no values or a non-finite value (an accuracy is always finite).
    """
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("mean_ci needs at least one value")
    if not all(math.isfinite(v) for v in xs):
        raise ValueError(f"mean_ci needs finite values, got {xs}")
    m = statistics.fmean(xs)
    h = t_half_width(xs, confidence)
    return MeanCI(m, None if h is None else m - h, None if h is None else m + h, len(xs))


def kappa_summary(values: Iterable[float]) -> KappaSummary:
    """exp(mean log κ_i), min and max over seeds; the mean is ∞ when any κ_i is ∞.

    Example::

        >>> kappa_summary([10.0, 1000.0])
        KappaSummary(geo_mean=100.00000000000004, min=10.0, max=1000.0, n=2)
    """
    ks = [float(v) for v in values]
    if not ks:
        raise ValueError("kappa_summary needs at least one value")
    if any(math.isnan(k) or k < 1 for k in ks):
        raise ValueError(f"a condition number is >= 1, got {ks}")
    geo = math.inf if any(math.isinf(k) for k in ks) else \
        math.exp(statistics.fmean(math.log(k) for k in ks))
    return KappaSummary(geo, min(ks), max(ks), len(ks))


def paired_difference(method: Mapping[Hashable, float], baseline: Mapping[Hashable, float], *,
                      higher_is_better: bool = True,
                      confidence: float = CONFIDENCE) -> PairedDifference:
    """Paired-by-seed difference ``method[s] − baseline[s]`` over the seeds both have.

    The interval is the Student-t interval of the differences (the confidence interval of a
    paired t-test); the verdict is ``better`` when it excludes 0 on the favourable side (above
    0 when ``higher_is_better``, below 0 otherwise), ``worse`` when it excludes 0 on the other,
    ``tie`` when it contains 0, ``insufficient`` with fewer than 2 finite pairs (then ``mean``
    is the single difference, or NaN with none).
    """
    common = [s for s in method if s in baseline]
    diffs = [float(method[s]) - float(baseline[s]) for s in common]
    finite = [d for d in diffs if math.isfinite(d)]
    excluded = len(diffs) - len(finite)
    if len(finite) < 2:
        mean = finite[0] if finite else math.nan
        return PairedDifference(mean, None, None, len(finite), Verdict.insufficient, excluded)
    ci = mean_ci(finite, confidence)
    assert ci.low is not None and ci.high is not None
    if ci.low > 0:
        verdict = Verdict.better if higher_is_better else Verdict.worse
    elif ci.high < 0:
        verdict = Verdict.worse if higher_is_better else Verdict.better
    else:
        verdict = Verdict.tie
    return PairedDifference(ci.mean, ci.low, ci.high, ci.n, verdict, excluded)
