"""TSC, CNC, gates and the Lipschitz term against closed forms, invariants and gradient checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from tscnc.constraints import (
    CNC_EPSILON,
    HardConcreteGate,
    alive_part,
    attach_gates,
    cnc_penalty,
    gate_penalty,
    lipschitz_penalty,
    regularization,
    transformed_l1,
    tsc_penalty,
)
from tscnc.errors import Diverged, InvalidInput
from tscnc.layers import PConv2d, PLinear
from tscnc.spec import ConstraintSpec

KINDS = ["scale_invariant", "logdet"]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def orthonormal(m: int, n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """m×n matrix with orthonormal rows (m ≤ n) or columns (m > n)."""
    q = torch.linalg.qr(torch.randn(max(m, n), min(m, n), dtype=dtype)).Q
    return q.T if m <= n else q


def reference_si(w: np.ndarray) -> float:
    """DESIGN §3.2 scale-invariant CNC from numpy eigenvalues, plus the documented log1p(1e-6)."""
    g = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    k = g.shape[0]
    lam = np.linalg.eigvalsh(g)
    delta = 1e-6 * lam.sum() / k
    return math.log(lam.sum() / k) - np.log(lam + delta).sum() / k + math.log1p(1e-6)


# ---- ρ_a and TSC --------------------------------------------------------------------------

@pytest.mark.parametrize("a", [1e-3, 0.5, 1.0, 7.0, 1e4])
def test_transformed_l1_matches_closed_form(a: float) -> None:
    x = torch.tensor([-5.0, -1.0, -0.25, -1e-3, 0.0, 1e-3, 0.3, 2.0, 40.0], dtype=torch.float64)
    expected = [(a + 1) * abs(v) / (a + abs(v)) for v in x.tolist()]
    assert transformed_l1(x, a).tolist() == pytest.approx(expected, rel=1e-12, abs=0)


def test_transformed_l1_limits() -> None:
    x = torch.tensor([0.1, 0.5, 2.0, 30.0], dtype=torch.float64)
    # |x| ≪ a: linear with slope (a+1)/a.
    a = 10.0
    small = torch.tensor([1e-6, -3e-6], dtype=torch.float64)
    assert transformed_l1(small, a).tolist() == pytest.approx(
        (small.abs() * (a + 1) / a).tolist(), rel=1e-6)
    # a → ∞: ℓ1; a → 0: ℓ0 (1 for every non-zero x); |x| → ∞: the bound a + 1.
    assert transformed_l1(x, 1e9).tolist() == pytest.approx(x.tolist(), rel=1e-7)
    assert transformed_l1(x, 1e-9).tolist() == pytest.approx([1.0] * 4, rel=1e-7)
    assert float(transformed_l1(torch.tensor(1e12, dtype=torch.float64), 2.0)) == \
        pytest.approx(3.0, rel=1e-9)
    with pytest.raises(InvalidInput):
        transformed_l1(x, 0.0)


def test_transformed_l1_gradient_closed_form_and_zero_at_zero() -> None:
    a = 0.7
    x = torch.tensor([-2.0, -0.1, 0.0, 0.3, 5.0], dtype=torch.float64, requires_grad=True)
    transformed_l1(x, a).sum().backward()
    expected = [(a + 1) * a * math.copysign(1, v) / (a + abs(v)) ** 2 if v else 0.0
                for v in x.tolist()]
    assert x.grad is not None
    assert x.grad.tolist() == pytest.approx(expected, rel=1e-12, abs=0)


def test_tsc_penalty_sums_unmasked_rho_with_its_own_gradient() -> None:
    w = torch.randn(6, 4, 3, 3, dtype=torch.float64)
    w[0, 0, 0, 0] = 0.0
    mask = (torch.rand_like(w) > 0.4).to(w.dtype)
    mask[0, 0, 0, 0] = 1.0
    a = 0.3
    expected = float(transformed_l1(w * mask, a).sum())
    assert float(tsc_penalty(w, a, mask)) == pytest.approx(expected, rel=1e-12)

    leaf = w.clone().requires_grad_(True)
    tsc_penalty(leaf, a, mask).backward()
    ref = w.clone().requires_grad_(True)
    transformed_l1(ref * mask, a).sum().backward()
    assert leaf.grad is not None and ref.grad is not None
    assert torch.allclose(leaf.grad, ref.grad, rtol=1e-12, atol=0)
    assert bool((leaf.grad[mask == 0] == 0).all())
    assert float(leaf.grad[0, 0, 0, 0]) == 0.0           # subgradient 0 at an unmasked zero
    small = w[:2, :2].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: tsc_penalty(t, a, mask[:2, :2]), (small,))


# ---- CNC: invariants --------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(8, 8), (5, 9), (9, 5), (1, 6)])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 37.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cnc_is_zero_for_scaled_orthogonal(shape: tuple[int, int], scale: float,
                                           dtype: torch.dtype) -> None:
    w = (scale * orthonormal(*shape)).to(dtype)
    assert abs(float(cnc_penalty(w))) <= 1e-5


def test_cnc_is_zero_for_orthogonal_conv_kernel() -> None:
    w = orthonormal(6, 4 * 3 * 3).reshape(6, 4, 3, 3).float()
    assert abs(float(cnc_penalty(w))) <= 1e-5


def test_cnc_is_positive_and_matches_eigenvalue_reference() -> None:
    w = torch.randn(7, 12, dtype=torch.float64)
    value = float(cnc_penalty(w))
    assert value > 0.05
    assert value == pytest.approx(reference_si(w.numpy()), rel=1e-10)
    wt = w.T.contiguous()
    assert float(cnc_penalty(wt)) == pytest.approx(value, rel=1e-10)    # G = WᵀW branch


@pytest.mark.parametrize("shape", [(10, 30), (30, 10), (6, 3, 3, 3)])
@pytest.mark.parametrize("c", [1e-3, 0.5, 250.0])
def test_cnc_scale_invariant(shape: tuple[int, ...], c: float) -> None:
    w = torch.randn(*shape)
    assert float(cnc_penalty(c * w)) == pytest.approx(float(cnc_penalty(w)), rel=1e-4)
    w64 = w.double()
    assert float(cnc_penalty(c * w64)) == pytest.approx(float(cnc_penalty(w64)), rel=1e-10)


def test_cnc_logdet_kind_is_not_scale_invariant_but_pulls_det_toward_one() -> None:
    # Sanity: the faithful kind depends on scale; it is minimal where det(G/k) ≈ 1 - ε.
    k = 4
    eye = torch.eye(k, dtype=torch.float64)
    assert float(cnc_penalty(math.sqrt(k) * eye, "logdet")) == pytest.approx(
        math.log1p(CNC_EPSILON) ** 2, abs=1e-10)   # G/k = I: (log(ε + 1))², up to the jitter
    assert float(cnc_penalty(eye, "logdet")) > float(cnc_penalty(math.sqrt(k) * eye, "logdet"))


def test_cnc_strictly_increasing_in_condition_number() -> None:
    ts = torch.cat([torch.tensor([1.0, 1.0001, 1.001, 1.01]), torch.linspace(1.1, 1e3, 300)])
    values = [float(cnc_penalty(torch.diag(torch.tensor([1.0, t], dtype=torch.float64))))
              for t in ts.tolist()]
    assert values[0] == pytest.approx(0.0, abs=1e-12)
    assert all(b > a for a, b in zip(values, values[1:], strict=False))
    coarse = [float(cnc_penalty(torch.diag(torch.tensor([1.0, t])))) for t in (1.0, 1.5, 3, 10, 1e3)]
    assert all(b > a for a, b in zip(coarse, coarse[1:], strict=False))


# ---- CNC: numerics ----------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_cnc_finite_with_gradient_on_100_class_layer_where_det_underflows(kind: str) -> None:
    layer = nn.Linear(640, 100)                                   # PyTorch's Kaiming init
    w = layer.weight.detach().clone().requires_grad_(True)
    k = 100
    gram = (w @ w.T).detach() / k
    # The released form: det in float32 is exactly 0, so log(ε + det) is flat (zero gradient).
    assert float(torch.det(gram)) == 0.0
    w_det = w.detach().clone().requires_grad_(True)
    released = torch.log(CNC_EPSILON + torch.det(w_det @ w_det.T / k)) ** 2
    released.backward()
    assert w_det.grad is not None and float(w_det.grad.abs().max()) == 0.0

    value = cnc_penalty(w, kind)
    value.backward()
    assert math.isfinite(float(value.detach()))
    assert w.grad is not None and bool(torch.isfinite(w.grad).all())
    if kind == "scale_invariant":
        assert float(w.grad.norm()) > 0.0
        assert float(value.detach()) == pytest.approx(reference_si(w.detach().double().numpy()),
                                                      rel=1e-4)
    else:
        # logdet(G/k) ≈ −570 here, so logaddexp(log ε, ·) = log ε: the value is (log ε)².
        assert float(value.detach()) == pytest.approx(math.log(CNC_EPSILON) ** 2, rel=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(4, 7), (7, 4), (3, 2, 2, 2), (5, 5)])
def test_cnc_gradcheck_float64(kind: str, shape: tuple[int, ...]) -> None:
    w = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: cnc_penalty(t, kind), (w,))


@pytest.mark.parametrize("kind", KINDS)
def test_cnc_gradcheck_float64_nearly_singular(kind: str) -> None:
    # Two singular values near √jitter: tr((G/c + jI)⁻¹) ~ 1/j, so the jitter's share of the
    # gradient is of order one and a mistake in it shows.
    s = torch.tensor([1.0, 0.8, 1e-3, 7e-4], dtype=torch.float64)
    w = orthonormal(4, 4) @ torch.diag(s) @ orthonormal(4, 7)
    assert torch.autograd.gradcheck(lambda t: cnc_penalty(t, kind), (w.requires_grad_(True),))


@pytest.mark.parametrize("kind", KINDS)
def test_cnc_gradcheck_float64_masked(kind: str) -> None:
    w = torch.randn(6, 8, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(6, 8, dtype=torch.float64)
    mask[2] = 0
    mask[:, 5] = 0
    mask[0, 0] = 0
    assert torch.autograd.gradcheck(lambda t: cnc_penalty(t, kind, mask=mask), (w,))


@pytest.mark.parametrize("kind", KINDS)
def test_cnc_logdet_kind_matches_closed_form(kind: str) -> None:
    w = torch.randn(5, 9, dtype=torch.float64) * 0.8
    g = (w @ w.T).numpy()
    k = 5
    lam = np.linalg.eigvalsh(g)
    delta = 1e-6 * lam.sum() / k
    logdet = float(np.log((lam + delta) / k).sum())
    expected = {"logdet": np.logaddexp(math.log(CNC_EPSILON), logdet) ** 2,
                "scale_invariant": reference_si(w.numpy())}[kind]
    assert float(cnc_penalty(w, kind)) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_cnc_masked_rows_and_columns_are_removed(kind: str) -> None:
    w = torch.randn(8, 12)
    mask = torch.ones_like(w)
    mask[[1, 4, 6]] = 0                          # three output channels pruned away
    mask[:, [0, 7]] = 0                          # two input columns pruned away
    mask[2, 3] = 0                               # an isolated zero does not remove anything
    rows, cols = [0, 2, 3, 5, 7], [c for c in range(12) if c not in (0, 7)]
    kept = (w * mask)[rows][:, cols]
    assert float(cnc_penalty(w, kind, mask=mask)) == pytest.approx(
        float(cnc_penalty(kept, kind)), rel=1e-6)
    # The same for a weight that is zero in storage (effective weight), without a mask.
    assert float(cnc_penalty(w * mask, kind)) == pytest.approx(
        float(cnc_penalty(kept, kind)), rel=1e-6)
    # A conv kernel: masking an output channel == deleting it.
    k = torch.randn(5, 2, 3, 3)
    km = torch.ones_like(k)
    km[3] = 0
    assert float(cnc_penalty(k, kind, mask=km)) == pytest.approx(
        float(cnc_penalty(k[[0, 1, 2, 4]], kind)), rel=1e-6)


def test_alive_part_drops_zero_rows_and_columns_only() -> None:
    w = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0], [3.0, 0.0, 0.0]])
    assert alive_part(w).tolist() == [[1.0, 2.0], [3.0, 0.0]]
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    assert alive_part(w, mask).tolist() == [[1.0], [3.0]]
    assert alive_part(torch.zeros(3, 4)).shape == (0, 0)
    with pytest.raises(InvalidInput):
        alive_part(torch.zeros(2, 2, 2))


@pytest.mark.parametrize("kind", KINDS)
def test_cnc_of_empty_alive_part_is_zero(kind: str) -> None:
    w = torch.randn(4, 6, requires_grad=True)
    value = cnc_penalty(w, kind, mask=torch.zeros(4, 6))
    assert float(value) == 0.0 and value.dtype == torch.float32
    assert float(cnc_penalty(torch.zeros(3, 3), kind)) == 0.0


def test_cnc_falls_back_to_float64_when_float32_cholesky_fails() -> None:
    # A rank-one 256×300 weight: the jittered unit-trace Gram is not positive definite in float32.
    u, v = torch.randn(256, 1), torch.randn(1, 300)
    w = (u @ v).float()
    k = 256
    g = w @ w.T
    _, info = torch.linalg.cholesky_ex(g / (g.trace() / k) + 1e-6 * torch.eye(k))
    assert int(info) != 0                        # the float32 path really fails here
    value = cnc_penalty(w)
    assert value.dtype == torch.float32
    assert float(value) == pytest.approx(float(cnc_penalty(w.double())), rel=1e-5)
    assert float(value) > 13.0                   # ≈ −log(1e−6)·(k−1)/k: near-singular, large


def test_cnc_precision_option_and_output_dtype() -> None:
    w = torch.randn(20, 40)
    v32 = cnc_penalty(w)
    v64 = cnc_penalty(w, dtype=torch.float64)
    assert v32.dtype == v64.dtype == torch.float32
    assert float(v32) == pytest.approx(float(v64), rel=1e-5)
    assert cnc_penalty(w.double()).dtype == torch.float64


def test_cnc_ignores_autocast() -> None:
    w = torch.randn(16, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = cnc_penalty(w)
    assert inside.dtype == torch.float32
    assert float(inside) == pytest.approx(float(cnc_penalty(w)), rel=1e-6)


def test_cnc_non_finite_weight_raises_diverged() -> None:
    w = torch.randn(4, 5)
    w[1, 2] = float("nan")
    with pytest.raises(Diverged):
        cnc_penalty(w)


# ---- gates ------------------------------------------------------------------------------

def test_hard_concrete_gate_modes_and_probability() -> None:
    gate = HardConcreteGate(20_000)
    with torch.no_grad():
        gate.log_alpha.fill_(-0.5)
    gate.train()
    z1, z2 = gate(), gate()
    assert z1.shape == (20_000,)
    assert bool(((z1 >= 0) & (z1 <= 1)).all())
    assert not torch.equal(z1, z2)                                 # sampled per call
    assert float((z1 == 0).float().mean()) > 0.05                  # exact zeros happen
    # P(z ≠ 0) = σ(log α − β·log(−γ/ζ)), checked against the sample frequency.
    p = float(gate.prob_nonzero()[0].detach())
    assert p == pytest.approx(1 / (1 + math.exp(0.5 + (2 / 3) * math.log(0.1 / 1.1))))
    assert float((z1 != 0).float().mean()) == pytest.approx(p, abs=0.015)
    gate.eval()
    z = gate()
    assert torch.equal(z, gate())
    expected = min(1.0, max(0.0, 1 / (1 + math.exp(0.5)) * 1.2 - 0.1))
    assert float(z[0].detach()) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(InvalidInput):
        HardConcreteGate(3, droprate_init=1.0)


def test_attach_gates_scales_output_channels_and_is_idempotent() -> None:
    model = nn.Sequential(PConv2d(2, 3, 3), nn.Flatten(), PLinear(3 * 4 * 2, 5))
    gates = attach_gates(model)
    assert list(gates) == ["0", "2"]
    assert attach_gates(model)["0"] is gates["0"]
    assert "0.gate.log_alpha" in model.state_dict()
    conv = model[0]
    assert isinstance(conv, PConv2d)
    gates["0"].eval()
    with torch.no_grad():
        gates["0"].log_alpha.copy_(torch.tensor([10.0, -10.0, 0.0]))
    w = conv.effective_weight()
    assert torch.allclose(w[0], conv.weight[0])                   # z = 1
    assert bool((w[1] == 0).all())                                 # z = 0
    assert torch.allclose(w[2], 0.5 * conv.weight[2])              # z = σ(0)·1.2 − 0.1
    model(torch.randn(2, 2, 6, 4)).sum().backward()                # gates are trainable


def test_gate_penalty_closed_form() -> None:
    layer = PLinear(5, 3)
    attach_gates(layer)
    layer.mask[1, :2] = 0
    a, prior, lam0 = 0.5, 1e-2, 1e-3
    gate = layer.gate
    assert isinstance(gate, HardConcreteGate)
    with torch.no_grad():
        w = (layer.weight * layer.mask).double()
        cost = (0.5 * prior * w**2 + lam0 * layer.mask).sum(1) * gate.prob_nonzero().double()
        expected = float(((a + 1) * cost / (a + cost)).sum())
    assert float(gate_penalty(layer, a, prior, lam0).detach()) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(InvalidInput):
        gate_penalty(PLinear(2, 2), a, prior, lam0)


def test_gate_penalty_has_no_pole_where_the_released_form_does() -> None:
    # Sweep the channel cost through a = 1: ours stays finite, positive, increasing and
    # bounded; the released transform of the negated cost, (a+1)x/(a+x) at x = −cost, explodes.
    a = 1.0
    layer = PLinear(4, 1)
    attach_gates(layer)
    gate = layer.gate
    assert isinstance(gate, HardConcreteGate)
    ours, released = [], []
    for scale in torch.linspace(0.2, 3.0, 57).tolist():
        with torch.no_grad():
            layer.weight.fill_(scale)
            gate.log_alpha.fill_(8.0)               # 1 − q0 ≈ 1: cost ≈ 2·scale² over 4 weights
        layer.zero_grad()
        value = gate_penalty(layer, a, prior=1.0, lambda0=0.0)
        value.backward()
        assert layer.weight.grad is not None and bool(torch.isfinite(layer.weight.grad).all())
        assert gate.log_alpha.grad is not None and bool(torch.isfinite(gate.log_alpha.grad).all())
        ours.append(float(value.detach()))
        cost = float(gate.prob_nonzero().detach()) * 2 * scale**2
        released.append((a + 1) * -cost / (a - cost))
    assert all(0 < v < a + 1 for v in ours)
    assert all(b > c for c, b in zip(ours, ours[1:], strict=False))
    assert max(abs(v) for v in released) > 20 * (a + 1)          # near the pole at cost = a
    assert min(released) < 0 < max(released)                       # and a sign change past it


# ---- Lipschitz term ---------------------------------------------------------------------

def test_lipschitz_penalty_closed_form_and_mask() -> None:
    w = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(3, 4, dtype=torch.float64)
    mask[0] = 0
    value = lipschitz_penalty(w, mask)
    assert float(value.detach()) == pytest.approx(math.log(1 + float((w[1:] ** 2).sum().detach())),
                                                  rel=1e-12)
    value.backward()
    assert w.grad is not None and bool((w.grad[0] == 0).all())


# ---- model-level aggregate --------------------------------------------------------------

def _masked_model() -> nn.Sequential:
    model = nn.Sequential(PConv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), PLinear(4 * 4, 6),
                          nn.ReLU(), PLinear(6, 3))
    for layer in (model[0], model[3], model[5]):
        assert isinstance(layer, PConv2d | PLinear)
        layer.mask.copy_((torch.rand_like(layer.mask) > 0.5).float())
        layer.mask.view(layer.mask.shape[0], -1)[0] = 0         # a whole channel pruned too
    return model


@pytest.mark.parametrize("variant", ["elementwise", "gates"])
@pytest.mark.parametrize("kind", KINDS)
def test_masked_weights_get_zero_gradient_from_every_penalty(variant: str, kind: str) -> None:
    model = _masked_model()
    if variant == "gates":
        attach_gates(model)
    spec = ConstraintSpec(lambda_tsc=1.0, lambda_cnc=1.0, lambda_lcc=1.0, tsc_variant=variant,
                          cnc_kind=kind, gate_prior=0.1, gate_lambda0=0.01)
    total, parts = regularization(model, spec, use_tsc=True, use_cnc=True)
    assert set(parts) == {"tsc", "cnc", "lcc"}
    total.backward()
    for layer in (model[0], model[3], model[5]):
        assert isinstance(layer, PConv2d | PLinear)
        grad = layer.weight.grad
        assert grad is not None and bool(torch.isfinite(grad).all())
        assert bool((grad[layer.mask == 0] == 0).all())
        assert float(grad[layer.mask == 1].abs().max()) > 0


def test_regularization_totals_parts_and_layer_selection() -> None:
    model = nn.Sequential(PConv2d(2, 4, 3), nn.Flatten(), PLinear(16, 6), PLinear(6, 3))
    layers = [model[0], model[2], model[3]]
    spec = ConstraintSpec(lambda_tsc=0.1, a=0.5, lambda_cnc=2.0, lambda_lcc=0.3)
    total, parts = regularization(model, spec, use_tsc=True, use_cnc=True)
    weights = [m.effective_weight().detach() for m in layers]   # type: ignore[operator]
    tsc = sum(float(tsc_penalty(w, 0.5)) for w in weights)
    cnc = sum(float(cnc_penalty(w)) for w in weights) / 3
    lcc = sum(float(lipschitz_penalty(w)) for w in weights)
    assert parts == pytest.approx({"tsc": tsc, "cnc": cnc, "lcc": lcc}, rel=1e-5)
    assert float(total.detach()) == pytest.approx(0.1 * tsc + 2.0 * cnc + 0.3 * lcc, rel=1e-5)

    classifier = spec.model_copy(update={"cnc_layers": "classifier", "lambda_lcc": 0.0})
    total, parts = regularization(model, classifier, use_tsc=False, use_cnc=True)
    assert set(parts) == {"cnc"}
    assert parts["cnc"] == pytest.approx(sum(float(cnc_penalty(w)) for w in weights[1:]) / 2,
                                         rel=1e-5)
    f64 = spec.model_copy(update={"cnc_precision": "float64"})
    assert regularization(model, f64, False, True)[1]["cnc"] == pytest.approx(cnc, rel=1e-5)

    off = ConstraintSpec(lambda_tsc=0.0, lambda_cnc=0.0)
    total, parts = regularization(model, off, use_tsc=True, use_cnc=True)
    assert parts == {} and float(total) == 0.0
    assert regularization(model, spec, False, False, use_lcc=False)[1] == {}


def test_regularization_gates_variant_needs_gates() -> None:
    model = nn.Sequential(PLinear(4, 3))
    spec = ConstraintSpec(tsc_variant="gates")
    with pytest.raises(InvalidInput, match="attach_gates"):
        regularization(model, spec, use_tsc=True, use_cnc=False)
    attach_gates(model)
    layer = model[0]
    assert isinstance(layer, PLinear)
    total, parts = regularization(model, spec, use_tsc=True, use_cnc=False)
    assert parts["tsc"] == pytest.approx(
        float(gate_penalty(layer, spec.a, spec.gate_prior, spec.gate_lambda0).detach()), rel=1e-6)
