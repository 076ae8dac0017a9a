"""Pruning to a target sparsity s, per layer (DESIGN §3.4, stage 2).

Two methods, both acting on every prunable layer of a model (:func:`tscnc.layers.prunable_layers`)
except the names in ``skip``, which stay dense (mask all ones):

- ``lwm`` — :func:`lwm_prune_`: one shot, keep the ``k = keep_count(n, s)`` largest-magnitude
  weights of each layer (n = the layer's weight count), zero the rest.
- ``hydra`` (Sehwag et al. 2020) — :func:`init_scores_` gives each layer importance scores
  ``S = scale · sqrt(6 / fan_in) · |W| / max|W|`` (HYDRA's scaled init: |W| rescaled to the
  kaiming-uniform bound of the layer) and freezes the weights; while scores are set the forward
  uses ``W ⊙ topk(|S|, k)`` with a straight-through gradient through |S|, ∂L/∂S = ∂L/∂mask ·
  sign(S) (:mod:`tscnc.layers`), and
  the scores and the BatchNorm affine parameters are trained (:func:`prune_stage_parameters`;
  running statistics update too). :func:`finalize_scores_` then fixes
  ``mask = topk(|S|, k)``, zeroes the weights outside it, drops the scores and unfreezes.

Exactly ``k`` weights are kept per pruned layer, so each layer's sparsity is within half a weight
(``0.5 / n``) of s.

Masks survive training exactly: the forward multiplies by the mask, so masked weights get a zero
gradient, and with a zero weight, weight decay and momentum add nothing either. Anything that
touches ``weight`` directly (a penalty on the raw weight, optimizer state left from dense
training) is undone by :func:`tscnc.layers.apply_masks_` after each step; :func:`enforce_masks`
attaches that to an optimizer.

Example::

    >>> from tscnc.models import build_model
    >>> from tscnc.spec import DatasetSpec, ModelSpec
    >>> model = build_model(ModelSpec(name="mlp", width=32), DatasetSpec(name="digits"))
    >>> lwm_prune_(model, 0.9, skip=("layers.4",))
    >>> [round(1 - float(m.mask.mean()), 3) for _, m in prunable_layers(model)]
    [0.9, 0.9, 0.0]
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from tscnc.errors import InvalidInput
from tscnc.layers import (
    PConv2d,
    PLinear,
    apply_masks_,
    as_matrix,
    iter_prunable,
    keep_count,
    prunable_layers,
    topk_mask,
)

__all__ = [
    "enforce_masks",
    "finalize_scores_",
    "freeze_weights_",
    "init_scores_",
    "batchnorm_parameters",
    "lwm_prune_",
    "prunable_layers",
    "prune_stage_parameters",
    "score_parameters",
    "unfreeze_",
]


def _check_sparsity(sparsity: float) -> None:
    if not 0.0 <= sparsity < 1.0 or math.isnan(sparsity):
        raise InvalidInput(f"sparsity must be in [0, 1), got {sparsity}")


def _targets(model: nn.Module, skip: Iterable[str]) -> list[tuple[str, PLinear | PConv2d, bool]]:
    """(name, layer, pruned?) for every prunable layer; unknown skip names are an error."""
    layers = prunable_layers(model)
    skip = set(skip)
    unknown = skip - {n for n, _ in layers}
    if unknown:
        raise InvalidInput(f"pruning.skip_layers names no prunable layer: {sorted(unknown)}; "
                           f"prunable layers are {[n for n, _ in layers]}")
    if not layers:
        raise InvalidInput("the model has no prunable layers (PLinear/PConv2d)")
    return [(n, m, n not in skip) for n, m in layers]


@torch.no_grad()
def lwm_prune_(model: nn.Module, sparsity: float, skip: Iterable[str] = ()) -> None:
    """Layer-wise magnitude pruning, in place.

    Each non-skipped layer keeps its ``keep_count(n, sparsity)`` largest ``|w|`` (among the
    weights its current mask allows; ties broken by ``torch.topk``); its mask is set to that
    0/1 pattern and the other weights are set to exactly 0. Skipped layers get an all-ones mask.

    Args:
        model: a model built from prunable layers.
        sparsity: target fraction of zero weights per layer, in [0, 1).
        skip: qualified names (``model.named_modules()``) of layers to leave dense.

    Raises:
        InvalidInput: sparsity out of range, or a skip name that is no prunable layer.
    """
    _check_sparsity(sparsity)
    for _, layer, pruned in _targets(model, skip):
        if layer.scores is not None:
            raise InvalidInput("lwm_prune_ on a model that is being scored; call "
                               "finalize_scores_ first")
        n = layer.weight.numel()
        if pruned:
            layer.keep = keep_count(n, sparsity)
            layer.mask.copy_(topk_mask(layer.weight * layer.mask, layer.keep))
        else:
            layer.keep = n
            layer.mask.fill_(1.0)
        layer.weight.mul_(layer.mask)


def _fan_in(layer: PLinear | PConv2d) -> int:
    return int(as_matrix(layer.weight).shape[1])


@torch.no_grad()
def init_scores_(model: nn.Module, sparsity: float, scale: float = 1.0,
                 skip: Iterable[str] = ()) -> None:
    """Start HYDRA's score search: scores on every non-skipped layer, weights frozen.

    For each pruned layer with weight W (fan-in f = in_features or in_channels·kh·kw)::

        scores = scale · sqrt(6 / f) · |W ⊙ mask| / max|W ⊙ mask|,   layer.keep = keep_count(n, s)

    From then on its forward uses the top-``keep`` of ``|scores|`` as mask (straight-through to
    the scores). Skipped layers keep an all-ones mask and no scores. The weights and biases of
    all prunable layers are frozen (``requires_grad=False``; BatchNorm stays trainable, as in
    HYDRA); train :func:`prune_stage_parameters`, then call :func:`finalize_scores_`.

    Args:
        model: a model built from prunable layers.
        sparsity: target per-layer sparsity in [0, 1).
        scale: multiplies the initial scores (``PruningSpec.score_init_scale``).
        skip: qualified names of layers to leave dense.
    """
    _check_sparsity(sparsity)
    if not scale > 0:
        raise InvalidInput(f"score scale must be > 0, got {scale}")
    for _, layer, pruned in _targets(model, skip):
        n = layer.weight.numel()
        if not pruned:
            layer.mask.fill_(1.0)
            layer.keep = n
            layer.register_parameter("scores", None)
            continue
        magnitude = (layer.weight * layer.mask).abs()
        # Guard an all-zero layer: its scores are then all 0 and top-k picks arbitrary ones.
        peak = magnitude.max().clamp_min(torch.finfo(magnitude.dtype).tiny)
        scores = scale * math.sqrt(6.0 / _fan_in(layer)) * magnitude / peak
        layer.keep = keep_count(n, sparsity)
        layer.scores = nn.Parameter(scores.contiguous())
    freeze_weights_(model)


@torch.no_grad()
def finalize_scores_(model: nn.Module) -> None:
    """End the score search: ``mask = topk(|scores|, keep)``, weights outside it set to 0,
    scores removed (``layer.scores is None``) and every parameter unfrozen.

    Layers without scores are left as they are. The model then trains like an ``lwm``-pruned
    one: its masks are fixed buffers.
    """
    for layer in iter_prunable(model):
        if layer.scores is None:
            continue
        layer.mask.copy_(topk_mask(layer.scores, layer.keep))
        layer.weight.mul_(layer.mask)
        layer.register_parameter("scores", None)
    unfreeze_(model)


def score_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The HYDRA score parameters of ``model`` (what the prune stage optimises)."""
    return [layer.scores for layer in iter_prunable(model) if layer.scores is not None]


