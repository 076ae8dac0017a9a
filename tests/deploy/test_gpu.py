"""The GPU subset (`pytest -m gpu` on a CUDA machine; `make test` deselects it): a tiny sweep
on CUDA with mixed precision and channels_last, through the same pipeline the workers run.

Like the other CUDA tests, these are selected by the marker, not skipped: run without a GPU
they fail, saying so.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from tscnc import pipeline
from tscnc.errors import Cancelled
from tscnc.pipeline import DeviceOptions
from tscnc.records import EpochEvent, Event
from tscnc.spec import SweepSpec

CnnSpec = Callable[..., SweepSpec]

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _cuda() -> None:
    assert torch.cuda.is_available(), "needs a CUDA device: run `pytest -m gpu` on a GPU machine"


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_tiny_sweep_on_cuda_with_amp_and_channels_last(tmp_path: Path, probe: Any,
                                                       cnn_spec: CnnSpec, amp: str) -> None:
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.fail("this GPU has no bf16 (Ampere or newer needed); run the fp16 case only")
    spec = cnn_spec(device="cuda", amp=amp, channels_last=True)
    outcome = pipeline.run_sweep(spec, tmp_path, emit=probe.emit)
    assert not outcome.failures, outcome.failures
    (res,) = outcome.results
    assert 0.0 <= res.clean_accuracy <= 1.0
    assert all(0.0 <= a <= 1.0 for a in res.robust_accuracy.values())
    assert res.sparsity_actual == pytest.approx(0.5, abs=0.05)
    stages = ("pretrain", "prune", "finetune")
    steps = [c for c in probe.calls if c[0] in stages and c[1]]         # train-mode forwards
    inner = [c for c in probe.calls if c[0] in stages and not c[1]]     # attacks, monitor
    evaluating = [c for c in probe.calls if c[0] == "evaluate"]
    assert steps and inner and evaluating
    # The training step: autocast on, weights and activations channels_last.
    assert all(autocast and w_cl and x_cl for _, _, autocast, w_cl, x_cl in steps)
    assert any(autocast for _, _, autocast, _, _ in inner)   # TRADES' inner maximisation
    # Evaluation: channels_last, full precision.
    assert all(w_cl and not autocast for _, _, autocast, w_cl, _ in evaluating)
    # The final checkpoint loads back (weights_only) and predicts on the CPU.
    model = pipeline.load_model(res.checkpoint, "cpu")
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)


def test_fp16_scaler_state_is_checkpointed_and_resumed(tmp_path: Path,
                                                      cnn_spec: CnnSpec) -> None:
    spec = cnn_spec(device="cuda", amp="fp16", channels_last=True, pretrain_epochs=2)
    run = spec.runs()[0]
    device = torch.device("cuda")
    stage_dir = pipeline.pretrain_dir(tmp_path, run)

    epochs: list[int] = []

    def emit(event: Event) -> None:
        if isinstance(event, EpochEvent):
            epochs.append(event.epoch)

    calls = {"n": 0}

    def cancel_in_epoch_2() -> bool:
        calls["n"] += 1
        return len(epochs) == 1 and calls["n"] > 3

    with pytest.raises(Cancelled):
        pipeline.pretrain(spec, run, [run.key], tmp_path, emit=emit,
                          should_cancel=cancel_in_epoch_2, device=device)
    state = torch.load(stage_dir / "epoch_0001.pt", weights_only=True)
    assert state["scaler"]["scale"] > 0            # the GradScaler's state is saved
    pipeline.pretrain(spec, run, [run.key], tmp_path, emit=emit, device=device)
    assert epochs == [1, 2]
    assert DeviceOptions.of(spec, device).scaler().is_enabled()
