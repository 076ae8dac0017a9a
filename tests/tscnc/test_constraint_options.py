"""The constraint options of issue 11: the TSC's reduction (item 3) and the CNC's cost options
(item 5: every k-th step, a random subset of layers), against independent computations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tscnc import adversarial, data
from tscnc.constraints import attach_gates, cnc_penalty, gate_penalty, regularization, tsc_penalty
from tscnc.layers import PConv2d, PLinear, prunable_layers
from tscnc.models import build_model
from tscnc.pipeline.device import DeviceOptions
from tscnc.pipeline.training import build_optimizer, train_step
from tscnc.spec import ConstraintSpec, Method, SweepSpec, affects_pretrain


def _spec(**constraints: object) -> SweepSpec:
    return SweepSpec.model_validate(dict(
        name="options", dataset={"name": "digits"}, model={"name": "cnn", "width": 4},
        training={"batch_size": 32, "lr": 0.05, "device": "cpu"}, adversarial={"steps": 2},
        constraints=constraints, methods=["tscnc"], sparsities=[0.5], seeds=[0]))


def _trained_digits_mlp() -> nn.Module:
    """A digits mlp after 40 SGD steps of cross-entropy, half of each layer's weights masked:
    weights of a realistic spread, and masked entries that must count as ρ_a(0) = 0."""
    spec = SweepSpec.model_validate(dict(
        name="t", dataset={"name": "digits"}, model={"name": "mlp", "width": 32},
        methods=["tscnc"], sparsities=[0.5], seeds=[0]))
    train, _ = data.load_data(spec.dataset)
    x, y = data.to_tensors(train, limit=320)
    torch.manual_seed(0)
    model = build_model(spec.model, spec.dataset)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for i in range(40):
        j = (i * 32) % 320
        opt.zero_grad()
        F.cross_entropy(model(x[j:j + 32]), y[j:j + 32]).backward()
        opt.step()
    with torch.no_grad():
        for _, layer in prunable_layers(model):
            layer.mask.copy_((torch.rand_like(layer.mask) > 0.5).float())
    return model


# ---- TSC reduction (item 3) -------------------------------------------------------------

def test_tsc_reductions_against_numpy_on_a_trained_model() -> None:
    model = _trained_digits_mlp()
    a = 10.0
    mats = [(layer.weight * layer.mask).detach().double().numpy()
            for _, layer in prunable_layers(model)]
    rho = [(a + 1) * np.abs(w) / (a + np.abs(w)) for w in mats]
    want_sum = sum(float(r.sum()) for r in rho)
    want_mean = float(np.mean([r.mean() for r in rho]))       # mean over layers of layer means
    assert len(mats) == 3 and 0 < want_mean < a + 1
    for reduction, want in (("sum", want_sum), ("mean", want_mean)):
        c = ConstraintSpec(lambda_tsc=0.5, a=a, tsc_reduction=reduction)
        total, parts = regularization(model, c, use_tsc=True, use_cnc=False)
        assert parts["tsc"] == pytest.approx(want, rel=1e-5)
        assert float(total.detach()) == pytest.approx(0.5 * want, rel=1e-5)


def test_tsc_mean_is_sum_with_each_layer_weighted_one_over_layers_times_size() -> None:
    # The conversion docs/method.md gives: λ_mean acts on layer ℓ as λ_sum = λ_mean/(L·n_ℓ).
    model = _trained_digits_mlp()
    layers = [layer for _, layer in prunable_layers(model)]
    grads = {}
    for reduction in ("sum", "mean"):
        model.zero_grad()
        c = ConstraintSpec(lambda_tsc=1.0, tsc_reduction=reduction)
        regularization(model, c, use_tsc=True, use_cnc=False)[0].backward()
        grads[reduction] = [layer.weight.grad.clone() for layer in layers]
    for layer, g_sum, g_mean in zip(layers, grads["sum"], grads["mean"], strict=True):
        scale = len(layers) * layer.weight.numel()
        torch.testing.assert_close(g_mean * scale, g_sum, rtol=1e-5, atol=1e-9)
        assert bool((g_mean[layer.mask == 0] == 0).all())


def test_tsc_mean_of_gates_is_the_mean_over_channels() -> None:
    model = nn.Sequential(PConv2d(2, 4, 3), nn.Flatten(), PLinear(16, 6), PLinear(6, 3))
    attach_gates(model)
    layers = [model[0], model[2], model[3]]
    c = ConstraintSpec(tsc_variant="gates", tsc_reduction="mean", gate_prior=0.1)
    _, parts = regularization(model, c, use_tsc=True, use_cnc=False)
    want = sum(float(gate_penalty(m, c.a, c.gate_prior, c.gate_lambda0).detach())  # type: ignore[arg-type]
               / m.weight.shape[0] for m in layers) / 3
    assert parts["tsc"] == pytest.approx(want, rel=1e-6)


def test_tsc_mean_value_does_not_grow_with_the_model() -> None:
    # Same weight distribution, 16× the weights: sum grows 16×, mean stays.
    torch.manual_seed(0)
    small = nn.Sequential(PLinear(32, 32))
    big = nn.Sequential(PLinear(128, 128))
    for m in (small, big):
        nn.init.normal_(m[0].weight, std=0.05)
    mean = ConstraintSpec(tsc_reduction="mean")
    s, b = (regularization(m, mean, True, False)[1]["tsc"] for m in (small, big))
    assert b == pytest.approx(s, rel=0.05)
    total = ConstraintSpec()
    s, b = (regularization(m, total, True, False)[1]["tsc"] for m in (small, big))
    assert b == pytest.approx(16 * s, rel=0.05)


# ---- CNC cost options (item 5) ----------------------------------------------------------

def _cnc_model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(PConv2d(2, 4, 3), nn.Flatten(), PLinear(16, 8), PLinear(8, 6),
                         PLinear(6, 3))


def _full_cnc(model: nn.Module) -> float:
    return float(np.mean([float(cnc_penalty(layer.effective_weight()).detach())
                          for _, layer in prunable_layers(model)]))


def test_cnc_every_k_steps_is_weighted_by_k() -> None:
    model = _cnc_model()
    full = _full_cnc(model)
    c = ConstraintSpec(lambda_tsc=0.0, lambda_cnc=0.5, cnc_every=3)
    for step in range(7):
        total, parts = regularization(model, c, use_tsc=False, use_cnc=True, step=step)
        if step % 3 == 0:
            assert parts["cnc"] == pytest.approx(3 * full, rel=1e-5)
            assert float(total.detach()) == pytest.approx(0.5 * 3 * full, rel=1e-5)
        else:
            assert parts == {} and float(total) == 0.0
    # The TSC is not affected by cnc_every.
    c = c.model_copy(update={"lambda_tsc": 1e-3})
    assert set(regularization(model, c, use_tsc=True, use_cnc=True, step=1)[1]) == {"tsc"}


def test_cnc_layer_subset_is_unbiased_over_every_subset(monkeypatch: pytest.MonkeyPatch) -> None:
    # Exact expectation: every ordered draw of 2 of the 4 layers, equally likely.
    model = _cnc_model()
    layers = [layer for _, layer in prunable_layers(model)]
    c = ConstraintSpec(lambda_tsc=0.0, lambda_cnc=1.0, cnc_layer_subset=2)
    model.zero_grad()
    full_total = regularization(model, c.model_copy(update={"cnc_layer_subset": None}),
                                use_tsc=False, use_cnc=True)[0]
    full_total.backward()
    full_grads = [layer.weight.grad.clone() for layer in layers]
    values, grads = [], []
    for perm in itertools.permutations(range(4)):
        monkeypatch.setattr(torch, "randperm", lambda n, p=perm: torch.tensor(p[:n]))
        model.zero_grad()
        total, parts = regularization(model, c, use_tsc=False, use_cnc=True)
        total.backward()
        values.append(float(total.detach()))
        grads.append([torch.zeros_like(layer.weight) if layer.weight.grad is None
                      else layer.weight.grad.clone() for layer in layers])
        picked = [layers[i] for i in perm[:2]]
        want = sum(float(cnc_penalty(m.effective_weight()).detach()) for m in picked) / 2
        assert parts["cnc"] == pytest.approx(want, rel=1e-5)
    assert len(set(values)) == 6                      # C(4, 2) distinct subsets
    assert float(np.mean(values)) == pytest.approx(float(full_total.detach()), rel=1e-6)
    for i in range(len(layers)):
        mean_grad = torch.stack([g[i] for g in grads]).mean(0)
        torch.testing.assert_close(mean_grad, full_grads[i], rtol=1e-5, atol=1e-7)


def test_cnc_layer_subset_with_the_real_generator_averages_to_the_full_mean() -> None:
    model = _cnc_model()
    full = _full_cnc(model)
    c = ConstraintSpec(lambda_tsc=0.0, lambda_cnc=1.0, cnc_layer_subset=1, cnc_every=2)
    torch.manual_seed(3)
    draws = np.array([regularization(model, c, False, True, step=0)[1]["cnc"]
                      for _ in range(800)])
    # Each draw is 2 × one layer's CNC (k = 2 and C/s = 4 → weight 2·4/4 per drawn layer).
    assert draws.mean() / 2 == pytest.approx(full, abs=5 * draws.std() / 2 / math.sqrt(800))
    assert len(set(np.round(draws, 6))) == 4


def test_subset_not_smaller_than_the_layers_is_the_full_mean() -> None:
    model = _cnc_model()
    for s in (4, 9):
        c = ConstraintSpec(lambda_cnc=1.0, cnc_layer_subset=s)
        assert regularization(model, c, False, True)[1]["cnc"] == pytest.approx(
            _full_cnc(model), rel=1e-6)


def _reference_regularization(model: nn.Module, c: ConstraintSpec) -> torch.Tensor:
    """The regularisation as it was before the options: Σ TSC, mean CNC, in the same order."""
    ws = [layer.effective_weight() for _, layer in prunable_layers(model)]
    tsc = torch.stack([tsc_penalty(w, c.a) for w in ws]).sum()
    cnc = torch.stack([cnc_penalty(w, c.cnc_kind) for w in ws]).sum() / len(ws)
    zero = ws[0].new_zeros(())
    return zero + c.lambda_tsc * tsc + c.lambda_cnc * cnc


def test_default_training_steps_are_bit_identical_to_the_full_penalty() -> None:
    spec = _spec()
    c = spec.constraints
    assert (c.tsc_reduction.value, c.cnc_every, c.cnc_layer_subset) == ("sum", 1, None)
    train, _ = data.load_data(spec.dataset)
    x, y = data.to_tensors(train, limit=96)
    torch.manual_seed(0)
    a = build_model(spec.model, spec.dataset)
    b = build_model(spec.model, spec.dataset)
    b.load_state_dict(a.state_dict())
    opts = DeviceOptions.of(spec, torch.device("cpu"))
    opt_a = build_optimizer(spec, a, a.parameters(), 0.05)
    opt_b = build_optimizer(spec, b, b.parameters(), 0.05)
    for i in range(3):
        xb, yb = x[32 * i:32 * i + 32], y[32 * i:32 * i + 32]
        torch.manual_seed(10 + i)
        train_step(a, xb, yb, spec, Method.tscnc, opt_a, opts.scaler(), opts, step=i)
        torch.manual_seed(10 + i)
        loss, _ = adversarial.adversarial_loss(
            b, xb, yb, objective="trades", epsilon=spec.epsilon, step_size=spec.step_size,
            steps=spec.adversarial.steps, beta=spec.adversarial.beta)
        full = loss + _reference_regularization(b, c)
        opt_b.zero_grad(set_to_none=True)
        full.backward()
        opt_b.step()
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k


def test_train_step_passes_its_step_to_cnc_every() -> None:
    spec = _spec(cnc_every=2)
    train, _ = data.load_data(spec.dataset)
    x, y = data.to_tensors(train, limit=32)
    torch.manual_seed(0)
    model = build_model(spec.model, spec.dataset)
    opts = DeviceOptions.of(spec, torch.device("cpu"))
    opt = build_optimizer(spec, model, model.parameters(), 0.05)
    got = [set(train_step(model, x, y, spec, Method.tscnc, opt, opts.scaler(), opts,
                          step=s)[1]) for s in (0, 1)]
    assert got == [{"tsc", "cnc"}, {"tsc"}]


@pytest.mark.parametrize("path,method,want", [
    ("constraints.tsc_reduction", Method.hydra, False),
    ("constraints.tsc_reduction", Method.tsc, True),
    ("constraints.cnc_every", Method.tsc, False),
    ("constraints.cnc_layer_subset", Method.cnc, True),
])
def test_new_knobs_split_pretrains_only_where_their_term_is_used(
        path: str, method: Method, want: bool) -> None:
    assert affects_pretrain(path, method) is want
