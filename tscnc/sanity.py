"""Sanity flags of an evaluation (DESIGN §3.6): signs of gradient masking, flagged, never hidden.

:func:`sanity_flags` reads only the numbers an evaluation produced (accuracies per attack and
the security curve), so it needs no model and no torch.
"""

from __future__ import annotations

from collections.abc import Sequence

from tscnc.records import AttackResult, Flag
from tscnc.spec import AttackName

__all__ = ["CHANCE_MARGIN", "FLAG_TOLERANCE", "LARGE_EPSILON_ABSOLUTE", "LARGE_EPSILON_FACTOR",
           "sanity_flags"]

# Sanity-check knobs (§3.6): slack for sampling noise, and "large ε" thresholds.
FLAG_TOLERANCE = 0.01          # accuracy slack before PGD>FGSM or a rising curve is flagged
CHANCE_MARGIN = 0.1            # flag when accuracy at a large ε exceeds 1/C + this
LARGE_EPSILON_FACTOR = 4.0     # a curve point is "large" at >= 4x the training epsilon ...
LARGE_EPSILON_ABSOLUTE = 0.5   # ... or at >= 0.5 (half the input range) whatever epsilon is


def sanity_flags(clean: float, results: Sequence[AttackResult],
                 curve: Sequence[tuple[float, float]], num_classes: int, *,
                 epsilon: float | None = None, tolerance: float = FLAG_TOLERANCE,
                 chance_margin: float = CHANCE_MARGIN) -> list[Flag]:
    """Signs of gradient masking (DESIGN §3.6), flagged, never hidden.

    - ``pgd_weaker_than_fgsm``: at the same ε, acc_PGD > acc_FGSM + ``tolerance`` (an iterative
      attack that does worse than its own first step is not following the gradient);
    - ``not_monotone_in_epsilon``: along the curve sorted by ε (with (0, ``clean``) prepended when
      absent), some acc(ε_{i+1}) > acc(ε_i) + ``tolerance``;
    - ``above_chance_at_large_epsilon``: at the curve's largest ε, when that ε is large
      (≥ 4·``epsilon``, the training radius, or ≥ 0.5), accuracy > 1/``num_classes`` +
      ``chance_margin``. Not checked when the curve never reaches a large ε.

    Example::

        >>> sanity_flags(0.9, [], [(0.0, 0.9), (0.1, 0.5), (0.2, 0.6)], 10)
        [<Flag.not_monotone_in_epsilon: 'not_monotone_in_epsilon'>]
    """
    flags: list[Flag] = []
    by_attack: dict[tuple[str, float], float] = {(r.attack, r.epsilon): r.accuracy
                                                 for r in results}
    for (name, eps), acc in by_attack.items():
        if name == AttackName.pgd.value:
            fgsm = by_attack.get((AttackName.fgsm.value, eps))
            if fgsm is not None and acc > fgsm + tolerance:
                flags.append(Flag.pgd_weaker_than_fgsm)
                break
    points = sorted(curve)
    if points and all(e > 0 for e, _ in points):
        points.insert(0, (0.0, clean))
    if any(b[1] > a[1] + tolerance for a, b in zip(points, points[1:], strict=False)):
        flags.append(Flag.not_monotone_in_epsilon)
    if points:
        eps_max, acc_max = points[-1]
        large = LARGE_EPSILON_ABSOLUTE
        if epsilon is not None:
            large = min(large, LARGE_EPSILON_FACTOR * epsilon)
        if eps_max >= large * (1 - 1e-9) and acc_max > 1.0 / num_classes + chance_margin:
            flags.append(Flag.above_chance_at_large_epsilon)
    return flags
