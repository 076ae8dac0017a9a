"""The TSCNC constraints (DESIGN §3.1–3.3): TSC, CNC, hard-concrete gates and the Lipschitz term.

Every penalty takes a weight (any layer shape; a convolution kernel (out, in, kh, kw) is read as
the m×n matrix (out, in·kh·kw), see :func:`tscnc.layers.as_matrix`) and an optional 0/1 mask of
the same shape, and returns a 0-dim tensor that can be added to a loss. Masked weights contribute
nothing and receive a zero gradient.

:func:`regularization` adds them up for a whole model, as the training loop needs them::

    total, parts = regularization(model, spec.constraints, use_tsc=True, use_cnc=True)
    loss = adversarial_loss + total          # parts == {"tsc": ..., "cnc": ...} for logging

Formulas (k = min(m, n) of the alive part, G its smaller Gram matrix):

- ρ_a(x) = (a+1)|x| / (a+|x|)                                     (:func:`transformed_l1`)
- TSC(W) = Σ_ij ρ_a(m_ij·w_ij)                                      (:func:`tsc_penalty`);
  over layers: Σ_ℓ TSC(W_ℓ) (``sum``) or (1/L)·Σ_ℓ TSC(W_ℓ)/numel(W_ℓ) (``mean``)
- CNC_si(W) = log(tr(G+δI)/k) − (1/k)·logdet(G+δI),  δ = 1e−6·tr(G)/k   (:func:`cnc_penalty`)
- CNC_ld(W) = (logaddexp(log ε, logdet((G+δI)/k)))²,  ε = 1e−5
- gates: Σ_c ρ_a((1−q0_c)·Σ_{w∈c}(½·prior·w² + λ0))                  (:func:`gate_penalty`)
- LCC(W) = log(τ + ‖W‖_F²),  τ = 1                                  (:func:`lipschitz_penalty`)

``docs/method.md`` states each one with its defaults and how it differs from the authors'
released code.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from tscnc.errors import Diverged, InvalidInput
from tscnc.layers import PConv2d, PLinear, as_matrix, prunable_layers
from tscnc.spec import CNCKind, CNCLayers, ConstraintSpec, Precision, TSCReduction, TSCVariant

__all__ = [
    "CNC_EPSILON",
    "CNC_JITTER",
    "LCC_TAU",
    "HardConcreteGate",
    "alive_part",
    "attach_gates",
    "cnc_penalty",
    "gate_penalty",
    "lipschitz_penalty",
    "regularization",
    "transformed_l1",
    "tsc_penalty",
]

# Relative jitter of the CNC: δ = CNC_JITTER · tr(G)/k keeps G + δI positive definite (so the
# Cholesky factor exists even for a rank-deficient alive part) while being invisible for any
# layer whose κ² is far below 1e6.
CNC_JITTER = 1e-6
# ε of the `logdet` kind (the released code's (log(ε + det(G/k)))²).
CNC_EPSILON = 1e-5
# τ of the Lipschitz term log(τ + ‖W‖_F²).
LCC_TAU = 1.0


# ---- shared helper (metrics import it too) ------------------------------------------------

def alive_part(matrix: Tensor, mask: Tensor | None = None) -> Tensor:
    """The alive part of an m×n ``matrix``: rows and columns holding an unmasked non-zero weight.

    With M the 0/1 ``mask`` (same shape, or None for "nothing masked"), returns the sub-matrix
    of W ⊙ M on the rows i with any(W⊙M)[i, :] ≠ 0 and the columns j with any(W⊙M)[:, j] ≠ 0,
    shape (m', n') with m' ≤ m, n' ≤ n (possibly (0, 0)). Differentiable: the gradient reaches
    the kept entries of ``matrix`` and is zero elsewhere.

    Example::

        >>> w = torch.tensor([[1., 0., 2.], [0., 0., 0.]])
        >>> alive_part(w).shape
        torch.Size([1, 2])
    """
    if matrix.dim() != 2:
        raise InvalidInput(f"alive_part expects an m×n matrix, got shape {tuple(matrix.shape)}")
    w = matrix if mask is None else matrix * mask
    nonzero = w != 0
    rows, cols = nonzero.any(dim=1), nonzero.any(dim=0)
    # Indexing copies; skip it in the common dense case (costs a host sync per check on GPU).
    if not bool(rows.all()):
        w = w[rows]
    if not bool(cols.all()):
        w = w[:, cols]
    return w


# ---- TSC --------------------------------------------------------------------------------

def transformed_l1(x: Tensor, a: float) -> Tensor:
    """Transformed-ℓ1, elementwise: ρ_a(x) = (a+1)|x| / (a+|x|), a > 0.

    Same shape as ``x``. ρ_a(0) = 0, ρ_a is bounded by a+1, behaves like ((a+1)/a)·|x| for
    |x| ≪ a, tends to ℓ0 (1 for x ≠ 0) as a → 0 and to |x| as a → ∞. The gradient at x = 0 is
    the subgradient 0 (that of ``torch.abs``).

    Example::

        >>> transformed_l1(torch.tensor([0.0, 1.0, -3.0]), a=1.0)
        tensor([0.0000, 1.0000, 1.5000])
    """
    if a <= 0:
        raise InvalidInput(f"transformed_l1 needs a > 0, got {a}")
    t = x.abs()
    return (a + 1.0) * t / (a + t)


def tsc_penalty(weight: Tensor, a: float, mask: Tensor | None = None) -> Tensor:
    """Elementwise Transformed Sparse Constraint of one layer: Σ_ij ρ_a(m_ij · w_ij).

    ``weight`` of any shape, ``mask`` a 0/1 tensor of the same shape (None: nothing masked).
    Returns a 0-dim tensor. Masked weights add ρ_a(0) = 0 and get a zero gradient.

    Example::

        >>> tsc_penalty(torch.tensor([[1.0, -1.0], [0.5, 2.0]]), a=1.0,
        ...             mask=torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
        tensor(2.)
    """
    if a <= 0:
        raise InvalidInput(f"tsc_penalty needs a > 0, got {a}")
    w = weight if mask is None else weight * mask
    return _TransformedL1Sum.apply(w, float(a))


class _TransformedL1Sum(torch.autograd.Function):
    """Σ ρ_a(x) with a hand-written backward: this runs on every weight at every training step,
    and autograd's version of the elementwise formula makes about twice as many passes over the
    weights. ∂ρ_a/∂x = (a+1)·a·sign(x) / (a+|x|)² (0 at x = 0).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, a: float) -> Tensor:
        t = x.abs()
        s = t + a
        value = (a + 1.0) * t.div_(s).sum()          # t/s = ρ_a(x)/(a+1)
        ctx.save_for_backward(x, s.reciprocal_().square_())
        ctx.a = a
        return value

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        x, inv_s2 = ctx.saved_tensors
        return x.sign().mul_(inv_s2).mul_(grad * ((ctx.a + 1.0) * ctx.a)), None


