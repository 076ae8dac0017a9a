"""Pipeline: resume, cancel, divergence, event identity and checkpoint round-trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import tscnc
from tscnc import constraints, pipeline
from tscnc.errors import Cancelled
from tscnc.layers import iter_prunable
from tscnc.records import EpochEvent, Event, FailureCategory, Stage, StageStarted
from tscnc.spec import RunSpec, SweepSpec


def tiny_spec(**over) -> SweepSpec:
    base = dict(
        name="tiny",
        dataset={"name": "digits", "train_subset": 256},
        model={"name": "mlp", "width": 16},
        training={"pretrain_epochs": 2, "prune_epochs": 1, "finetune_epochs": 2,
                  "batch_size": 64, "lr": 0.05, "monitor_examples": 40, "device": "cpu"},
        adversarial={"steps": 2},
        evaluation={"attacks": ["fgsm", "pgd"], "pgd_steps": 3, "examples": 60,
                    "security_curve": [0.0, 1.0, 4.0]},
        methods=["hydra", "tscnc"],
        sparsities=[0.8],
        seeds=[0],
    )
    base.update(over)
    return SweepSpec.model_validate(base)


@pytest.fixture(scope="module")
def spec() -> SweepSpec:
    return tiny_spec()


@pytest.fixture(scope="module")
def data(spec: SweepSpec) -> pipeline.Data:
    return pipeline.Data.load(spec)


def _epochs(events: list[Event]) -> list[tuple[str, str, int]]:
    return [e.key for e in events if isinstance(e, EpochEvent)]


def test_interrupted_run_resumes_with_every_epoch_once(spec, data, tmp_path: Path) -> None:
    run = RunSpec(method="tscnc", sparsity=0.8, seed=0)
    events: list[Event] = []
    calls = {"n": 0}
    batches = -(-256 // 64)

    def cancel_mid_finetune() -> bool:
        # pretrain 2 + prune 1 epochs, then stop in the middle of finetune epoch 2.
        calls["n"] += 1
        return calls["n"] == batches * 4 + 2

    with pytest.raises(Cancelled):
        pipeline.complete_run(spec, run, "r1", tmp_path / "a", emit=events.append,
                              should_cancel=cancel_mid_finetune, data_=data)
    first = _epochs(events)
    assert ("r1", "finetune", 1) in first and ("r1", "finetune", 2) not in first

    resumed: list[Event] = []
    result = pipeline.complete_run(spec, run, "r1", tmp_path / "a", emit=resumed.append,
                                   data_=data)
    starts = [e for e in resumed if isinstance(e, StageStarted) and e.stage == Stage.finetune]
    assert starts[0].resumed_from_epoch == 1
    every = first + _epochs(resumed)
    assert len(every) == len(set(every))
    expected = {("r1", s, e) for s, n in (("pretrain", 2), ("prune", 1), ("finetune", 2))
                for e in range(1, n + 1)}
    assert set(every) == expected

    straight = pipeline.complete_run(spec, run, "r2", tmp_path / "b", data_=data)
    assert result.sparsity_actual == straight.sparsity_actual
    assert result.sparsity_per_layer == straight.sparsity_per_layer
    a, b = tscnc.load_model(result.checkpoint), tscnc.load_model(straight.checkpoint)
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.allclose(p.float(), q.float(), atol=1e-6), n


def test_cancel_stops_within_one_batch(spec, data, tmp_path: Path) -> None:
    run = RunSpec(method="hydra", sparsity=0.8, seed=0)
    calls = {"n": 0}
    trained: list[int] = []
    orig = constraints.regularization

    def counting(*a, **k):
        trained.append(calls["n"])
        return orig(*a, **k)

    def cancel_at_third() -> bool:
        calls["n"] += 1
        return calls["n"] >= 3

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(constraints, "regularization", counting)
        with pytest.raises(Cancelled):
            pipeline.pretrain(spec, run, ["r"], tmp_path, should_cancel=cancel_at_third,
                              data_=data)
    assert calls["n"] == 3          # no check (and so no batch) after the one that fired
    assert trained == [1, 2]        # exactly the two batches before it trained


def test_nan_loss_fails_only_that_run(tmp_path: Path, monkeypatch) -> None:
    spec = tiny_spec(methods=["hydra", "cnc"], sparsities=[0.5, 0.8])
    orig = constraints.regularization

    def poisoned(model, cspec, use_tsc, use_cnc, **kw):
        total, parts = orig(model, cspec, use_tsc=use_tsc, use_cnc=use_cnc, **kw)
        return (total * float("nan") if use_cnc else total), parts

    monkeypatch.setattr(constraints, "regularization", poisoned)
    outcome = pipeline.run_sweep(spec, tmp_path)
    assert sorted(r.run for r in outcome.results) == ["hydra-s0.5-seed0", "hydra-s0.8-seed0"]
    assert sorted(f.run for f in outcome.failures) == ["cnc-s0.5-seed0", "cnc-s0.8-seed0"]
    assert {f.category for f in outcome.failures} == {FailureCategory.diverged}
    assert all("nan" in f.message and "learning rate" in f.message for f in outcome.failures)


def test_events_carry_run_stage_epoch_and_results_are_complete(spec, data,
                                                                tmp_path: Path) -> None:
    events: list[Event] = []
    outcome = pipeline.run_sweep(spec, tmp_path, emit=events.append)
    assert not outcome.failures
    keys = _epochs(events)
    assert len(keys) == len(set(keys))
    for r in outcome.results:
        mine = {k for k in keys if k[0] == r.run}
        assert mine == {(r.run, s, e) for s, n in (("pretrain", 2), ("prune", 1),
                                                   ("finetune", 2)) for e in range(1, n + 1)}
        assert 0 <= min(r.robust_accuracy.values()) <= r.clean_accuracy <= 1
        assert abs(r.sparsity_actual - 0.8) < 0.01
        assert set(r.robust_accuracy) == {"fgsm", "pgd"}
        assert r.versions["torch"] == torch.__version__
        assert r.spec["name"] == "tiny"


def test_load_model_round_trips_pruned_weights_exactly(spec, data, tmp_path: Path) -> None:
    run = RunSpec(method="hydra", sparsity=0.8, seed=0)
    result = pipeline.complete_run(spec, run, "rt", tmp_path, data_=data)
    saved = torch.load(result.checkpoint, weights_only=True)["model"]
    model = tscnc.load_model(result.checkpoint)
    assert not model.training
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, saved[name]), name
    zeros = sum(int((layer.weight == 0).sum()) for layer in iter_prunable(model))
    total = sum(layer.weight.numel() for layer in iter_prunable(model))
    assert zeros / total == pytest.approx(result.sparsity_actual, abs=1e-9)
    with torch.no_grad():
        acc = (model(data.test_x).argmax(1) == data.test_y).float().mean().item()
    assert acc == pytest.approx(result.clean_accuracy, abs=1e-9)
