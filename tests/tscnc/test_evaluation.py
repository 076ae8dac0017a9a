"""Robustness evaluation: torchattacks attacks, records, security curve, sanity flags (§3.6)."""

from __future__ import annotations

import math

import pytest
import torch
import torchattacks
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tscnc import attacks as A
from tscnc import evaluation as E
from tscnc.errors import InvalidInput
from tscnc.layers import PLinear
from tscnc.records import AttackResult, Evaluation, Flag
from tscnc.sanity import sanity_flags
from tscnc.spec import AttackName, EvaluationSpec, preset

EPS = 0.1          # digits preset
ATTACKS = [a.value for a in AttackName]


def _modes(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    tr, te = perm[:1400], perm[1400:]
    return x[tr], y[tr], x[te], y[te]


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 30) -> nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y))
        for i in range(0, len(y), 100):
            idx = perm[i:i + 100]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    opt.zero_grad(set_to_none=True)
    return model


@pytest.fixture(scope="module")
def trained_once(digits) -> nn.Module:
    """Naturally trained MLP of prunable layers; batch-norm and dropout make the mode matter."""
    xtr, ytr, xte, yte = digits
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), PLinear(64, 64), nn.BatchNorm1d(64), nn.ReLU(),
                          nn.Dropout(0.1), PLinear(64, 10))
    _train(model, xtr, ytr)
    assert E.clean_accuracy(model, (xte, yte)) > 0.9
    return model


@pytest.fixture
def trained(trained_once: nn.Module) -> nn.Module:
    """The trained model in eval mode, whatever mode an earlier test left it in."""
    return trained_once.eval()


@pytest.fixture
def test_set(digits) -> tuple[torch.Tensor, torch.Tensor]:
    return digits[2][:200], digits[3][:200]


def _kwargs(attack: str) -> dict:
    # AutoAttack is sized down (examples, iterations) to keep the test to seconds.
    if attack == "autoattack":
        return {"examples": 30, "steps": 10}
    return {}


# ---- each attack ------------------------------------------------------------------------

@pytest.mark.parametrize("initial_mode", ["train", "eval"])
@pytest.mark.parametrize("attack", ATTACKS)
def test_attack_lowers_accuracy_and_restores_mode(trained, test_set, attack, initial_mode):
    x, y = test_set
    trained.train(initial_mode == "train")
    before = _modes(trained)
    kw = _kwargs(attack)
    clean = E.clean_accuracy(trained, (x, y), examples=kw.get("examples"))
    assert _modes(trained) == before
    r = E.robust_accuracy(trained, (x, y), attack, epsilon=EPS, seed=0, **kw)
    assert _modes(trained) == before
    assert r.accuracy < clean - 0.2, (attack, clean, r.accuracy)
    # Parameters are unfrozen again and no attack left gradients on them (FAB calls backward).
    assert all(p.requires_grad for p in trained.parameters())
    assert all(p.grad is None for p in trained.parameters())


def test_exact_per_submodule_mode_is_restored(trained, test_set):
    # A training model with a frozen (eval) batch-norm: model.train() would not restore this.
    trained.train()
    trained[2].eval()
    before = _modes(trained)
    for attack in ("fgsm", "pgd", "cw"):
        E.robust_accuracy(trained, test_set, attack, epsilon=EPS, examples=50)
        assert _modes(trained) == before
    E.monitor_accuracy(trained, *test_set, epsilon=EPS, steps=3)
    E.security_curve(trained, test_set, [0.0, EPS], examples=50, steps=3)
    assert _modes(trained) == before


def test_evaluation_runs_in_eval_mode(test_set):
    seen: list[bool] = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(self.training)
            return x

    model = nn.Sequential(nn.Flatten(), Probe(), nn.Linear(64, 10)).train()
    E.robust_accuracy(model, test_set, "pgd", epsilon=EPS, steps=2, examples=20)
    E.clean_accuracy(model, test_set)
    assert seen and not any(seen)
    assert model.training


def test_attack_result_records_protocol(trained, test_set):
    r = E.robust_accuracy(trained, test_set, "pgd", epsilon=0.05, steps=7, seed=11, examples=150)
    assert isinstance(r, AttackResult)
    assert (r.attack, r.epsilon, r.steps, r.seed, r.examples) == ("pgd", 0.05, 7, 11, 150)
    assert r.library == f"torchattacks {torchattacks.__version__}" == A.LIBRARY
    assert E.robust_accuracy(trained, test_set, "fgsm", epsilon=EPS, steps=9).steps == 1
    assert E.robust_accuracy(trained, test_set, "cw", epsilon=EPS).steps == 30
    assert 0.0 <= r.accuracy <= 1.0


