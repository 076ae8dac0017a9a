"""Models: every registered network runs forward and backward, and exposes all its layers as
prunable ones; the input normalisation is fixed; sizes match the published architectures."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tscnc.data import DatasetInfo, dataset_info
from tscnc.layers import PConv2d, PLinear, prunable_layers
from tscnc.models import MODELS, Normalize, build_model
from tscnc.spec import DatasetName, DatasetSpec, ModelName, ModelSpec

# Small versions of every model (the spec allows these sizes), paired with a dataset they take.
SMALL = [
    (ModelSpec(name=ModelName.mlp, width=16), DatasetName.digits),
    (ModelSpec(name=ModelName.cnn, width=4), DatasetName.digits),
    (ModelSpec(name=ModelName.vgg16_bn, width=4), DatasetName.cifar10),
    (ModelSpec(name=ModelName.resnet18, width=4), DatasetName.cifar100),
    (ModelSpec(name=ModelName.wrn, depth=10, widen=1), DatasetName.svhn),
]


def test_registry_covers_every_model_name() -> None:
    assert set(MODELS) == set(ModelName)
    assert {spec.name for spec, _ in SMALL} == set(ModelName)


@pytest.mark.parametrize(("spec", "dataset"), SMALL, ids=[s.name.value for s, _ in SMALL])
def test_forward_backward_two_samples(spec: ModelSpec, dataset: DatasetName) -> None:
    torch.manual_seed(0)
    info = dataset_info(dataset)
    model = build_model(spec, DatasetSpec(name=dataset))
    model.train()
    x = torch.rand(2, *info.shape)
    y = torch.tensor([0, 1])
    logits = model(x)
    assert logits.shape == (2, info.num_classes)
    assert torch.isfinite(logits).all()
    nn.functional.cross_entropy(logits, y).backward()
    layers = prunable_layers(model)
    assert len(layers) >= 3
    for name, layer in layers:
        assert layer.weight.grad is not None, name
        assert layer.weight.grad.abs().sum() > 0, f"{name} gets no gradient"
    # Every linear/conv layer is prunable: nothing escapes the constraints and the masks.
    plain = [n for n, m in model.named_modules()
             if isinstance(m, nn.Linear | nn.Conv2d) and not isinstance(m, PLinear | PConv2d)]
    assert plain == []
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, info.num_classes)


@pytest.mark.parametrize("name", [ModelName.cnn, ModelName.vgg16_bn, ModelName.resnet18,
                                  ModelName.wrn])
def test_conv_models_take_mnist_sized_inputs(name: ModelName) -> None:
    spec = ModelSpec(name=name, width=4, depth=10, widen=1)
    model = build_model(spec, DatasetName.mnist).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_normalize_is_fixed_and_first() -> None:
    info = dataset_info(DatasetName.cifar10)
    model = build_model(ModelSpec(name=ModelName.resnet18, width=4), DatasetName.cifar10)
    first = next(iter(model.children()))
    assert isinstance(first, Normalize)
    assert list(first.parameters()) == []
    assert torch.allclose(first.mean.flatten(), torch.tensor(info.mean))
    assert torch.allclose(first.std.flatten(), torch.tensor(info.std))
    assert {"normalize.mean", "normalize.std"} <= set(model.state_dict())
    # (x - mean) / std, per channel
    x = torch.rand(2, 3, 4, 4)
    expected = (x - torch.tensor(info.mean).view(1, 3, 1, 1)) / torch.tensor(info.std).view(1, 3, 1, 1)
    assert torch.allclose(first(x), expected)


def test_normalize_rejects_bad_statistics() -> None:
    with pytest.raises(ValueError):
        Normalize((0.5, 0.5), (0.2,))
    with pytest.raises(ValueError):
        Normalize((0.5,), (0.0,))


def test_build_model_accepts_spec_name_or_info() -> None:
    spec = ModelSpec(name=ModelName.mlp, width=8)
    custom = DatasetInfo(DatasetName.cifar10, "custom", 3, 4, (0.5,) * 3, (0.25,) * 3)
    for ds in (DatasetSpec(name=DatasetName.digits), DatasetName.digits, "digits"):
        m = build_model(spec, ds)  # type: ignore[arg-type]
        assert m(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    m = build_model(spec, custom)
    assert m(torch.rand(2, 3, 4, 4)).shape == (2, 10)
    assert prunable_layers(m)[0][1].in_features == 3 * 4 * 4


def test_mlp_and_cnn_use_width() -> None:
    mlp = build_model(ModelSpec(name=ModelName.mlp, width=24), DatasetName.digits)
    shapes = [tuple(m.weight.shape) for _, m in prunable_layers(mlp)]
    assert shapes == [(24, 64), (24, 24), (10, 24)]
    cnn = build_model(ModelSpec(name=ModelName.cnn, width=6), DatasetName.digits)
    convs = [m.out_channels for _, m in prunable_layers(cnn) if isinstance(m, PConv2d)]
    assert convs == [6, 6, 12, 12]


def test_paper_sized_architectures() -> None:
    # CIFAR ResNet-18 has the well-known 11,173,962 parameters at width 64.
    r18 = build_model(ModelSpec(name=ModelName.resnet18), DatasetName.cifar10)
    assert sum(p.numel() for p in r18.parameters()) == 11_173_962
    # HYDRA's VGG-16-BN: 13 convs (bias-free, BN after each) and a 2048-256-256-10 classifier.
    vgg = build_model(ModelSpec(name=ModelName.vgg16_bn), DatasetName.cifar10)
    layers = [m for _, m in prunable_layers(vgg)]
    convs = [m for m in layers if isinstance(m, PConv2d)]
    linears = [m for m in layers if isinstance(m, PLinear)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 256,
                                               512, 512, 512, 512, 512, 512]
    assert all(c.bias is None for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in vgg.modules()) == 13
    assert [(m.in_features, m.out_features) for m in linears] == [(2048, 256), (256, 256), (256, 10)]
    # WRN-16-4 has 2.75M parameters (Zagoruyko & Komodakis report 2.7M).
    w164 = build_model(ModelSpec(name=ModelName.wrn, depth=16, widen=4), DatasetName.cifar10)
    assert sum(p.numel() for p in w164.parameters()) == 2_748_890


def test_wrn_rejects_bad_depth() -> None:
    from tscnc.models.cifar import WideResNet

    with pytest.raises(ValueError, match="6n\\+4"):
        WideResNet(3, 10, depth=12, widen=1, mean=(0.5,) * 3, std=(0.2,) * 3)

