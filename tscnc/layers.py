"""Prunable layers: the one interface through which constraints, masks and metrics see a model.

Every model in :mod:`tscnc.models` builds its linear and convolution layers from
:class:`PLinear` and :class:`PConv2d`. Each carries

- ``weight`` (the trainable parameter) and a 0/1 ``mask`` buffer of the same shape;
- optionally ``scores`` (HYDRA importance scores): while ``scores`` is set, the forward uses the
  per-layer top-k of ``|scores|`` as the mask, with a straight-through gradient through the
  absolute value: ∂L/∂s = ∂L/∂m · sign(s) (HYDRA's reference ``GetSubnet(scores.abs(), k)``);
- optionally ``gate``: a module returning one multiplier per output channel (the hard-concrete
  L0 gates of the ``gates`` TSC variant, :mod:`tscnc.constraints`).

The forward uses ``effective_weight() = weight ⊙ mask (⊙ gate)``. Because masked entries receive
a zero gradient and :func:`apply_masks_` re-zeroes them after every optimizer step, masked weights
stay exactly zero through SGD with momentum and weight decay.

Matrices: a convolution kernel (out, in, kh, kw) is seen as the m×n matrix (out, in·kh·kw),
see :func:`as_matrix`.

Example::

    >>> layer = PLinear(4, 3)
    >>> layer.mask[0, :] = 0
    >>> bool((layer.effective_weight()[0] == 0).all())
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def as_matrix(weight: Tensor) -> Tensor:
    """Reshape a weight to its m×n matrix: (out, in) stays, (out, in, kh, kw) → (out, in·kh·kw)."""
    return weight.reshape(weight.shape[0], -1)


def keep_count(numel: int, sparsity: float) -> int:
    """Number of weights kept at ``sparsity``: round((1 − s)·numel), at least 1."""
    return max(1, int(round((1.0 - sparsity) * numel)))


def topk_mask(scores: Tensor, k: int) -> Tensor:
    """0/1 mask (same shape as ``scores``) keeping the ``k`` largest entries of ``|scores|``."""
    flat = scores.detach().abs().flatten()
    mask = torch.zeros_like(flat)
    if k >= flat.numel():
        mask.fill_(1.0)
    elif k > 0:
        mask[torch.topk(flat, k, sorted=False).indices] = 1.0
    return mask.view_as(scores)


class _TopKStraightThrough(torch.autograd.Function):
    """Forward: 0/1 top-k mask of a non-negative ``magnitude`` (HYDRA passes |scores|).
    Backward: identity to ``magnitude`` (straight-through, as in HYDRA).

    Callers pass ``scores.abs()``, so autograd's ``abs`` carries the gradient on to the scores as
    ∂L/∂s = ∂L/∂m · sign(s): a step that should shrink a kept score's importance shrinks |s| on
    either side of 0 (with the identity applied to s itself, a score that crossed 0 had every
    later step grow |s|, keeping a harmful weight for good).
    """

    @staticmethod
    def forward(ctx: Any, magnitude: Tensor, k: int) -> Tensor:
        return topk_mask(magnitude, k)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


class PrunableMixin:
    """Shared state and behaviour of :class:`PLinear` and :class:`PConv2d`."""

    weight: Tensor
    mask: Tensor
    scores: nn.Parameter | None
    gate: nn.Module | None
    keep: int

    def _init_prunable(self) -> None:
        assert isinstance(self, nn.Module)
        self.register_buffer("mask", torch.ones_like(self.weight))
        self.register_parameter("scores", None)
        self.gate = None
        self.keep = self.weight.numel()

    def effective_weight(self) -> Tensor:
        """``weight ⊙ mask`` (mask from scores while scoring), times the gate if any."""
        if self.scores is not None:
            w = self.weight * _TopKStraightThrough.apply(self.scores.abs(), self.keep)
        else:
            w = self.weight * self.mask
        if self.gate is not None:
            z = self.gate()
            w = w * z.view(-1, *([1] * (w.dim() - 1)))
        return w

    def current_mask(self) -> Tensor:
        """The mask in force now (top-k of the scores while scoring)."""
        if self.scores is not None:
            return topk_mask(self.scores, self.keep)
        return self.mask

    def matrix(self) -> Tensor:
        """Effective weight as an m×n matrix (for constraints and metrics)."""
        return as_matrix(self.effective_weight())

    @property
    def is_classifier(self) -> bool:
        return isinstance(self, nn.Linear)


class PLinear(PrunableMixin, nn.Linear):
    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self._init_prunable()

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.effective_weight(), self.bias)


class PConv2d(PrunableMixin, nn.Conv2d):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_prunable()

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.effective_weight(), self.bias)


Prunable = PLinear | PConv2d


def prunable_layers(model: nn.Module) -> list[tuple[str, PLinear | PConv2d]]:
    """All prunable layers of ``model`` in definition order, with their qualified names."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, PrunableMixin)]  # type: ignore[misc]


def iter_prunable(model: nn.Module) -> Iterator[PLinear | PConv2d]:
    for _, m in prunable_layers(model):
        yield m


@torch.no_grad()
def apply_masks_(model: nn.Module) -> None:
    """Zero the masked weights in storage (call after every optimizer step)."""
    for layer in iter_prunable(model):
        if layer.scores is None:
            layer.weight.mul_(layer.mask)


# ---- train/eval mode: every attack, constraint and metric restores it exactly -----------

@contextlib.contextmanager
def preserved_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Restore every submodule's ``training`` flag on exit.

    ``model.train()`` alone is not a restore: a caller may keep some submodules (e.g. frozen
    batch-norm) in eval mode inside a training model, and torchattacks' own restore calls
    ``model.train()`` on the whole tree. This puts back each flag exactly.
    """
    flags = [(m, m.training) for m in model.modules()]
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run the block with ``model.eval()``, then restore every submodule's flag."""
    with preserved_mode(model):
        model.eval()
        yield model
