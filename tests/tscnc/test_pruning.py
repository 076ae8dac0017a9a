"""Pruning: lwm and hydra reach the requested per-layer sparsity, masks survive training exactly,
and hydra's scores learn through the straight-through top-k while the weights stay frozen."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tscnc.errors import InvalidInput
from tscnc.layers import PConv2d, PLinear, apply_masks_, keep_count, prunable_layers
from tscnc.models import build_model
from tscnc.pruning import (
    enforce_masks,
    finalize_scores_,
    init_scores_,
    lwm_prune_,
    score_parameters,
    unfreeze_,
)
from tscnc.spec import DatasetName, ModelName, ModelSpec

SPARSITIES = [0.1, 0.5, 0.9, 0.95, 0.99]



@torch.no_grad()
def _masked_fractions(model: nn.Module) -> dict[str, float]:
    """Fraction of masked-out weights per prunable layer, of the mask in force (so of the score
    top-k while scoring): computed from the layers directly, independently of the code tested."""
    return {name: 1.0 - float(layer.current_mask().sum()) / layer.weight.numel()
            for name, layer in prunable_layers(model)}

def _mlp(width: int = 32) -> nn.Module:
    torch.manual_seed(0)
    return build_model(ModelSpec(name=ModelName.mlp, width=width), DatasetName.digits)


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return build_model(ModelSpec(name=ModelName.cnn, width=4), DatasetName.digits)


def _batch(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def _zero_counts(model: nn.Module) -> dict[str, int]:
    return {n: int((m.weight == 0).sum()) for n, m in prunable_layers(model)}


def _assert_sparsity(model: nn.Module, sparsity: float, skip: tuple[str, ...] = ()) -> None:
    for name, layer in prunable_layers(model):
        n = layer.weight.numel()
        zeros = int((layer.weight == 0).sum())
        masked = int((layer.mask == 0).sum())
        if name in skip:
            assert masked == 0 and zeros == 0, name
            continue
        # Exactly keep_count weights survive: within one weight of s·n.
        assert n - masked == keep_count(n, sparsity), name
        assert abs(zeros - sparsity * n) <= 1, (name, zeros, sparsity * n)
        assert bool((layer.weight[layer.mask == 0] == 0).all()), name


# ---- lwm -------------------------------------------------------------------------------------

@pytest.mark.parametrize("sparsity", SPARSITIES)
@pytest.mark.parametrize("make", [_mlp, _cnn], ids=["mlp", "cnn"])
def test_lwm_hits_sparsity_per_layer(make: object, sparsity: float) -> None:
    model = make()  # type: ignore[operator]
    before = {n: m.weight.detach().clone() for n, m in prunable_layers(model)}
    lwm_prune_(model, sparsity)
    _assert_sparsity(model, sparsity)
    for name, layer in prunable_layers(model):
        kept = before[name][layer.mask == 1].abs()
        dropped = before[name][layer.mask == 0].abs()
        # The largest magnitudes are the ones kept, unchanged.
        if dropped.numel():
            assert kept.min() >= dropped.max()
        assert torch.equal(layer.weight[layer.mask == 1], before[name][layer.mask == 1])


def test_lwm_skip_layers_stay_dense() -> None:
    model = _mlp()
    lwm_prune_(model, 0.9, skip=("layers.4",))
    _assert_sparsity(model, 0.9, skip=("layers.4",))
    assert _masked_fractions(model) == pytest.approx({"layers.0": 0.9, "layers.2": 0.9,
                                                     "layers.4": 0.0}, abs=1e-3)


def test_pruning_rejects_bad_input() -> None:
    model = _mlp()
    with pytest.raises(InvalidInput, match="layers.9"):
        lwm_prune_(model, 0.5, skip=("layers.9",))
    for bad in (-0.1, 1.0, math.nan):
        with pytest.raises(InvalidInput):
            lwm_prune_(model, bad)
        with pytest.raises(InvalidInput):
            init_scores_(model, bad)
    with pytest.raises(InvalidInput):
        init_scores_(model, 0.5, scale=0.0)
    with pytest.raises(InvalidInput, match="no prunable layers"):
        lwm_prune_(nn.Sequential(nn.Linear(2, 2)), 0.5)


# ---- masks survive optimizer steps -------------------------------------------------------------

def _train(model: nn.Module, opt: torch.optim.Optimizer, steps: int,
           raw_weight_term: bool = False) -> None:
    x, y = _batch()
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        if raw_weight_term:
            # Acts on the stored weights, bypassing the mask: it pushes masked entries away from 0.
            loss = loss + sum(((m.weight - 0.1) ** 2).sum() for _, m in prunable_layers(model))
        loss.backward()
        opt.step()


@pytest.mark.parametrize("optim", ["sgd", "adam", "adamw"])
def test_masked_weights_stay_exactly_zero_through_training(optim: str) -> None:
    model = _cnn()
    lwm_prune_(model, 0.9)
    before = {n: m.weight.detach().clone() for n, m in prunable_layers(model)}
    params = list(model.parameters())
    opt: torch.optim.Optimizer
    if optim == "sgd":
        opt = torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)
    elif optim == "adam":
        opt = torch.optim.Adam(params, lr=1e-2, weight_decay=5e-4)
    else:
        opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=5e-2)
    _train(model, opt, 100)
    _assert_sparsity(model, 0.9)
    for name, layer in prunable_layers(model):
        assert bool((layer.weight[layer.mask == 0] == 0).all()), name
        # ... while the kept weights did train.
        assert not torch.equal(layer.weight[layer.mask == 1], before[name][layer.mask == 1]), name


def test_enforce_masks_undoes_direct_weight_updates() -> None:
    # A loss on the raw weights and momentum left over from dense training both move masked
    # weights; enforce_masks re-zeroes them after every step.
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    _train(model, opt, 3)                                   # dense: momentum buffers fill up
    lwm_prune_(model, 0.9)
    handle = enforce_masks(model, opt)
    _train(model, opt, 100, raw_weight_term=True)
    _assert_sparsity(model, 0.9)
    # Control: without the hook the same training does move masked weights (the test can fail).
    handle.remove()
    _train(model, opt, 1, raw_weight_term=True)
    assert any(int((m.weight[m.mask == 0] != 0).sum()) > 0 for _, m in prunable_layers(model))
    apply_masks_(model)
    _assert_sparsity(model, 0.9)


# ---- hydra ------------------------------------------------------------------------------------

def test_hydra_init_scores_scaled_magnitude_and_frozen_weights() -> None:
    model = _cnn()
    init_scores_(model, 0.9, scale=2.0, skip=("classifier.2",))
    scored = [(n, m) for n, m in prunable_layers(model) if m.scores is not None]
    assert [n for n, _ in scored] == [n for n, _ in prunable_layers(model) if n != "classifier.2"]
    for name, layer in scored:
        w = layer.weight.detach()
        fan_in = w[0].numel()
        expected = 2.0 * math.sqrt(6.0 / fan_in) * w.abs() / w.abs().max()
        assert torch.allclose(layer.scores.detach(), expected), name
        assert layer.keep == keep_count(w.numel(), 0.9)
        assert not layer.weight.requires_grad
        assert layer.bias is None or not layer.bias.requires_grad
    assert len(score_parameters(model)) == len(scored)
    # The mask in force is the top-k of the scores: the target sparsity, per layer.
    sp = _masked_fractions(model)
    for name, layer in prunable_layers(model):
        target = 0.0 if name == "classifier.2" else 0.9
        assert abs(sp[name] * layer.weight.numel() - target * layer.weight.numel()) <= 1


def test_hydra_scores_get_gradients_while_weights_stay_frozen() -> None:
    model = _mlp()
    init_scores_(model, 0.5)
    weights = {n: m.weight.detach().clone() for n, m in prunable_layers(model)}
    x, y = _batch()
    nn.functional.cross_entropy(model(x), y).backward()
    for name, layer in prunable_layers(model):
        assert layer.weight.grad is None, name
        assert layer.scores is not None and layer.scores.grad is not None
        # Straight-through: pruned entries get a gradient too (grad_S = grad_Weff ⊙ W).
        pruned = layer.current_mask() == 0
        assert layer.scores.grad[pruned].abs().sum() > 0, name
    opt = torch.optim.SGD(score_parameters(model), lr=0.1, momentum=0.9)
    masks0 = {n: m.current_mask().clone() for n, m in prunable_layers(model)}
    for _ in range(30):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    for name, layer in prunable_layers(model):
        assert torch.equal(layer.weight, weights[name]), "weights moved while scoring"
    assert any(not torch.equal(m.current_mask(), masks0[n]) for n, m in prunable_layers(model)), \
        "training the scores never changed a mask"


def test_hydra_straight_through_passes_the_sign_of_the_score() -> None:
    # Two weights, one kept (k = 1). The loss Σ output = w0·m0·x0 + w1·m1·x1 with x1 = 0 wants
    # weight 0 removed (∂L/∂m0 = w0·x0 = 1 > 0) and is indifferent to weight 1. Weight 0's
    # score starts just above zero and kept; weight 1's score is smaller, pruned.
    layer = PLinear(2, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 1.0]]))
    layer.keep = 1
    layer.scores = nn.Parameter(torch.tensor([[2e-3, 1e-3]]))
    x = torch.tensor([[1.0, 0.0]])
    opt = torch.optim.SGD([layer.scores], lr=1e-4)
    s0, seen = 2e-3, []
    for _ in range(60):
        opt.zero_grad()
        layer(x).sum().backward()
        # HYDRA: mask = top-k(|s|), so ∂L/∂s = ∂L/∂m · sign(s).
        expected = torch.tensor([[1.0, 0.0]]) * layer.scores.detach().sign()
        assert torch.equal(layer.scores.grad, expected)
        opt.step()
        seen.append(abs(float(layer.scores.detach()[0, 0])))
    # |s0| only shrinks toward 0 (it may hop over 0 by at most one step, lr·1): it never grows
    # past where it started, and the harmful weight ends pruned, the other one kept.
    assert max(seen) <= s0
    assert seen[-1] <= 1e-4 + 1e-9
    assert torch.equal(layer.current_mask(), torch.tensor([[0.0, 1.0]]))


def test_hydra_mask_follows_scores() -> None:
    model = _mlp()
    init_scores_(model, 0.9)
    _, layer = prunable_layers(model)[0]
    w_eff0 = layer.effective_weight().detach().clone()
    pruned_idx = (layer.current_mask() == 0).nonzero()[0]
    kept_before = int(layer.current_mask().sum())
    with torch.no_grad():
        layer.scores[tuple(pruned_idx)] = 1e3           # promote one pruned weight
    mask = layer.current_mask()
    assert mask[tuple(pruned_idx)] == 1
    assert int(mask.sum()) == kept_before               # still exactly k: another one dropped
    # The forward uses the new mask: the promoted weight is live, the dropped one is not.
    w_eff = layer.effective_weight().detach()
    assert w_eff[tuple(pruned_idx)] == layer.weight[tuple(pruned_idx)] != 0
    assert int((w_eff != w_eff0).sum()) == 2


@pytest.mark.parametrize("sparsity", SPARSITIES)
def test_hydra_finalize_hits_sparsity(sparsity: float) -> None:
    model = _cnn()
    init_scores_(model, sparsity, skip=("features.0",))
    # Perturb the scores so the final mask is not simply the magnitude mask.
    with torch.no_grad():
        for p in score_parameters(model):
            p.add_(0.05 * torch.randn_like(p))
    expected = {n: m.current_mask().clone() for n, m in prunable_layers(model)}
    finalize_scores_(model)
    _assert_sparsity(model, sparsity, skip=("features.0",))
    for name, layer in prunable_layers(model):
        assert layer.scores is None
        assert torch.equal(layer.mask, expected[name]), name
        assert layer.weight.requires_grad
    assert not any("scores" in k for k in model.state_dict())
    assert all(p.requires_grad for p in model.parameters())


def test_hydra_finetune_keeps_mask_through_sgd() -> None:
    model = _mlp()
    init_scores_(model, 0.95)
    finalize_scores_(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    _train(model, opt, 100)
    _assert_sparsity(model, 0.95)


def test_unfreeze_and_conv_fan_in() -> None:
    model = _cnn()
    init_scores_(model, 0.5)
    conv = next(m for _, m in prunable_layers(model) if isinstance(m, PConv2d))
    assert conv.scores is not None
    # fan-in of a conv = in_channels · kh · kw
    w = conv.weight.detach()
    assert conv.scores.max().item() == pytest.approx(math.sqrt(6.0 / (conv.in_channels * 9)))
    assert w.shape[1] * 9 == w[0].numel()
    unfreeze_(model)
    assert all(p.requires_grad for p in model.parameters())
