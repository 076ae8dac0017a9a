"""Fixtures for the deployment tests: one real service stack (private redis-server, a Celery
worker process, uvicorn) shared by the client and CLI tests of this directory, and the tiny
CNN sweep plus the forward probe of the GPU-option tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import nn

from tests.support.stack import Stack, service_stack, tiny_sweep
from tscnc.records import Event, StageStarted
from tscnc.spec import RunSpec, SweepSpec


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with service_stack(tmp_path_factory.mktemp("deploy-stack")) as s:
        yield s


def _small_sweep(name: str, **over: Any) -> dict[str, Any]:
    spec = tiny_sweep(name=name, methods=["dense", "hydra"], sparsities=[0.5],
                      training={"pretrain_epochs": 1, "prune_epochs": 1, "finetune_epochs": 1})
    for k, v in over.items():
        spec[k] = {**spec[k], **v} if isinstance(v, dict) and isinstance(spec.get(k), dict) else v
    return spec


@pytest.fixture(scope="session")
def small_sweep() -> Callable[..., dict[str, Any]]:
    """``small_sweep(name, **overrides)``: a spec of two runs (dense + hydra at 0.5) sharing
    one pretrain, one epoch per stage (seconds on one CPU thread)."""
    return _small_sweep


# ---- GPU options (test_device_options.py, test_gpu.py) ------------------------------------

def _cnn_spec(**training: Any) -> SweepSpec:
    return SweepSpec.model_validate({
        "dataset": {"name": "digits", "train_subset": 128},
        "model": {"name": "cnn", "width": 4},
        "training": {"pretrain_epochs": 1, "prune_epochs": 1, "finetune_epochs": 1,
                     "batch_size": 64, "monitor_examples": 16, **training},
        "adversarial": {"steps": 1},
        "evaluation": {"attacks": ["fgsm"], "examples": 20, "security_curve": [0.0, 1.0]},
        "methods": ["tscnc"], "sparsities": [0.5], "seeds": [0]})


class Probe:
    """Records, for every forward of the model's third convolution: the stage running (from
    the events), whether the module was in train mode, whether autocast was on, and whether
    weight and input were channels_last. (The first convolution has one input channel, for
    which channels_last and contiguous are the same layout; the third's input is the output
    of the second, whose weight is unambiguously channels_last.)"""

    def __init__(self) -> None:
        self.stage = "?"
        self.calls: list[tuple[str, bool, bool, bool, bool]] = []

    def emit(self, event: Event) -> None:
        if isinstance(event, StageStarted):
            self.stage = event.stage.value

    def attach(self, model: nn.Module) -> None:
        conv = [m for m in model.modules() if isinstance(m, nn.Conv2d)][2]

        def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0]
            cl = torch.channels_last
            w = module.weight
            self.calls.append((self.stage, module.training,
                               torch.is_autocast_enabled(x.device.type),
                               w.is_contiguous(memory_format=cl) and not w.is_contiguous(),
                               x.is_contiguous(memory_format=cl) and not x.is_contiguous()))

        conv.register_forward_pre_hook(hook)


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> Iterator[Probe]:
    """A :class:`Probe` attached to every model the pipeline builds; pass ``probe.emit`` as
    the pipeline's ``emit``."""
    p = Probe()
    from tscnc.pipeline import stages

    build = stages.build_run_model

    def build_and_attach(spec: SweepSpec, run: RunSpec, device: torch.device) -> nn.Module:
        model = build(spec, run, device)
        p.attach(model)
        return model

    monkeypatch.setattr(stages, "build_run_model", build_and_attach)
    yield p


@pytest.fixture(scope="session")
def cnn_spec() -> Callable[..., SweepSpec]:
    """``cnn_spec(**training)``: one tscnc run (prune 0.5) of a 4-channel CNN on digits, one
    epoch per stage, with ``training`` overrides (e.g. ``amp="bf16", channels_last=True``)."""
    return _cnn_spec
