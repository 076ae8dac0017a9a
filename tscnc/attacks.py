"""The attacks of the evaluation (DESIGN §3.6), built on torchattacks (its version is recorded as
:data:`LIBRARY`). Threat model: L∞ ball of radius ε around inputs in [0, 1]; names as in
:class:`tscnc.spec.AttackName`:

=============  ==============================================================================
``fgsm``       ``torchattacks.FGSM``: x' = clamp(x + ε·sign ∇CE, 0, 1).
``pgd``        ``torchattacks.PGD``: k steps (default 20) of size 2.5ε/k on CE, uniform random
               start (Madry et al.).
``cw``         :class:`CWLinf`: ``torchattacks.PGD`` with CE replaced by the Carlini–Wagner
               margin min(max_{j≠y} z_j − z_y, κ) (the "CW∞" of TRADES/HYDRA evaluations);
               torchattacks' own ``CW`` is the L2 attack, so the loss is swapped here.
``autoattack`` ``torchattacks.AutoAttack(norm="Linf", version="standard")``: APGD-CE, APGD-T,
               FAB-T, Square (5000 queries). torchattacks defaults the iterative parts to 10
               iterations and targets all C−1 classes; we set the reference budget of Croce &
               Hein (fra31/auto-attack "standard"): 100 iterations, min(9, C−1) target classes;
               a smaller ``steps`` scales Square's queries in proportion (50 per step).
=============  ==============================================================================

:func:`make_attack` builds one; :mod:`tscnc.evaluation` runs them (seeding, mode and parameter
restoration, robust accuracy).

Example::

    >>> atk = make_attack("pgd", model, epsilon=0.1)
    >>> x_adv = atk(x, y)          # same shape as x, within 0.1 of it, in [0, 1]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
import torchattacks
from torch import Tensor, nn
from torchattacks.attack import Attack

from tscnc.errors import InvalidInput
from tscnc.spec import AttackName

__all__ = [
    "DEFAULT_STEPS",
    "LIBRARY",
    "CWLinf",
    "attack_name",
    "attack_step_size",
    "cw_margin",
    "make_attack",
    "name_of",
]

LIBRARY = f"torchattacks {torchattacks.__version__}"

# Steps when the caller gives none: PGD-20 (§3.6), CW-30, AutoAttack's reference 100 iterations.
DEFAULT_STEPS: dict[AttackName, int] = {
    AttackName.fgsm: 1,
    AttackName.pgd: 20,
    AttackName.cw: 30,
    AttackName.autoattack: 100,
}
# Step size of PGD-k and CW-k: 2.5·ε/k (Madry et al.): the k steps can travel 2.5ε, more than
# the ball's diameter 2ε, so any point of the ball is reachable from the random start.
STEP_FACTOR = 2.5
# CW margin cap κ ("confidence"): large, so the margin is still pushed past misclassification.
CW_KAPPA = 50.0
# AutoAttack "standard" targets at most this many classes (fra31/auto-attack).
AUTOATTACK_TARGETS = 9
# Square queries per APGD/FAB iteration: 5000 queries at the standard 100 iterations.
SQUARE_QUERIES_PER_STEP = 50


def attack_step_size(epsilon: float, steps: int) -> float:
    """Step of PGD-k / CW-k: 2.5·ε/k."""
    return STEP_FACTOR * epsilon / steps



class CWLinf(torchattacks.PGD):
    """CW-L∞: PGD-k maximising the Carlini–Wagner margin instead of CE.

    Loss per example: min(max_{j≠y} z_j(x') − z_y(x'), κ), summed over the batch; steps and
    random start as ``torchattacks.PGD`` (whose mode handling, device and normalisation it
    inherits: only the loss differs). Inputs ``(N, ...)`` in [0, 1], labels ``(N,)``.

    Example::

        >>> atk = CWLinf(model, eps=0.1, alpha=2.5 * 0.1 / 30, steps=30)
        >>> x_adv = atk(x, y)
    """

    def __init__(self, model: nn.Module, eps: float = 8 / 255, alpha: float = 2 / 255,
                 steps: int = 30, random_start: bool = True, kappa: float = CW_KAPPA) -> None:
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start)
        self.attack = "CWLinf"
        self.kappa = kappa
        self.supported_mode = ["default"]

    def forward(self, images: Tensor, labels: Tensor) -> Tensor:
        images = images.clone().detach().to(self.device)
        labels = labels.clone().detach().to(self.device)
        adv = images.clone()
        if self.random_start:
            adv = (adv + torch.empty_like(adv).uniform_(-self.eps, self.eps)).clamp(0, 1)
        for _ in range(self.steps):
            adv.requires_grad_(True)
            cost = cw_margin(self.get_logits(adv), labels).clamp(max=self.kappa).sum()
            (grad,) = torch.autograd.grad(cost, adv)
            adv = adv.detach() + self.alpha * grad.sign()
            delta = torch.clamp(adv - images, min=-self.eps, max=self.eps)
            adv = torch.clamp(images + delta, min=0, max=1).detach()
        return adv


def cw_margin(logits: Tensor, labels: Tensor) -> Tensor:
    """max_{j≠y} z_j − z_y per example, shape ``(N,)``; > 0 exactly when misclassified."""
    correct = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(labels, logits.shape[1]).bool(), -math.inf)
    return others.amax(dim=1) - correct


class _ImageView(nn.Module):
    """Show a model of non-image inputs ``(N, *shape)`` to AutoAttack as ``(N, 1, h, w)``.

    AutoAttack's APGD and Square index inputs as ``(N, C, H, W)``. The ``training`` flag is the
    wrapped model's own, so torchattacks' save/restore of ``model.training`` sees the truth.
    """

    def __init__(self, model: nn.Module, shape: Sequence[int]) -> None:
        super().__init__()
        self.inner = model
        self.shape = tuple(shape)
        d = math.prod(self.shape)
        h = max(k for k in range(1, math.isqrt(d) + 1) if d % k == 0)
        self.image_shape = (1, h, d // h)

    @property  # type: ignore[override]
    def training(self) -> bool:
        inner = self.__dict__.get("_modules", {}).get("inner")
        return bool(inner.training) if inner is not None else True

    @training.setter
    def training(self, mode: bool) -> None:
        # nn.Module.__init__ and .train() assign the flag; the wrapped model keeps the truth.
        pass

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x.reshape(x.shape[0], *self.shape))

    def to_image(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], *self.image_shape)

    def from_image(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], *self.shape)


class _AutoAttack(torchattacks.AutoAttack):
    """``torchattacks.AutoAttack`` that accepts inputs of any shape through :class:`_ImageView`."""

    def __init__(self, model: nn.Module, view: _ImageView | None, **kwargs: Any) -> None:
        super().__init__(view if view is not None else model, **kwargs)
        self.view = view

    def forward(self, images: Tensor, labels: Tensor) -> Tensor:
        if self.view is None:
            return super().forward(images, labels)
        return self.view.from_image(super().forward(self.view.to_image(images), labels))


def make_attack(name: AttackName | str, model: nn.Module, epsilon: float, *,
                steps: int | None = None, step_size: float | None = None, seed: int = 0,
                num_classes: int = 10,
                input_shape: Sequence[int] | None = None) -> Attack:
    """Build attack ``name`` on ``model`` at L∞ radius ``epsilon`` (inputs in [0, 1]).

    ``steps`` defaults to :data:`DEFAULT_STEPS` (FGSM ignores it), ``step_size`` to 2.5ε/steps;
    ``seed`` seeds AutoAttack's internal restarts (the other attacks use the torch RNG, seeded by
    :func:`tscnc.evaluation.robust_accuracy`); ``num_classes`` sets AutoAttack's targets; ``input_shape`` (one
    example, e.g. ``(64,)``) lets AutoAttack run on non-image inputs.

    The returned object is a torchattacks ``Attack``: ``atk(x, y) -> x_adv`` of ``x``'s shape.
    It switches the model to eval mode and back (top-level flag); :func:`tscnc.evaluation.robust_accuracy` adds
    the exact per-submodule restore, seeding and parameter freezing.
    """
    attack = attack_name(name)
    if not 0 < epsilon <= 1:
        raise InvalidInput(f"epsilon must be in (0, 1] for inputs in [0, 1], got {epsilon}")
    k = steps if steps is not None else DEFAULT_STEPS[attack]
    if k < 1:
        raise InvalidInput(f"steps must be >= 1, got {k}")
    alpha = step_size if step_size is not None else attack_step_size(epsilon, k)
    if attack == AttackName.fgsm:
        return torchattacks.FGSM(model, eps=epsilon)
    if attack == AttackName.pgd:
        return torchattacks.PGD(model, eps=epsilon, alpha=alpha, steps=k, random_start=True)
    if attack == AttackName.cw:
        return CWLinf(model, eps=epsilon, alpha=alpha, steps=k, random_start=True)
    view = None
    if input_shape is not None and len(input_shape) != 3:
        view = _ImageView(model, input_shape)
    atk = _AutoAttack(model, view, norm="Linf", eps=epsilon, version="standard",
                      n_classes=num_classes, seed=seed, verbose=False)
    # Reference "standard" budget (see module docstring); the sub-attacks read these at run time.
    for sub in atk._autoattack.attacks:
        if isinstance(sub, torchattacks.APGD | torchattacks.APGDT | torchattacks.FAB):
            sub.steps = k
        if isinstance(sub, torchattacks.APGDT | torchattacks.FAB):
            sub.n_target_classes = max(1, min(AUTOATTACK_TARGETS, num_classes - 1))
        if isinstance(sub, torchattacks.Square):
            # Square's budget is queries: the reference pairs 5000 with 100 iterations, so a
            # sized-down AutoAttack (fewer steps) shrinks it in the same proportion.
            sub.n_queries = SQUARE_QUERIES_PER_STEP * k
    return atk


def attack_name(name: AttackName | str) -> AttackName:
    """``name`` as an :class:`AttackName`; an unknown name is an input error listing the known."""
    try:
        return AttackName(name)
    except ValueError:
        known = ", ".join(a.value for a in AttackName)
        raise InvalidInput(f"unknown attack {name!r}; known: {known}") from None



def name_of(atk: Attack) -> str:
    """The :class:`AttackName` value of a ready torchattacks attack (else its own name)."""
    if isinstance(atk, CWLinf):
        return AttackName.cw.value
    if isinstance(atk, torchattacks.AutoAttack):
        return AttackName.autoattack.value
    if isinstance(atk, torchattacks.PGD):
        return AttackName.pgd.value
    if isinstance(atk, torchattacks.FGSM):
        return AttackName.fgsm.value
    return str(atk.attack).lower()