def test_robust_accuracy_accepts_a_ready_attack(trained, test_set):
    atk = A.make_attack("pgd", trained, 0.08, steps=5)
    r = E.robust_accuracy(trained, test_set, atk, seed=1)
    by_name = E.robust_accuracy(trained, test_set, "pgd", epsilon=0.08, steps=5, seed=1)
    assert (r.attack, r.epsilon, r.steps) == ("pgd", 0.08, 5)
    assert r.accuracy == by_name.accuracy


def test_make_attack_kinds_and_budgets(trained):
    assert isinstance(A.make_attack("fgsm", trained, EPS), torchattacks.FGSM)
    pgd = A.make_attack("pgd", trained, EPS, steps=20)
    assert isinstance(pgd, torchattacks.PGD) and pgd.random_start
    assert pgd.alpha == pytest.approx(2.5 * EPS / 20)
    cw = A.make_attack(AttackName.cw, trained, EPS, steps=10)
    assert isinstance(cw, A.CWLinf) and cw.steps == 10
    aa = A.make_attack("autoattack", trained, EPS, num_classes=10, seed=3)
    assert isinstance(aa, torchattacks.AutoAttack) and aa.version == "standard"
    subs = aa._autoattack.attacks
    assert [type(s).__name__ for s in subs] == ["APGD", "APGDT", "FAB", "Square"]
    assert all(s.steps == 100 for s in subs[:3])
    assert subs[1].n_target_classes == subs[2].n_target_classes == 9
    with pytest.raises(InvalidInput, match="unknown attack"):
        A.make_attack("deepfool", trained, EPS)
    with pytest.raises(InvalidInput, match="epsilon"):
        A.make_attack("pgd", trained, 0.0)


def test_cw_margin_closed_form():
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, -1.0]])
    y = torch.tensor([0, 2])
    assert A.cw_margin(logits, y).tolist() == [-1.0, 6.0]


def test_perturbations_stay_in_the_ball(trained, test_set):
    for attack in ("fgsm", "pgd", "cw"):
        x, x_adv, _ = E.perturb(trained, test_set, attack, epsilon=EPS, examples=64)
        assert x_adv.shape == x.shape
        assert float((x_adv - x).abs().max()) <= EPS + 1e-6
        assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0


def test_autoattack_on_flat_inputs(digits):
    # AutoAttack (APGD, Square) indexes inputs as (N, C, H, W); flat inputs go through a view.
    xtr, ytr, xte, yte = digits
    model = _train(nn.Sequential(PLinear(64, 32), nn.ReLU(), PLinear(32, 10)),
                   xtr.flatten(1), ytr, epochs=15).eval()
    data = (xte[:30].flatten(1), yte[:30])
    clean = E.clean_accuracy(model, data)
    r = E.robust_accuracy(model, data, "autoattack", epsilon=EPS, steps=5, seed=0)
    assert r.accuracy < clean - 0.2
    assert not model.training


# ---- determinism ------------------------------------------------------------------------

def test_deterministic_given_seed_and_caller_rng_untouched(trained, test_set):
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    runs = [E.perturb(trained, test_set, "pgd", epsilon=EPS, steps=5, seed=7)[1] for _ in range(2)]
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(runs[0], runs[1])
    other = E.perturb(trained, test_set, "pgd", epsilon=EPS, steps=5, seed=8)[1]
    assert not torch.equal(runs[0], other)
    a = E.robust_accuracy(trained, test_set, "cw", epsilon=EPS, steps=5, seed=7)
    b = E.robust_accuracy(trained, test_set, "cw", epsilon=EPS, steps=5, seed=7)
    assert a == b
    aa = [E.robust_accuracy(trained, test_set, "autoattack", epsilon=EPS, seed=2, examples=20,
                            steps=5) for _ in range(2)]
    assert aa[0] == aa[1]
    assert torch.equal(torch.get_rng_state(), state)


