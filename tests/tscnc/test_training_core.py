"""Training core (issue 10): long runs stay finite, what weight decay touches, BatchNorm in the
prune stage, and which build a checkpoint comes from."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

import torch
import torch.nn.functional as F
from torch import nn

from tscnc import adversarial, pipeline
from tscnc.records import EpochEvent, Event
from tscnc.spec import SweepSpec


def _spec(**over: object) -> SweepSpec:
    base: dict[str, object] = dict(
        name="core",
        dataset={"name": "digits", "train_subset": 256},
        model={"name": "mlp", "width": 32},
        training={"pretrain_epochs": 2, "prune_epochs": 1, "finetune_epochs": 1,
                  "batch_size": 64, "lr": 0.05, "monitor_examples": 20, "device": "cpu"},
        adversarial={"steps": 1},
        evaluation={"attacks": ["fgsm"], "examples": 40, "security_curve": [1.0]},
        methods=["tscnc"],
        sparsities=[0.5],
        seeds=[0],
    )
    base.update(over)
    return SweepSpec.model_validate(base)


@pytest.fixture
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---- long runs (item 6) ---------------------------------------------------------------------

def test_trades_gradient_is_finite_when_the_clean_softmax_underflows() -> None:
    # A confident model: a logit margin of 200 makes softmax(clean) exactly 0 in float32 for the
    # other classes. The KL's gradient with respect to that target was 0 · log 0 = NaN.
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([200.0, 0.0, -50.0]))
        model[1].weight[0, 0] = 1.0
    with torch.no_grad():
        assert float(F.softmax(model(torch.ones(1, 1, 2, 2)), 1)[0, 1]) == 0.0
    x, y = torch.rand(8, 1, 2, 2), torch.zeros(8, dtype=torch.long)
    loss, _ = adversarial.trades_loss(model, x, y, epsilon=0.1, step_size=0.05, steps=2)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name


def test_long_training_crosses_the_old_divergence_point(tmp_path: Path, one_thread: None) -> None:
    # On the old code this run raised Diverged at epoch 25 (NaN gradients from the TRADES KL once
    # the clean softmax underflowed); 60 epochs cross that point with room to spare. One torch
    # thread: the trajectory (and so the epoch where a margin first passes ~104) depends on the
    # order of float reductions.
    spec = _spec(training={"pretrain_epochs": 60, "batch_size": 64, "lr": 0.5,
                           "schedule": "constant", "weight_decay": 0.0, "monitor_examples": 20,
                           "device": "cpu"})
    run = spec.runs()[0]
    events: list[Event] = []
    final = pipeline.pretrain(spec, run, [run.key], tmp_path, emit=events.append)
    epochs = [e for e in events if isinstance(e, EpochEvent)]
    assert [e.epoch for e in epochs] == list(range(1, 61))
    assert all(math.isfinite(e.loss) for e in epochs)
    state = torch.load(final, weights_only=True)["model"]
    assert all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())
