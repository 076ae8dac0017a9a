"""Training objectives: TRADES, PGD-AT (Madry), natural CE (DESIGN §3.4)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tscnc import adversarial as A
from tscnc.errors import InvalidInput
from tscnc.layers import PLinear
from tscnc.spec import Objective, preset

EPS, STEP, STEPS = 0.1, 0.05, 5
OBJECTIVES = [o.value for o in Objective]


def _kw(objective: str) -> dict:
    return {"objective": objective, "epsilon": EPS, "step_size": STEP, "steps": STEPS,
            "beta": 6.0}


def _f(t: torch.Tensor) -> float:
    return t.detach().item()


def _modes(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), PLinear(64, 32), nn.BatchNorm1d(32), nn.ReLU(),
                         nn.Dropout(0.2), PLinear(32, 10))


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(32, 1, 8, 8, generator=g), torch.randint(0, 10, (32,), generator=g)


# ---- losses -----------------------------------------------------------------------------

@pytest.mark.parametrize("objective", OBJECTIVES)
def test_loss_is_finite_differentiable_and_shaped(model, batch, objective):
    x, y = batch
    model.train()
    loss, logits = A.adversarial_loss(model, x, y, **_kw(objective))
    assert loss.shape == () and torch.isfinite(loss)
    if objective == "pgd":
        assert logits is None
    else:
        assert logits is not None and logits.shape == (32, 10)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads if g is not None)


@pytest.mark.parametrize("initial_mode", ["train", "eval", "mixed"])
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_mode_is_restored(model, batch, objective, initial_mode):
    model.train(initial_mode != "eval")
    if initial_mode == "mixed":
        model[2].eval()              # frozen batch-norm inside a training model
    before = _modes(model)
    A.adversarial_loss(model, *batch, **_kw(objective))
    assert _modes(model) == before


def test_inner_maximisation_in_eval_mode_outer_in_callers_mode(batch):
    seen: list[bool] = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(self.training)
            return x

    model = nn.Sequential(nn.Flatten(), Probe(), nn.Linear(64, 10)).train()
    A.trades_loss(model, *batch, epsilon=EPS, step_size=STEP, steps=3)
    # clean reference + 3 inner steps in eval mode, then clean + adversarial outer forwards.
    assert seen == [False] * 4 + [True] * 2
    seen.clear()
    A.pgd_at_loss(model, *batch, epsilon=EPS, step_size=STEP, steps=3)
    assert seen == [False] * 3 + [True]


def test_trades_matches_its_formula(model, batch):
    x, y = batch
    model.eval()                     # deterministic forwards to compare against
    torch.manual_seed(5)
    loss, logits = A.trades_loss(model, x, y, epsilon=EPS, step_size=STEP, steps=STEPS, beta=2.5)
    torch.manual_seed(5)
    x_adv = A.trades_perturb(model, x, EPS, STEP, STEPS)
    p_clean = F.softmax(model(x), dim=1)
    kl = (p_clean * (p_clean.log() - F.log_softmax(model(x_adv), dim=1))).sum(1).mean()
    expected = F.cross_entropy(model(x), y) + 2.5 * kl
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(logits, model(x))
    # beta = 0 is natural training.
    loss0, _ = A.trades_loss(model, x, y, epsilon=EPS, step_size=STEP, steps=STEPS, beta=0.0)
    assert loss0.item() == pytest.approx(A.natural_loss(model, x, y).loss.item(), rel=1e-6)


def test_pgd_at_is_ce_at_the_attack_point(model, batch):
    x, y = batch
    model.eval()
    torch.manual_seed(3)
    loss, _ = A.pgd_at_loss(model, x, y, epsilon=EPS, step_size=STEP, steps=STEPS)
    torch.manual_seed(3)
    x_adv = A.pgd_perturb(model, x, y, EPS, STEP, STEPS)
    assert _f(loss) == pytest.approx(_f(F.cross_entropy(model(x_adv), y)), rel=1e-6)
    assert _f(loss) > _f(F.cross_entropy(model(x), y))


def test_natural_is_cross_entropy(model, batch):
    x, y = batch
    model.eval()
    loss, logits = A.adversarial_loss(model, x, y, objective="natural")
    assert _f(loss) == pytest.approx(_f(F.cross_entropy(model(x), y)), rel=1e-6)
    assert torch.allclose(logits, model(x))


# ---- inner maximisations ----------------------------------------------------------------

@pytest.mark.parametrize("which", ["trades", "pgd"])
def test_perturbation_stays_in_ball_and_box(model, batch, which):
    x, y = batch
    x_adv = (A.trades_perturb(model, x, EPS, STEP, STEPS) if which == "trades"
             else A.pgd_perturb(model, x, y, EPS, STEP, STEPS))
    assert x_adv.shape == x.shape and x_adv.device == x.device and not x_adv.requires_grad
    assert float((x_adv - x).abs().max()) <= EPS + 1e-6
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert all(p.grad is None for p in model.parameters())


def test_trades_inner_loop_increases_the_kl(model, batch):
    x, _ = batch
    model.eval()

    def kl(x_adv: torch.Tensor) -> float:
        p = F.softmax(model(x), dim=1)
        return _f(F.kl_div(F.log_softmax(model(x_adv), dim=1), p, reduction="batchmean"))

    with torch.no_grad():
        torch.manual_seed(0)
        start = kl((x + A.TRADES_INIT_STD * torch.randn_like(x)).clamp(0, 1))
    torch.manual_seed(0)
    end = kl(A.trades_perturb(model, x, EPS, STEP, STEPS))
    assert end > 10 * start


@pytest.mark.parametrize("objective", ["trades", "pgd"])
def test_adversarial_training_step_reduces_the_adversarial_loss(batch, objective):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), PLinear(64, 32), nn.ReLU(), PLinear(32, 10))
    x, y = batch
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def loss_at(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return A.adversarial_loss(model, x, y, **_kw(objective)).loss

    before = _f(loss_at(9))
    for step in range(10):
        opt.zero_grad()
        loss_at(step).backward()
        opt.step()
    after = _f(loss_at(9))
    assert after < before - 0.05, (before, after)


def test_deterministic_given_torch_seed(model, batch):
    model.eval()
    out = []
    for _ in range(2):
        torch.manual_seed(42)
        out.append(_f(A.adversarial_loss(model, *batch, **_kw("trades")).loss))
    assert out[0] == out[1]


def test_amp_is_ignored_off_cuda(model, batch):
    model.eval()
    torch.manual_seed(1)
    plain = A.adversarial_loss(model, *batch, **_kw("trades")).loss
    torch.manual_seed(1)
    amp = A.adversarial_loss(model, *batch, **_kw("trades"), amp=torch.bfloat16).loss
    assert _f(plain) == _f(amp)


@pytest.mark.gpu
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_cuda_autocast(model, batch, objective):
    model = model.cuda().train()
    x, y = batch[0].cuda(), batch[1].cuda()
    loss, _ = A.adversarial_loss(model, x, y, **_kw(objective), amp=torch.bfloat16)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ---- parameters ---------------------------------------------------------------------------

def test_params_from_spec():
    spec = preset("digits-quick")
    p = A.AdversarialParams.from_spec(spec)
    assert p.objective == Objective.trades
    assert p.epsilon == spec.epsilon == 0.1
    assert p.step_size == pytest.approx(2.5 * 0.1 / spec.adversarial.steps)
    assert (p.steps, p.beta) == (spec.adversarial.steps, spec.adversarial.beta)


def test_params_and_keywords_agree(model, batch):
    model.eval()
    params = A.AdversarialParams(**_kw("trades"))
    torch.manual_seed(2)
    a = A.adversarial_loss(model, *batch, params)
    torch.manual_seed(2)
    b = A.adversarial_loss(model, *batch, **_kw("trades"))
    assert _f(a.loss) == _f(b.loss)
    # Keywords override the params.
    c = A.adversarial_loss(model, *batch, params, objective="natural")
    assert _f(c.loss) == pytest.approx(_f(F.cross_entropy(model(batch[0]), batch[1])))


def test_invalid_parameters_raise(model, batch):
    with pytest.raises(InvalidInput, match="unknown objective"):
        A.AdversarialParams(objective="fgsm-at")
    with pytest.raises(InvalidInput, match="epsilon > 0"):
        A.AdversarialParams(objective="pgd", epsilon=0.0)
    with pytest.raises(InvalidInput, match="missing"):
        A.adversarial_loss(model, *batch, objective="trades", epsilon=0.1)
    with pytest.raises(InvalidInput, match="missing"):
        A.adversarial_loss(model, *batch)
