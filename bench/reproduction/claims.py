"""The two claims, judged per model and sparsity on the paired-by-seed difference tscnc − hydra
(:mod:`tscnc.stats`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.reproduction.runs import KAPPA_CLAIM_MIN, ROBUST_CLAIM_MIN
from tscnc import report, stats
from tscnc.records import RunResult

VERDICT_WORDS = {stats.Verdict.better: "holds", stats.Verdict.tie: "tie",
                 stats.Verdict.worse: "fails", stats.Verdict.insufficient: "insufficient"}


@dataclass
class ClaimCheck:
    """One claim at one sparsity of one model, judged on the paired-by-seed difference.

    ``claim`` is ``"kappa"`` (difference of log10 median κ, tscnc − hydra; lower is better) or
    ``"robust"`` (difference of each run's minimum robust accuracy over attacks; higher is
    better). ``hydra``/``tscnc`` are the aggregates shown beside it (κ: geometric means;
    accuracy: means); ``per_attack`` holds each attack's paired difference for the robust claim.
    """

    model: str
    claim: str
    sparsity: float
    hydra: float
    tscnc: float
    diff: stats.PairedDifference
    per_attack: dict[str, stats.PairedDifference]

    @property
    def verdict(self) -> str:
        return VERDICT_WORDS[self.diff.verdict]


def below(a: float, b: float) -> bool:
    """a < b with ∞ as the largest value (∞ < ∞ is False)."""
    return (not math.isinf(a)) and (math.isinf(b) or a < b)


def fmt_k(v: float) -> str:
    """A κ as the tables show it: three significant digits, or ∞."""
    return "∞" if math.isinf(v) else f"{v:.3g}"


def log10_kappa(v: float) -> float:
    """log10 κ, with ∞ kept as ∞ (a rank-deficient layer at the median)."""
    return math.log10(v) if math.isfinite(v) else math.inf


def check_claims(model: str, points: Sequence[report.Point],
                 results: Sequence[RunResult]) -> list[ClaimCheck]:
    """Claims 1 and 2 at each sparsity where they apply, on the seeds both methods have."""
    by = {(p.method, p.sparsity): p for p in points}
    runs = {(r.method.value, r.sparsity, r.seed): r for r in results}
    checks: list[ClaimCheck] = []
    for s in sorted({p.sparsity for p in points}):
        h, t = by.get(("hydra", s)), by.get(("tscnc", s))
        if h is None or t is None:
            continue

        def per_seed(method: str, value: Any, s: float = s) -> dict[int, float]:
            return {sd: value(r) for (m, sp, sd), r in runs.items() if m == method and sp == s}

        if s >= KAPPA_CLAIM_MIN - 1e-9:
            kappa = lambda r: log10_kappa(r.condition_number.median)  # noqa: E731
            checks.append(ClaimCheck(
                model, "kappa", s, h.kappa_median, t.kappa_median,
                stats.paired_difference(per_seed("tscnc", kappa), per_seed("hydra", kappa),
                                        higher_is_better=False), {}))
        if s >= ROBUST_CLAIM_MIN - 1e-9 and h.robust_min is not None \
                and t.robust_min is not None:
            worst = report.run_min_accuracy
            per_attack = {a: stats.paired_difference(
                per_seed("tscnc", lambda r, a=a: r.robust_accuracy.get(a, math.nan)),
                per_seed("hydra", lambda r, a=a: r.robust_accuracy.get(a, math.nan)))
                for a in sorted(set(h.robust) & set(t.robust))}
            checks.append(ClaimCheck(
                model, "robust", s, h.robust_min, t.robust_min,
                stats.paired_difference(per_seed("tscnc", worst), per_seed("hydra", worst)),
                per_attack))
    return checks

