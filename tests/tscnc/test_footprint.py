"""tscnc.footprint (torch-free) against the real torch models of every family (issue 14.6/14.7):
the prunable layer names in order, the parameter count exactly, and the activation estimate
against the tensors torch really saves for the backward pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tscnc import footprint as fp
from tscnc.data import DATASETS
from tscnc.layers import prunable_layers
from tscnc.models import build_model
from tscnc.spec import DatasetName, ModelName, ModelSpec

ROOT = Path(__file__).resolve().parents[2]

# Every family, on 8x8, 28x28 and 32x32 inputs where it accepts them (odd sizes included:
# 28 -> 14 -> 7 -> 3 -> 1 through the VGG pools, 7 -> 4 -> 2 through strided convs).
CASES = [
    (ModelSpec(name=ModelName.mlp, width=32), DatasetName.digits),
    (ModelSpec(name=ModelName.mlp, width=16), DatasetName.cifar100),
    (ModelSpec(name=ModelName.cnn, width=8), DatasetName.digits),
    (ModelSpec(name=ModelName.cnn, width=4), DatasetName.mnist),
    (ModelSpec(name=ModelName.vgg16_bn, width=8), DatasetName.cifar10),
    (ModelSpec(name=ModelName.vgg16_bn, width=4), DatasetName.fashion_mnist),
    (ModelSpec(name=ModelName.resnet18, width=8), DatasetName.cifar10),
    (ModelSpec(name=ModelName.resnet18, width=4), DatasetName.mnist),
    (ModelSpec(name=ModelName.wrn, depth=16, widen=2), DatasetName.cifar100),
    (ModelSpec(name=ModelName.wrn, depth=10, widen=1), DatasetName.svhn),
]


def saved_activation_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct tensors autograd saves for backward in one training forward pass,
    parameters and buffers excluded (each storage counted once)."""
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    own = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    return sum(n for ptr, n in saved.items() if ptr not in own)


@pytest.mark.parametrize(("model", "dataset"), CASES, ids=lambda c: getattr(c, "value", None)
                         or getattr(getattr(c, "name", None), "value", None))
def test_layer_names_and_sizes_match_the_torch_model(model: ModelSpec, dataset: DatasetName) -> None:
    torch.manual_seed(0)
    net = build_model(model, dataset)
    assert fp.prunable_layer_names(model, dataset) == [n for n, _ in prunable_layers(net)]
    assert fp.parameter_count(model, dataset) == sum(p.numel() for p in net.parameters())
    # Per example: the difference between two batch sizes (what does not grow with the batch,
    # such as the masked weights a layer saves, is part of the 5·P term instead).
    shape = fp.INPUT_SHAPE[dataset]
    measured = (saved_activation_bytes(net, torch.rand(16, *shape))
                - saved_activation_bytes(net, torch.rand(8, *shape))) / 8
    ratio = fp.BYTES_PER_VALUE * fp.activation_count(model, dataset) / measured
    assert 1.0 <= ratio <= 2.0, ratio  # never under, at most twice (documented accuracy)


def test_input_shapes_are_the_datasets() -> None:
    for name, info in DATASETS.items():
        assert fp.INPUT_SHAPE[name] == info.shape, name


def test_footprint_does_not_load_torch() -> None:
    out = subprocess.run([sys.executable, "-c", "import sys, tscnc.footprint; "
                          "print('torch' in sys.modules)"], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"