# ---- CNC --------------------------------------------------------------------------------

class _NormalizedGramLogdet(torch.autograd.Function):
    """For a k×n matrix W (k ≤ n): (logdet(A), log c, info), G = W·Wᵀ, c = tr(G)/k, A = G/c + jI.

    A has mean eigenvalue 1 + j (j = CNC_JITTER) whatever the scale of W, so the Cholesky
    factorisation works on a unit-scale matrix; ``info`` ≠ 0 when it failed (A not numerically
    positive definite in this precision). The backward is written by hand: autograd's backward
    through the Gram product costs two k×k·k×n products (one per operand) plus the Cholesky
    backward's triangular solves, this one a single product. With t = tr(G),

        ∇_G logdet A = A⁻¹/c − ((k − j·tr A⁻¹)/t)·I,   ∇_G log c = I/t,   ∇_W = 2·∇_G·W.
    """

    @staticmethod
    def forward(ctx: Any, w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        k = w.shape[0]
        gram = w @ w.mT
        trace = gram.diagonal().sum()
        scale = trace / k
        a = gram.div_(scale)
        a.diagonal().add_(CNC_JITTER)
        chol, info = torch.linalg.cholesky_ex(a)
        logdet = 2.0 * chol.diagonal().log().sum()
        ctx.save_for_backward(w, chol, trace)
        ctx.mark_non_differentiable(info)
        return logdet, scale.log(), info

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g_logdet: Tensor, g_logscale: Tensor, _: Any) -> Tensor:
        w, chol, trace = ctx.saved_tensors
        k = w.shape[0]
        a_inv = torch.cholesky_inverse(chol)
        # Diagonal shift of ∇_G, from the dependence of c on tr(G) (see the class docstring).
        shift = (g_logscale - g_logdet * (k - CNC_JITTER * a_inv.diagonal().sum())) / trace
        grad_g = a_inv.mul_(g_logdet * k / trace)
        grad_g.diagonal().add_(shift)
        return 2.0 * grad_g @ w