def test_evaluate_is_deterministic(trained, test_set):
    spec = EvaluationSpec(attacks=[AttackName.fgsm, AttackName.pgd], pgd_steps=5, examples=100,
                          security_curve=[0.0, 1.0, 4.0])
    e1 = E.evaluate(trained, test_set, spec, epsilon=EPS, seed=5)
    e2 = E.evaluate(trained, test_set, spec, epsilon=EPS, seed=5)
    assert e1 == e2


# ---- curve, monitor, flags --------------------------------------------------------------

def test_security_curve(trained, test_set):
    curve = E.security_curve(trained, test_set, [0.0, 0.05, 0.1, 0.5], steps=10)
    assert [e for e, _ in curve] == [0.0, 0.05, 0.1, 0.5]
    assert curve[0][1] == E.clean_accuracy(trained, test_set)
    accs = [a for _, a in curve]
    assert all(b <= a + 1e-9 for a, b in zip(accs, accs[1:], strict=False))
    assert accs[-1] < 0.05


def test_monitor_accuracy(trained, test_set):
    trained.train()
    clean, robust = E.monitor_accuracy(trained, *test_set, epsilon=EPS, steps=3)
    assert trained.training
    trained.eval()
    assert clean == E.clean_accuracy(trained, test_set)
    assert robust < clean - 0.2
    assert (clean, robust) == E.monitor_accuracy(trained, *test_set, epsilon=EPS, steps=3)


def _result(attack: str, acc: float, eps: float = EPS) -> AttackResult:
    return AttackResult(attack=attack, epsilon=eps, steps=1, accuracy=acc, examples=100, seed=0,
                        library=A.LIBRARY)


HEALTHY_CURVE = [(0.0, 0.95), (0.05, 0.7), (0.1, 0.45), (0.2, 0.1), (0.4, 0.0)]


def test_sanity_flags_quiet_on_a_healthy_result():
    results = [_result("fgsm", 0.5), _result("pgd", 0.45), _result("cw", 0.46)]
    assert sanity_flags(0.95, results, HEALTHY_CURVE, 10, epsilon=EPS) == []


def test_flag_pgd_weaker_than_fgsm():
    results = [_result("fgsm", 0.40), _result("pgd", 0.45)]
    assert sanity_flags(0.95, results, HEALTHY_CURVE, 10, epsilon=EPS) == \
        [Flag.pgd_weaker_than_fgsm]
    # Within the tolerance, or at different radii, it is not a sign of masking.
    assert sanity_flags(0.95, [_result("fgsm", 0.40), _result("pgd", 0.405)], HEALTHY_CURVE,
                          10, epsilon=EPS) == []
    assert sanity_flags(0.95, [_result("fgsm", 0.4, 0.1), _result("pgd", 0.6, 0.05)],
                          HEALTHY_CURVE, 10, epsilon=EPS) == []


def test_flag_not_monotone_in_epsilon():
    curve = [(0.0, 0.95), (0.05, 0.5), (0.1, 0.6), (0.4, 0.0)]
    assert sanity_flags(0.95, [], curve, 10, epsilon=EPS) == [Flag.not_monotone_in_epsilon]
    # Unsorted input is sorted first; the clean point is prepended when absent.
    assert sanity_flags(0.95, [], list(reversed(HEALTHY_CURVE)), 10, epsilon=EPS) == []
    assert sanity_flags(0.5, [], [(0.05, 0.7), (0.4, 0.0)], 10, epsilon=EPS) == \
        [Flag.not_monotone_in_epsilon]


def test_flag_above_chance_at_large_epsilon():
    curve = [(0.0, 0.95), (0.1, 0.6), (0.4, 0.5)]
    assert sanity_flags(0.95, [], curve, 10, epsilon=EPS) == \
        [Flag.above_chance_at_large_epsilon]
    # Chance + margin is the threshold: 0.19 < 0.1 + 0.1 is fine for 10 classes.
    assert sanity_flags(0.95, [], [(0.0, 0.95), (0.4, 0.19)], 10, epsilon=EPS) == []
    # 0.4 is not large for a training radius of 0.3 (4x = 1.2), but 0.5 always is.
    assert sanity_flags(0.95, [], curve, 10, epsilon=0.3) == []
    assert sanity_flags(0.95, [], [(0.0, 0.95), (0.5, 0.5)], 10, epsilon=0.3) == \
        [Flag.above_chance_at_large_epsilon]
    # A curve that never reaches a large radius cannot be checked.
    assert sanity_flags(0.95, [], [(0.0, 0.95), (0.1, 0.6)], 10, epsilon=EPS) == []