def batchnorm_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The affine parameters (γ, β) of every BatchNorm layer of ``model``."""
    return [p for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for p in (m.weight, m.bias) if p is not None]


def prune_stage_parameters(model: nn.Module) -> list[nn.Parameter]:
    """What HYDRA's score search trains: the scores and the BatchNorm affine parameters (the
    running statistics follow the data in training mode); the weights stay frozen."""
    return score_parameters(model) + batchnorm_parameters(model)


def freeze_weights_(model: nn.Module, freeze_bn: bool = False) -> None:
    """Set ``requires_grad=False`` on the weights and biases of all prunable layers (and of the
    BatchNorm layers when ``freeze_bn``). Scores are left trainable."""
    for module in model.modules():
        if isinstance(module, PLinear | PConv2d) or \
                (freeze_bn and isinstance(module, nn.modules.batchnorm._BatchNorm)):
            for p in (module.weight, module.bias):
                if p is not None:
                    p.requires_grad_(False)


def unfreeze_(model: nn.Module) -> None:
    """Set ``requires_grad=True`` on every parameter of ``model``."""
    for p in model.parameters():
        p.requires_grad_(True)


def enforce_masks(model: nn.Module, optimizer: torch.optim.Optimizer) -> RemovableHandle:
    """Re-apply ``model``'s masks after every ``optimizer.step()``; returns the hook's handle.

    Needed only when something moves masked weights directly (a penalty on the raw weight,
    momentum left from dense training); harmless otherwise.

    Example::

        >>> from tscnc.models import build_model
        >>> from tscnc.spec import DatasetSpec, ModelSpec
        >>> model = build_model(ModelSpec(name="mlp", width=8), DatasetSpec(name="digits"))
        >>> lwm_prune_(model, 0.5)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> handle = enforce_masks(model, opt)     # ... train ...
        >>> handle.remove()
    """

    def hook(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        apply_masks_(model)

    return optimizer.register_step_post_hook(hook)
