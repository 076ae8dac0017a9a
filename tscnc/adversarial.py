"""Adversarial training objectives: TRADES, PGD adversarial training (Madry) and natural CE.

All three share one call shape (DESIGN §10)::

    loss, logits_clean = adversarial_loss(model, x, y, objective=..., epsilon=..., step_size=...,
                                          steps=..., beta=...)
    loss, logits_clean = adversarial_loss(model, x, y, AdversarialParams.from_spec(sweep_spec))

``x`` is a batch of inputs in [0, 1] of any shape ``(B, ...)``, ``y`` the ``(B,)`` integer labels;
``loss`` is a scalar tensor carrying gradients to the model's parameters and ``logits_clean`` the
``(B, C)`` logits of the clean batch from the same forward pass, or ``None`` when the objective
never evaluates the clean batch with gradients (PGD-AT). Every inner maximisation runs the model in
eval mode (batch-norm statistics are not updated by adversarial points, dropout is off) and then
restores the train/eval flag of *every* submodule exactly as it found it.

Objectives (L∞ ball B_ε(x) = {x' : ‖x' − x‖_∞ ≤ ε} ∩ [0, 1]^d, f the logits, p = softmax f):

- ``natural``: CE(f(x), y).
- ``pgd`` (Madry et al. 2018): CE(f(x'), y) with x' = PGD-k on CE(f(·), y) from a uniform random
  start in B_ε(x), step ``step_size`` (torchattacks.PGD).
- ``trades`` (Zhang et al. 2019): CE(f(x), y) + β · (1/B) Σ_i KL(p(x_i) ‖ p(x'_i)) with
  x' = argmax_{x' ∈ B_ε(x)} KL(p(x) ‖ p(x')), found by k signed-gradient steps started at
  x + 0.001·N(0, I) (the reference implementation; torchattacks has no KL attack, so this loop
  is written here). The KL is ``F.kl_div(log p(x'), log p(x), reduction="batchmean",
  log_target=True)``, the value of the reference ``(1/B)·KLDivLoss(size_average=False)``;
  gradients flow through both p(x) and p(x'). The target is passed as log p(x) because p(x)
  underflows to 0 in float32 once a logit margin passes ~104, and the gradient of p·log p with
  respect to that 0 target is NaN (long runs then diverged); log p(x) keeps it finite.

Mixed precision: pass ``amp=torch.bfloat16`` (or ``torch.float16``) to run forwards under
``torch.autocast`` on CUDA; on other devices it is ignored (DESIGN: AMP is CUDA-only).

Example::

    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    >>> x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
    >>> loss, logits = adversarial_loss(model, x, y, objective="trades", epsilon=0.1,
    ...                                 step_size=0.05, steps=3, beta=6.0)
    >>> loss.backward(); logits.shape
    torch.Size([8, 10])
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
import torchattacks
from torch import Tensor, nn

from tscnc.errors import InvalidInput
from tscnc.layers import eval_mode, preserved_mode
from tscnc.spec import Objective, SweepSpec

__all__ = [
    "AdversarialParams",
    "LossOutput",
    "adversarial_loss",
    "autocast_for",
    "eval_mode",
    "natural_loss",
    "pgd_at_loss",
    "pgd_perturb",
    "preserved_mode",
    "trades_loss",
    "trades_perturb",
]

# TRADES starts its inner maximisation this close to x (reference code: 0.001 * randn).
TRADES_INIT_STD = 1e-3


@dataclass(frozen=True)
class AdversarialParams:
    """Resolved parameters of a training objective (no ``None`` left to interpret).

    Build it from a sweep with :meth:`from_spec`, which applies the dataset's ε preset and the
    default step size 2.5·ε/steps written once in :class:`tscnc.spec.SweepSpec`.
    """

    objective: Objective | str = Objective.trades
    epsilon: float = 0.1          # L∞ radius, inputs in [0, 1]
    step_size: float = 0.05       # signed-gradient step of the inner maximisation
    steps: int = 5                # inner maximisation steps
    beta: float = 6.0             # TRADES trade-off β (ignored by the other objectives)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "objective", Objective(self.objective))
        except ValueError:
            known = ", ".join(o.value for o in Objective)
            raise InvalidInput(f"unknown objective {self.objective!r}; known: {known}") from None
        invalid = not (self.epsilon > 0 and self.step_size > 0 and self.steps >= 1)
        if self.objective != Objective.natural and invalid:
            raise InvalidInput(
                "adversarial objectives need epsilon > 0, step_size > 0 and steps >= 1; got "
                f"epsilon={self.epsilon}, step_size={self.step_size}, steps={self.steps}"
            )
        if self.beta < 0:
            raise InvalidInput(f"beta must be >= 0, got {self.beta}")

    @classmethod
    def from_spec(cls, spec: SweepSpec) -> AdversarialParams:
        """Parameters of ``spec.adversarial`` with ε and step size resolved by the spec."""
        a = spec.adversarial
        return cls(objective=a.objective, epsilon=spec.epsilon, step_size=spec.step_size,
                   steps=a.steps, beta=a.beta)


class LossOutput(NamedTuple):
    """``(loss, logits_clean)``; unpacks like a tuple."""

    loss: Tensor
    logits_clean: Tensor | None


# ---- mode and precision helpers (shared with tscnc.evaluation) ----------------------------

def autocast_for(x: Tensor, amp: torch.dtype | None) -> contextlib.AbstractContextManager[object]:
    """``torch.autocast`` on CUDA inputs when ``amp`` is given; a no-op otherwise."""
    if amp is None or x.device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=amp)


# ---- inner maximisations -----------------------------------------------------------------

def trades_perturb(model: nn.Module, x: Tensor, epsilon: float, step_size: float, steps: int,
                   *, amp: torch.dtype | None = None) -> Tensor:
    """TRADES' inner maximisation: x' ≈ argmax_{x' ∈ B_ε(x)} KL(p(x) ‖ p(x')).

    Start at clamp(x + 0.001·N(0, I), 0, 1), then ``steps`` times
    x' ← clamp(Π_{B_ε(x)}(x' + step_size · sign ∇_{x'} KL), 0, 1). Runs in eval mode, restores
    the model's mode, returns a detached tensor of ``x``'s shape, dtype and device.

    Example::

        >>> x_adv = trades_perturb(model, x, epsilon=0.1, step_size=0.05, steps=3)
        >>> bool(((x_adv - x).abs() <= 0.1 + 1e-6).all())
        True
    """
    x = x.detach()
    with eval_mode(model), torch.enable_grad():
        with torch.no_grad(), autocast_for(x, amp):
            p_clean = F.softmax(model(x).float(), dim=1)
        x_adv = (x + TRADES_INIT_STD * torch.randn_like(x)).clamp(0.0, 1.0)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            with autocast_for(x, amp):
                logits_adv = model(x_adv)
            kl = F.kl_div(F.log_softmax(logits_adv.float(), dim=1), p_clean, reduction="sum")
            (grad,) = torch.autograd.grad(kl, x_adv)
            x_adv = _project(x_adv.detach() + step_size * grad.sign(), x, epsilon)
    return x_adv.detach()


def pgd_perturb(model: nn.Module, x: Tensor, y: Tensor, epsilon: float, step_size: float,
                steps: int, *, amp: torch.dtype | None = None) -> Tensor:
    """Madry's PGD on CE from a uniform random start (``torchattacks.PGD``), in eval mode.

    x' ← clamp(Π_{B_ε(x)}(x' + step_size · sign ∇_{x'} CE(f(x'), y)), 0, 1), ``steps`` times,
    from x' = clamp(x + U(−ε, ε), 0, 1). Restores every submodule's mode; returns a detached
    tensor of ``x``'s shape on ``x``'s device.
    """
    attack = torchattacks.PGD(model, eps=epsilon, alpha=step_size, steps=steps, random_start=True)
    # torchattacks moves inputs to the device of the model's first parameter; keep x's.
    attack.set_device(x.device)
    with preserved_mode(model), torch.enable_grad(), autocast_for(x, amp):
        x_adv = attack(x.detach(), y.detach())
    return x_adv.detach().to(dtype=x.dtype)


def _project(x_adv: Tensor, x: Tensor, epsilon: float) -> Tensor:
    """Π onto B_ε(x) ∩ [0, 1]^d (elementwise clamp)."""
    return torch.min(torch.max(x_adv, x - epsilon), x + epsilon).clamp(0.0, 1.0)


# ---- objectives --------------------------------------------------------------------------

def natural_loss(model: nn.Module, x: Tensor, y: Tensor, *,
                 amp: torch.dtype | None = None) -> LossOutput:
    """CE(f(x), y), mean over the batch. Returns ``(loss, logits_clean)``."""
    with autocast_for(x, amp):
        logits = model(x)
    return LossOutput(F.cross_entropy(logits.float(), y), logits)


def pgd_at_loss(model: nn.Module, x: Tensor, y: Tensor, *, epsilon: float, step_size: float,
                steps: int, amp: torch.dtype | None = None) -> LossOutput:
    """Madry PGD adversarial training: CE(f(x'), y), x' from :func:`pgd_perturb`.

    The outer forward runs in the caller's mode (train mode while training). Returns
    ``(loss, None)``: the clean batch is never forwarded.
    """
    x_adv = pgd_perturb(model, x, y, epsilon, step_size, steps, amp=amp)
    with autocast_for(x, amp):
        logits_adv = model(x_adv)
    return LossOutput(F.cross_entropy(logits_adv.float(), y), None)


def trades_loss(model: nn.Module, x: Tensor, y: Tensor, *, epsilon: float, step_size: float,
                steps: int, beta: float = 6.0, amp: torch.dtype | None = None) -> LossOutput:
    """TRADES: CE(f(x), y) + β · (1/B) Σ_i KL(p(x_i) ‖ p(x'_i)), x' from :func:`trades_perturb`.

    The inner maximisation runs in eval mode; the outer forwards in the caller's mode.
    Returns ``(loss, logits_clean)``.
    """
    x_adv = trades_perturb(model, x, epsilon, step_size, steps, amp=amp)
    with autocast_for(x, amp):
        # Two forwards, as in the reference code: in train mode batch-norm normalises the clean
        # and the adversarial batch each with its own statistics (concatenating would mix them).
        logits_clean = model(x)
        logits_adv = model(x_adv)
    logits_clean32, logits_adv32 = logits_clean.float(), logits_adv.float()
    natural = F.cross_entropy(logits_clean32, y)
    # Target as log p(x): a finite gradient where p(x) underflows to 0 (module docstring).
    robust = F.kl_div(F.log_softmax(logits_adv32, dim=1), F.log_softmax(logits_clean32, dim=1),
                      reduction="batchmean", log_target=True)
    return LossOutput(natural + beta * robust, logits_clean)


def adversarial_loss(model: nn.Module, x: Tensor, y: Tensor,
                     params: AdversarialParams | None = None, *,
                     objective: Objective | str | None = None, epsilon: float | None = None,
                     step_size: float | None = None, steps: int | None = None,
                     beta: float | None = None, amp: torch.dtype | None = None) -> LossOutput:
    """The training loss of ``objective``: :func:`trades_loss`, :func:`pgd_at_loss` or
    :func:`natural_loss`; shapes and return value as in the module docstring.

    Give the parameters as an :class:`AdversarialParams` or as keywords (keywords override
    ``params``); they are validated by :class:`AdversarialParams` either way.

    Example::

        >>> loss, logits_clean = adversarial_loss(model, x, y, objective="pgd", epsilon=0.1,
        ...                                       step_size=0.05, steps=3)
        >>> logits_clean is None
        True
    """
    overrides: dict[str, Any] = {k: v for k, v in (("objective", objective), ("epsilon", epsilon),
                                   ("step_size", step_size), ("steps", steps), ("beta", beta))
                 if v is not None}
    if params is None:
        # No silent defaults for the threat model: an adversarial objective names its radius.
        missing = [k for k in ("objective", "epsilon", "step_size", "steps") if k not in overrides]
        if "objective" in missing or (overrides["objective"] != Objective.natural and missing):
            raise InvalidInput(f"adversarial_loss needs params or keywords: missing {missing}")
        params = AdversarialParams()
    p = dataclasses.replace(params, **overrides) if overrides else params
    if p.objective == Objective.trades:
        return trades_loss(model, x, y, epsilon=p.epsilon, step_size=p.step_size, steps=p.steps,
                           beta=p.beta, amp=amp)
    if p.objective == Objective.pgd:
        return pgd_at_loss(model, x, y, epsilon=p.epsilon, step_size=p.step_size, steps=p.steps,
                           amp=amp)
    return natural_loss(model, x, y, amp=amp)