def test_flags_on_a_masked_model(test_set):
    # A model whose output saturates (hard threshold of the input) has zero input gradients:
    # gradient attacks find nothing at any radius, the textbook sign of gradient masking.
    class Masked(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(64, 10)

        def forward(self, x):
            return self.lin(torch.round(x.flatten(1)).detach() + 0 * x.flatten(1))

    model = Masked()
    x, y = test_set
    with torch.no_grad():
        y = model(x).argmax(1)      # perfectly "accurate" on its own labels
    spec = EvaluationSpec(attacks=[AttackName.fgsm, AttackName.pgd], pgd_steps=5, examples=100)
    ev = E.evaluate(model, (x, y), spec, epsilon=EPS, structure=False)
    assert ev.clean_accuracy == 1.0
    assert Flag.above_chance_at_large_epsilon in ev.flags


# ---- the entry point --------------------------------------------------------------------

def test_evaluate_with_a_sweep_spec(trained, test_set):
    spec = preset("digits-quick")
    spec = spec.model_copy(update={"evaluation": spec.evaluation.model_copy(
        update={"examples": 120, "cw_steps": 10, "pgd_steps": 10})})
    trained.train()
    ev = E.evaluate(trained, *test_set, spec, seed=0)
    assert trained.training
    trained.eval()
    assert isinstance(ev, Evaluation)
    assert [a.attack for a in ev.attacks] == ["fgsm", "pgd", "cw"]
    assert all(a.examples == 120 and a.epsilon == EPS and a.seed == 0 for a in ev.attacks)
    assert [a.steps for a in ev.attacks] == [1, 10, 10]
    assert ev.clean_accuracy > 0.9
    assert all(a.accuracy < ev.clean_accuracy for a in ev.attacks)
    assert [e for e, _ in ev.security_curve] == pytest.approx(
        [m * EPS for m in spec.evaluation.security_curve])
    assert ev.security_curve[0][1] == ev.clean_accuracy
    assert ev.flags == []
    assert [s.layer for s in ev.spectra] == ["1", "5"]
    assert ev.lipschitz_upper is not None and ev.lipschitz_empirical is not None
    assert ev.lipschitz_empirical > 0
    # The same numbers from a loader and from the (x, y) pair.
    loader = DataLoader(TensorDataset(*test_set), batch_size=50)
    assert E.evaluate(trained, loader, spec, seed=0) == ev
    assert Evaluation.model_validate_json(ev.model_dump_json()) == ev


def test_evaluate_with_an_evaluation_spec(trained, test_set):
    spec = EvaluationSpec(attacks=[AttackName.pgd], pgd_steps=5, examples=50,
                          security_curve=[0.0, 2.0])
    with pytest.raises(InvalidInput, match="epsilon"):
        E.evaluate(trained, test_set, spec)
    ev = E.evaluate(trained, test_set, spec, epsilon=0.05, structure=False)
    assert ev.attacks[0].epsilon == 0.05
    assert [e for e, _ in ev.security_curve] == [0.0, 0.1]
    assert ev.spectra == [] and ev.lipschitz_upper is None


def test_evaluate_flags_rank_deficient_layer(digits):
    model = nn.Sequential(nn.Flatten(), PLinear(64, 10))
    with torch.no_grad():
        model[1].weight[1] = model[1].weight[0]        # two equal rows: κ = inf
    spec = EvaluationSpec(attacks=[AttackName.fgsm], examples=20, security_curve=[0.0])
    ev = E.evaluate(model, (digits[2], digits[3]), spec, epsilon=EPS)
    assert Flag.rank_deficient_layer in ev.flags
    assert math.isinf(ev.spectra[0].condition_number)


def test_bad_inputs_raise_clear_errors(trained):
    with pytest.raises(InvalidInput, match="empty"):
        E.clean_accuracy(trained, DataLoader(TensorDataset(torch.zeros(0, 64),
                                                           torch.zeros(0, dtype=torch.long))))
    with pytest.raises(InvalidInput, match="needs epsilon"):
        E.robust_accuracy(trained, (torch.rand(4, 64), torch.zeros(4, dtype=torch.long)), "pgd")


# ---- security curve past the input range (issue 10, item 4) ------------------------------

def test_security_curve_clamps_radii_past_the_input_range(trained, test_set):
    # ε = 0.3 with the default multiples reaches 4 × 0.3 = 1.2 > 1: clamped to 1, computed once.
    radii, clamped = E.security_curve_epsilons([0.0, 0.3, 0.6, 1.2, 2.4])
    assert radii == [0.0, 0.3, 0.6, 1.0]
    assert clamped == [1.2, 2.4]
    assert E.security_curve_epsilons([0.0, 0.1, 1.0]) == ([0.0, 0.1, 1.0], [])
    with pytest.raises(InvalidInput, match="epsilon"):
        E.security_curve_epsilons([-0.1])
    curve = E.security_curve(trained, test_set, [0.0, 0.6, 1.2], steps=3, examples=60)
    assert [e for e, _ in curve] == [0.0, 0.6, 1.0]
    # At ε = 1 PGD may move every pixel anywhere in [0, 1]: nothing stays robust here.
    assert curve[-1][1] == E.robust_accuracy(trained, test_set, "pgd", epsilon=1.0, steps=3,
                                             examples=60).accuracy


def _write_idx(path, arr) -> None:
    import numpy as np
    arr = np.asarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big")
                                                      for d in arr.shape)
    path.write_bytes(header + arr.tobytes())