def cnc_penalty(
    weight: Tensor,
    kind: CNCKind | str = CNCKind.scale_invariant,
    mask: Tensor | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Condition Number Constraint of one layer, on the alive part of W ⊙ M (0 if none is alive).

    ``weight``: (m, n) or a conv kernel (out, in, kh, kw) read as (out, in·kh·kw); ``mask`` the
    same shape or None. G is the k×k Gram matrix of the alive part, k = min(m', n'),
    δ = 1e−6·tr(G)/k:

    - ``scale_invariant``: log(tr(G+δI)/k) − (1/k)·logdet(G+δI) — the gap between the log of the
      arithmetic and of the geometric mean of the eigenvalues of G+δI. ≥ 0, = 0 iff all
      singular values are equal (κ = 1), unchanged when W is scaled, grows with κ. It equals
      DESIGN's log(tr(G)/k) − (1/k)·logdet(G+δI) plus the constant log(1 + 1e−6), which makes it
      exactly ≥ 0.
    - ``logdet``: (logaddexp(log ε, logdet((G+δI)/k)))², ε = 1e−5 — the released code's
      (log(ε + det(G/k)))² without ever forming det (which is 0 in float32 for a 100-class
      layer at init).

    Computed through a Cholesky factor of G/(tr(G)/k) + 1e−6·I, in ``dtype`` (default: float32,
    or float64 for a float64 weight), with autocast off; if the float32 factorisation fails
    (alive part too ill-conditioned for float32) it is redone in float64. Returns a 0-dim tensor
    of dtype float32 (float64 for a float64 weight), on the weight's device. The backward is
    hand-written (one k×k·k×n product) and first-order only.

    Example::

        >>> q = torch.linalg.qr(torch.randn(6, 4)).Q            # orthonormal columns
        >>> abs(float(cnc_penalty(3.0 * q))) < 1e-5
        True
        >>> float(cnc_penalty(torch.diag(torch.tensor([1.0, 10.0])))) > 1.0
        True
    """
    kind = CNCKind(kind)
    out_dtype = torch.promote_types(weight.dtype, torch.float32)
    compute = dtype if dtype is not None else out_dtype
    matrix = as_matrix(weight)
    msk = None if mask is None else as_matrix(mask)
    # Autocast would run the Gram product in bf16/fp16; the penalty needs full precision.
    with torch.autocast(device_type=weight.device.type, enabled=False):
        w = alive_part(matrix, msk)
        if w.numel() == 0:
            return weight.new_zeros((), dtype=out_dtype)
        # Work on the wide orientation (k ≤ n) so the Gram matrix is the smaller one.
        wide = w if w.shape[0] <= w.shape[1] else w.mT
        k = wide.shape[0]
        logdet, log_scale, info = _NormalizedGramLogdet.apply(wide.to(compute))
        if int(info) != 0 and compute != torch.float64:
            logdet, log_scale, info = _NormalizedGramLogdet.apply(wide.to(torch.float64))
        if int(info) != 0:
            raise Diverged(
                f"CNC: the Gram matrix of a {tuple(w.shape)} weight is not positive definite "
                "even in float64 (non-finite weights?)"
            )
        if kind == CNCKind.scale_invariant:
            value = math.log1p(CNC_JITTER) - logdet / k
        else:
            # logdet((G+δI)/k) = k·log(tr(G)/k²) + logdet(Ĝ + jitter·I), Ĝ = G/(tr(G)/k).
            ld = logdet + k * (log_scale - math.log(k))
            value = torch.logaddexp(ld.new_tensor(math.log(CNC_EPSILON)), ld).square()
    return value.to(out_dtype)


# ---- gates (the `gates` TSC variant) ----------------------------------------------------

class HardConcreteGate(nn.Module):
    """Hard-concrete L0 gates, one per output channel (Louizos, Welling & Kingma 2018).

    With log α_c a parameter per channel, temperature β = 2/3 and stretch (γ, ζ) = (−0.1, 1.1):

    - training mode: u ~ U(0, 1), s = σ((log u − log(1−u) + log α_c)/β),
      z_c = clamp(s·(ζ−γ) + γ, 0, 1)  (a fresh sample on every call);
    - eval mode: z_c = clamp(σ(log α_c)·(ζ−γ) + γ, 0, 1)  (deterministic);
    - P(z_c ≠ 0) = 1 − q0_c = σ(log α_c − β·log(−γ/ζ))  (:meth:`prob_nonzero`).

    ``forward()`` takes no input and returns z of shape (channels,); a prunable layer multiplies
    output channel c of its effective weight by z_c. log α starts at log((1−p)/p) plus N(0, 0.01²)
    noise, p = ``droprate_init``; the default p = 0.2 gives z ≈ 0.86 in eval mode, so attaching
    gates to a trained model does not halve its activations (Louizos et al. use p = 0.5 or 0.3).

    Example::

        >>> g = HardConcreteGate(4).eval()
        >>> g().shape
        torch.Size([4])
    """

    def __init__(
        self,
        channels: int,
        droprate_init: float = 0.2,
        temperature: float = 2.0 / 3.0,
        stretch: tuple[float, float] = (-0.1, 1.1),
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 < droprate_init < 1.0:
            raise InvalidInput(f"droprate_init must lie in (0, 1), got {droprate_init}")
        gamma, zeta = stretch
        if not (gamma < 0.0 and zeta > 1.0):
            raise InvalidInput(f"stretch must satisfy γ < 0 < 1 < ζ, got {stretch}")
        self.temperature = temperature
        self.gamma, self.zeta = gamma, zeta
        mean = math.log(1.0 - droprate_init) - math.log(droprate_init)
        init = mean + 1e-2 * torch.randn(channels, device=device, dtype=dtype)
        self.log_alpha = nn.Parameter(init)

    def forward(self) -> Tensor:
        if self.training:
            # Clamp u away from {0, 1} so the logit of u stays finite.
            eps = torch.finfo(self.log_alpha.dtype).eps
            u = torch.rand_like(self.log_alpha).clamp(eps, 1.0 - eps)
            s = torch.sigmoid((u.log() - (-u).log1p() + self.log_alpha) / self.temperature)
        else:
            s = torch.sigmoid(self.log_alpha)
        return (s * (self.zeta - self.gamma) + self.gamma).clamp(0.0, 1.0)

    def prob_nonzero(self) -> Tensor:
        """1 − q0_c = P(z_c ≠ 0) = σ(log α_c − β·log(−γ/ζ)), shape (channels,)."""
        return torch.sigmoid(self.log_alpha - self.temperature * math.log(-self.gamma / self.zeta))

    def extra_repr(self) -> str:
        return (f"channels={self.log_alpha.numel()}, temperature={self.temperature:.4g}, "
                f"stretch=({self.gamma}, {self.zeta})")


def attach_gates(model: nn.Module, droprate_init: float = 0.2) -> dict[str, HardConcreteGate]:
    """Give every prunable layer of ``model`` a :class:`HardConcreteGate` (``layer.gate``).

    Layers that already have one keep it (so calling twice is harmless). The gates live on the
    weight's device and dtype and appear in ``model.state_dict()`` as ``<layer>.gate.log_alpha``:
    attach gates before loading a checkpoint saved with gates. Returns {layer name: gate}.

    Example::

        >>> model = nn.Sequential(PLinear(4, 3))
        >>> list(attach_gates(model))
        ['0']
    """
    gates: dict[str, HardConcreteGate] = {}
    for name, layer in prunable_layers(model):
        if not isinstance(layer.gate, HardConcreteGate):
            layer.gate = HardConcreteGate(layer.weight.shape[0], droprate_init,
                                          device=layer.weight.device, dtype=layer.weight.dtype)
        gates[name] = layer.gate
    return gates


def gate_penalty(layer: PLinear | PConv2d, a: float, prior: float, lambda0: float) -> Tensor:
    """The `gates` TSC of one layer: Σ_c ρ_a((1−q0_c) · Σ_{w∈c, unmasked}(½·prior·w² + λ0)).

    c runs over output channels (rows of the layer's matrix); the inner sum is the expected
    L0-plus-L2 cost of channel c (Louizos et al. 2018, eq. 13), which is ≥ 0, so ρ_a is
    applied to a non-negative argument and the penalty is smooth and bounded by
    (a+1)·channels. The released code applies its transform to a negative quantity instead:
    (a+1)·x/(a+x) then has a pole at x = −a (|x| = a) and changes sign beyond it; we transform
    the positive cost. Gradients reach ``log_alpha`` and the unmasked weights; masked weights
    get zero. Returns a 0-dim tensor.

    Example::

        >>> layer = PLinear(4, 3); _ = attach_gates(layer)
        >>> bool(gate_penalty(layer, a=1.0, prior=1e-4, lambda0=1e-3) > 0)
        True
    """
    gate = layer.gate
    if not isinstance(gate, HardConcreteGate):
        raise InvalidInput("gate_penalty needs a layer with a HardConcreteGate; call attach_gates")
    mask = as_matrix(layer.current_mask())
    w = as_matrix(layer.weight) * mask
    channel_cost = (0.5 * prior * w.square() + lambda0 * mask).sum(dim=1)
    return transformed_l1(gate.prob_nonzero() * channel_cost, a).sum()


# ---- Lipschitz term ---------------------------------------------------------------------

def lipschitz_penalty(weight: Tensor, mask: Tensor | None = None) -> Tensor:
    """LCC(W) = log(τ + ‖W ⊙ M‖_F²), τ = 1; ‖W‖_F ≥ σ_max(W), the layer's Lipschitz constant.

    Any weight shape; returns a 0-dim tensor.

    Example::

        >>> round(float(lipschitz_penalty(torch.eye(3))), 6)  # log(1 + 3)
        1.386294
    """
    w = weight if mask is None else weight * mask
    return torch.log(LCC_TAU + w.square().sum())


# ---- model-level aggregate --------------------------------------------------------------

def regularization(
    model: nn.Module,
    constraints: ConstraintSpec,
    use_tsc: bool,
    use_cnc: bool,
    *,
    use_lcc: bool = True,
    step: int = 0,
) -> tuple[Tensor, dict[str, float]]:
    """λ_tsc·TSC + λ_cnc·CNC + λ_lcc·LCC over the prunable layers ℓ = 1..L of ``model``.

    - TSC (if ``use_tsc``), t_ℓ the layer's :func:`tsc_penalty` of the effective weight
      (``elementwise``) or :func:`gate_penalty` (``gates``; needs :func:`attach_gates`), and
      n_ℓ its number of terms (``weight.numel()``, masked weights included; ``gates``: its
      output channels):

      - ``tsc_reduction = sum``:  TSC = Σ_ℓ t_ℓ  (= Σ_ℓ Σ_ij ρ_a(w_ij), the released code's);
      - ``tsc_reduction = mean``: TSC = (1/L)·Σ_ℓ t_ℓ/n_ℓ, the mean over layers of each
        layer's mean ρ_a, in [0, a+1) whatever the model's size. It equals ``sum`` with the
        weight of layer ℓ divided by L·n_ℓ (``docs/method.md`` converts λ's between the two).
    - CNC (if ``use_cnc``): the mean over the C CNC layers (``cnc_layers``: ``all`` prunable
      layers, or ``classifier`` = the Linear ones) of :func:`cnc_penalty` of the effective
      weight, of kind ``cnc_kind`` in precision ``cnc_precision``. Two cost options, off by
      default (``cnc_every = 1``, ``cnc_layer_subset`` empty: every layer at every step):

      - ``cnc_every = k``: computed only when ``step % k == 0``, weighted by k, so its sum
        over k consecutive steps is k times the full term of the computed step;
      - ``cnc_layer_subset = s < C``: a subset S of s layers drawn uniformly without
        replacement from torch's default generator, CNC = (1/C)·(C/s)·Σ_{ℓ∈S} c_ℓ =
        (1/s)·Σ_{ℓ∈S} c_ℓ, whose expectation over S is the full mean (unbiased).
    - LCC (if ``use_lcc`` and λ_lcc > 0): Σ over layers of :func:`lipschitz_penalty`.

    ``step`` is the training step (0-based, counted over the stage) that ``cnc_every`` reads.
    A term whose λ is 0 (or a CNC that this step skips) is not computed. Weights enter through
    ``layer.effective_weight()``, so masked weights get a zero gradient (with gates in training
    mode this draws a fresh gate sample for the CNC). Returns (total, parts): ``total`` a
    0-dim tensor to add to the loss, ``parts`` {"tsc", "cnc", "lcc"} of the computed terms for
    logging, each the value that λ multiplies (with the cost options, the CNC's estimate, k×
    on a computed step, so that its average over steps estimates the mean CNC).

    Example::

        >>> model = nn.Sequential(PLinear(8, 6), nn.ReLU(), PLinear(6, 3))
        >>> total, parts = regularization(model, ConstraintSpec(), use_tsc=True, use_cnc=True)
        >>> sorted(parts)
        ['cnc', 'tsc']
    """
    c = constraints
    layers = prunable_layers(model)
    do_tsc = use_tsc and c.lambda_tsc > 0
    do_lcc = use_lcc and c.lambda_lcc > 0
    cnc_layers = [name for name, layer in layers
                  if c.cnc_layers == CNCLayers.all or layer.is_classifier]
    # CNC weight of each computed layer: 1/C by default (the mean), scaled by the options.
    cnc_scale = 1.0 / max(1, len(cnc_layers))
    if not (use_cnc and c.lambda_cnc > 0 and cnc_layers) or step % c.cnc_every != 0:
        cnc_layers = []
    else:
        cnc_scale *= c.cnc_every
        if c.cnc_layer_subset is not None and c.cnc_layer_subset < len(cnc_layers):
            cnc_scale *= len(cnc_layers) / c.cnc_layer_subset
            pick = torch.randperm(len(cnc_layers))[:c.cnc_layer_subset].tolist()
            cnc_layers = [cnc_layers[i] for i in sorted(pick)]
    cnc_set = set(cnc_layers)
    cnc_dtype = torch.float64 if c.cnc_precision == Precision.float64 else torch.float32
    gates = c.tsc_variant == TSCVariant.gates
    tsc_mean = c.tsc_reduction == TSCReduction.mean

    tsc_terms: list[Tensor] = []
    cnc_terms: list[Tensor] = []
    lcc_terms: list[Tensor] = []
    for name, layer in layers:
        want_cnc = name in cnc_set
        needs_weight = want_cnc or do_lcc or (do_tsc and not gates)
        w = layer.effective_weight() if needs_weight else None
        if do_tsc:
            if gates:
                if not isinstance(layer.gate, HardConcreteGate):
                    raise InvalidInput(f"tsc_variant 'gates' but layer {name!r} has no gate; "
                                       "call tscnc.constraints.attach_gates(model) first")
                t = gate_penalty(layer, c.a, c.gate_prior, c.gate_lambda0)
                n = layer.weight.shape[0]
            else:
                assert w is not None
                t, n = tsc_penalty(w, c.a), w.numel()
            tsc_terms.append(t / (n * len(layers)) if tsc_mean else t)
        # The effective weight is already zero where masked, so the mask need not be passed.
        if want_cnc:
            assert w is not None
            cnc_terms.append(cnc_penalty(w, c.cnc_kind, dtype=cnc_dtype))
        if do_lcc:
            assert w is not None
            lcc_terms.append(lipschitz_penalty(w))

    ref = next(iter(model.parameters()), None)
    zero = (torch.zeros(()) if ref is None else
            ref.new_zeros((), dtype=torch.promote_types(ref.dtype, torch.float32)))
    total = zero
    names: list[str] = []
    values: list[Tensor] = []
    for key, terms, lam, scale in (("tsc", tsc_terms, c.lambda_tsc, None),
                                   ("cnc", cnc_terms, c.lambda_cnc, cnc_scale),
                                   ("lcc", lcc_terms, c.lambda_lcc, None)):
        if not terms:
            continue
        part = torch.stack([t.to(zero.dtype) for t in terms]).sum()
        if scale is not None:
            # The default (all layers, every step) divides by C, bit for bit as before.
            part = part / len(terms) if scale == 1.0 / len(terms) else part * scale
        total = total + lam * part
        names.append(key)
        values.append(part.detach())
    # One host transfer for all the logged values.
    parts = dict(zip(names, torch.stack(values).tolist(), strict=True)) if values else {}
    return total, parts
