"""Metrics (DESIGN §3.5) against numpy and closed forms; modes and gradients left untouched."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from tscnc.constraints import attach_gates
from tscnc.errors import InvalidInput
from tscnc.layers import PConv2d, PLinear
from tscnc.metrics import (
    condition_number,
    condition_numbers,
    condition_summary,
    empirical_local_lipschitz,
    layer_spectra,
    lipschitz_upper,
    singular_values,
    sparsity,
    sparsity_per_layer,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def numpy_kappa(w: np.ndarray) -> float:
    s = np.linalg.svd(w.reshape(w.shape[0], -1).astype(np.float64), compute_uv=False)
    return float(s[0] / s[-1])


@pytest.mark.parametrize("shape", [(20, 30), (50, 7), (8, 3, 3, 3), (1, 5)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_condition_number_matches_numpy(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    w = torch.randn(*shape, dtype=dtype)
    assert condition_number(w) == pytest.approx(numpy_kappa(w.numpy()), rel=1e-8)
    sv = singular_values(w)
    expected = np.linalg.svd(w.double().reshape(shape[0], -1).numpy(), compute_uv=False)
    assert sv.dtype == torch.float64
    assert sv.tolist() == pytest.approx(expected.tolist(), rel=1e-8)
    assert all(a >= b for a, b in zip(sv.tolist(), sv.tolist()[1:], strict=False))


def test_condition_number_uses_only_the_alive_part() -> None:
    w = torch.randn(10, 14, dtype=torch.float64)
    mask = torch.ones_like(w)
    mask[[2, 5]] = 0
    mask[:, [0, 3, 9]] = 0
    kept = w[[r for r in range(10) if r not in (2, 5)]][:, [c for c in range(14)
                                                           if c not in (0, 3, 9)]]
    assert condition_number(w, mask) == pytest.approx(numpy_kappa(kept.numpy()), rel=1e-8)
    # A zero row/column in storage is not alive either: it does not make κ infinite.
    d = torch.diag(torch.tensor([4.0, 0.0, 2.0, 1.0]))
    assert condition_number(d) == pytest.approx(4.0, rel=1e-12)


def test_condition_number_is_inf_for_rank_deficient_alive_part() -> None:
    u, v = torch.randn(6, 2, dtype=torch.float64), torch.randn(2, 9, dtype=torch.float64)
    low_rank = u @ v                          # every row and column alive, rank 2 < 6
    assert bool((low_rank != 0).all())
    assert condition_number(low_rank) == math.inf
    assert condition_number(torch.ones(4, 4)) == math.inf
    assert condition_number(torch.zeros(3, 5)) == math.inf
    assert condition_number(torch.randn(3, 3), mask=torch.zeros(3, 3)) == math.inf
    # Ill-conditioned but full rank stays finite: the tolerance is relative, as numpy's.
    q1 = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64)).Q
    q2 = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64)).Q
    s = torch.tensor([1.0, 0.5, 0.1, 1e-3, 1e-10], dtype=torch.float64)
    w = q1 @ torch.diag(s) @ q2.T
    assert condition_number(w) == pytest.approx(1e10, rel=1e-4)
    assert np.linalg.matrix_rank(w.numpy()) == 5


def _model() -> nn.Sequential:
    return nn.Sequential(PConv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         PLinear(4 * 4 * 4, 8), nn.ReLU(), PLinear(8, 3))


def test_layer_spectra_condition_numbers_and_summary() -> None:
    model = _model()
    conv, fc = model[0], model[4]
    assert isinstance(conv, PConv2d) and isinstance(fc, PLinear)
    fc.mask[:2] = 0
    spectra = layer_spectra(model, max_values=3)
    assert [s.layer for s in spectra] == ["0", "4", "6"]
    assert [s.shape for s in spectra] == [(4, 27), (8, 64), (3, 8)]
    assert all(len(s.singular_values) == 3 for s in spectra)
    full = np.linalg.svd((fc.weight * fc.mask).detach().double().numpy()[2:], compute_uv=False)
    assert spectra[1].singular_values == pytest.approx(full[:3].tolist(), rel=1e-8)
    assert spectra[1].condition_number == pytest.approx(full[0] / full[-1], rel=1e-8)
    assert spectra[1].sparsity == pytest.approx(0.25)
    assert len(layer_spectra(model)[1].singular_values) == 6

    kappas = condition_numbers(model)
    assert list(kappas) == ["0", "4", "6"]
    assert kappas["4"] == pytest.approx(spectra[1].condition_number, rel=1e-12)


def test_condition_summary_is_inf_aware() -> None:
    assert condition_summary({"a": 2.0, "b": 10.0, "c": 4.0}) == (4.0, 10.0)
    assert condition_summary({"a": 2.0, "b": math.inf, "c": 4.0}) == (4.0, math.inf)
    assert condition_summary({"a": 2.0, "b": math.inf}) == (math.inf, math.inf)
    assert condition_summary({"a": 2.0, "b": 6.0}) == (4.0, 6.0)
    med, mx = condition_summary({})
    assert math.isnan(med) and math.isnan(mx)


def test_sparsity_global_and_per_layer() -> None:
    model = nn.Sequential(PLinear(10, 4), PLinear(4, 5))
    first, second = model[0], model[1]
    assert isinstance(first, PLinear) and isinstance(second, PLinear)
    first.mask[:3] = 0                     # 30 of 40 zero
    with torch.no_grad():
        second.weight[0, :2] = 0.0         # 2 of 20 zero in storage, not masked
    assert sparsity_per_layer(model) == pytest.approx({"0": 0.75, "1": 0.1})
    assert sparsity(model) == pytest.approx(32 / 60)
    assert sparsity(nn.Sequential(nn.ReLU())) == 0.0


def test_metrics_keep_mode_grad_state_and_buffers() -> None:
    model = _model()
    attach_gates(model)
    x = torch.rand(4, 3, 6, 6)
    for training in (True, False):
        model.train(training)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        modes = [m.training for m in model.modules()]
        # Gates in training mode would sample; metrics use their deterministic value instead.
        assert sparsity(model) == sparsity(model)
        assert condition_numbers(model) == condition_numbers(model)
        layer_spectra(model)
        lipschitz_upper(model)
        sparsity_per_layer(model)
        empirical_local_lipschitz(model, x, 0.01 * torch.randn_like(x))
        assert [m.training for m in model.modules()] == modes
        after = model.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)   # BN stats untouched
        assert all(p.grad is None for p in model.parameters())
        assert torch.is_grad_enabled()


def test_metrics_see_gates_at_their_deterministic_value() -> None:
    model = nn.Sequential(PLinear(6, 4))
    gate = attach_gates(model)["0"]
    with torch.no_grad():
        gate.log_alpha.copy_(torch.tensor([-20.0, 20.0, 20.0, 20.0]))   # channel 0 closed
    model.train()
    assert sparsity(model) == pytest.approx(0.25)
    layer = model[0]
    assert isinstance(layer, PLinear)
    assert condition_number(layer.weight[1:]) == pytest.approx(condition_numbers(model)["0"])


def test_lipschitz_upper_is_product_of_spectral_norms() -> None:
    model = nn.Sequential(PLinear(5, 7), nn.ReLU(), PLinear(7, 3))
    norms = [float(np.linalg.norm(m.weight.detach().double().numpy(), 2))
             for m in (model[0], model[2])]
    assert lipschitz_upper(model) == pytest.approx(norms[0] * norms[1], rel=1e-10)
    zero = nn.Sequential(PLinear(3, 3))
    zero[0].mask.zero_()
    assert lipschitz_upper(zero) == 0.0


def test_empirical_local_lipschitz_exact_for_a_linear_map() -> None:
    layer = PLinear(6, 4, bias=True)
    model = nn.Sequential(layer)
    w = layer.weight.detach().double().numpy()
    _, s, vt = np.linalg.svd(w)
    x = torch.rand(3, 6)
    top = torch.tensor(vt[0], dtype=torch.float32)
    delta = torch.stack([1e-2 * top, 1e-2 * torch.randn(6), torch.zeros(6)])
    # Along the top right singular vector the ratio is σ_max; other points give less.
    value = empirical_local_lipschitz(model, x, delta)
    assert value == pytest.approx(s[0], rel=1e-3)
    assert value <= lipschitz_upper(model) * (1 + 1e-4)
    assert empirical_local_lipschitz(model, x, torch.zeros_like(x)) == 0.0
    with pytest.raises(InvalidInput):
        empirical_local_lipschitz(model, x, torch.zeros(3, 5))


def _jacobian_norm(model: nn.Module, x: torch.Tensor) -> float:
    """Largest σ_max of the exact input Jacobian of ``model`` (eval mode) over the points ``x``."""
    model.eval()
    top = 0.0
    for xi in x:
        jac = torch.autograd.functional.jacobian(lambda v: model(v.unsqueeze(0))[0], xi)
        top = max(top, float(torch.linalg.matrix_norm(jac.reshape(jac.shape[0], -1).double(),
                                                      ord=2)))
    return top


@pytest.mark.parametrize(("name", "width"), [("mlp", 32), ("cnn", 8)])
def test_lipschitz_upper_bounds_the_jacobian_of_a_trained_model(name: str, width: int) -> None:
    from tscnc import data as tdata
    from tscnc.models import build_model
    from tscnc.spec import DatasetSpec, ModelSpec

    torch.manual_seed(0)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        spec = DatasetSpec(name="digits")
        train, test = tdata.load_data(spec)
        x, y = tdata.to_tensors(train)
        model = build_model(ModelSpec(name=name, width=width), spec)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(3):                       # a few epochs: ~95 % clean accuracy
            for i in range(0, len(y), 64):
                opt.zero_grad()
                nn.functional.cross_entropy(model(x[i:i + 64]), y[i:i + 64]).backward()
                opt.step()
        tx, _ = tdata.to_tensors(test, limit=24)
        measured = _jacobian_norm(model, tx)
    finally:
        torch.set_num_threads(before)
    bound = lipschitz_upper(model)
    assert measured > 0 and math.isfinite(bound)
    assert bound >= measured, (bound, measured)


def test_lipschitz_upper_bounds_batchnorm_residual_nets() -> None:
    from tscnc.models import build_model
    from tscnc.spec import DatasetName, ModelSpec

    torch.manual_seed(0)
    for spec in (ModelSpec(name="resnet18", width=4), ModelSpec(name="wrn", depth=10, widen=1)):
        model = build_model(spec, DatasetName.digits)
        # Batch norm statistics and scales away from 1, as after training.
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.uniform_(0.05, 2.0)
                m.running_mean.normal_()
                m.weight.data.uniform_(0.5, 2.0)
        x = torch.rand(6, 1, 8, 8)
        measured = _jacobian_norm(model, x)
        assert lipschitz_upper(model) >= measured, spec.name