def test_default_mnist_spec_runs_end_to_end_on_idx_files(tmp_path, monkeypatch):
    """A default MNIST spec (ε = 0.3, curve multiples up to 4) trains and evaluates end to end
    on a tiny file-backed dataset in torchvision's MNIST format (before: PGD refused ε = 1.2)."""
    import numpy as np

    from tscnc import pipeline
    from tscnc.spec import SweepSpec

    rng = np.random.default_rng(0)
    monkeypatch.setenv("TSCNC_DATA_ROOTS", str(tmp_path))       # the data root of this test
    raw = tmp_path / "tiny-mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, n in (("train", 64), ("t10k", 32)):
        y = rng.integers(0, 10, n)
        # A learnable pattern: class c lights up row band 2c..2c+2, plus noise.
        x = rng.integers(0, 60, (n, 28, 28))
        for i, c in enumerate(y):
            x[i, 2 * c:2 * c + 3, :] = 255
        _write_idx(raw / f"{split}-images-idx3-ubyte", x)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", y)
    spec = SweepSpec.model_validate(dict(
        name="mnist-default-eps",
        dataset={"name": "mnist", "data_dir": "tiny-mnist"},
        model={"name": "mlp", "width": 16},
        training={"pretrain_epochs": 1, "prune_epochs": 1, "finetune_epochs": 1,
                  "batch_size": 32, "monitor_examples": 16, "device": "cpu"},
        adversarial={"steps": 2},
        evaluation={"attacks": ["pgd"], "pgd_steps": 2, "examples": 32},
        methods=["hydra"], sparsities=[0.5], seeds=[0]))
    assert spec.epsilon == 0.3
    assert max(spec.evaluation.security_curve) * spec.epsilon > 1
    outcome = pipeline.run_sweep(spec, tmp_path / "artifacts", device=torch.device("cpu"))
    assert outcome.failures == []
    (result,) = outcome.results
    radii = [e for e, _ in result.security_curve]
    assert radii == pytest.approx([0.0, 0.075, 0.15, 0.3, 0.6, 1.0])
    assert Flag.security_curve_clamped in result.flags


def test_evaluate_runs_a_sized_down_autoattack(trained, test_set):
    """``EvaluationSpec.autoattack_steps`` sizes AutoAttack down (issue 10, item 11): the budget
    reaches the attack and is recorded; the result equals robust_accuracy at that budget."""
    spec = EvaluationSpec(attacks=[AttackName.pgd, AttackName.autoattack], pgd_steps=5,
                          autoattack_steps=4, examples=40, security_curve=[0.0])
    assert EvaluationSpec().autoattack_steps == A.DEFAULT_STEPS[AttackName.autoattack] == 100
    ev = E.evaluate(trained, test_set, spec, epsilon=EPS, seed=1, structure=False)
    aa = ev.attacks[1]
    assert (aa.attack, aa.steps, aa.examples) == ("autoattack", 4, 40)
    assert aa == E.robust_accuracy(trained, test_set, "autoattack", epsilon=EPS, steps=4,
                                   seed=1, examples=40)
    assert aa.accuracy <= ev.attacks[0].accuracy + 0.05
