"""Models built from prunable layers, and the registry that names them.

Every linear and convolution layer is a :class:`~tscnc.layers.PLinear` or
:class:`~tscnc.layers.PConv2d`, so :func:`tscnc.layers.prunable_layers` shows constraints, masks
and metrics every layer through one interface; BatchNorm and the input normalisation are never
pruned. Models take images in [0, 1] and standardise them in a fixed first module
(:class:`Normalize`, mean/std from :data:`tscnc.data.DATASETS`), so attacks work in pixel space.

Registered names (:class:`tscnc.spec.ModelName`):

========== ================================================= ============================
name       network                                           knobs (:class:`ModelSpec`)
========== ================================================= ============================
mlp        2 hidden layers                                   ``width`` units per layer
cnn        4 convs + 2 linear (no BN)                        ``width`` base channels
vgg16_bn   HYDRA's CIFAR VGG-16-BN                           ``width`` (64 = paper)
resnet18   CIFAR ResNet-18                                   ``width`` (64 = standard)
wrn        WRN-d-k, pre-activation                           ``depth`` (6n+4), ``widen``
========== ================================================= ============================

Example::

    >>> from tscnc.spec import DatasetSpec, ModelSpec
    >>> model = build_model(ModelSpec(name="mlp", width=32), DatasetSpec(name="digits"))
    >>> [name for name, _ in prunable_layers(model)]
    ['layers.0', 'layers.2', 'layers.4']
"""

from __future__ import annotations

from torch import nn

from tscnc.data import DatasetInfo, dataset_info
from tscnc.layers import prunable_layers
from tscnc.models.cifar import VGG, ResNet18, WideResNet, resnet18, vgg16_bn, wrn
from tscnc.models.common import ModelBuilder, Normalize
from tscnc.models.small import MLP, SmallCNN, cnn, mlp
from tscnc.spec import DatasetName, DatasetSpec, ModelName, ModelSpec

__all__ = [
    "MLP",
    "MODELS",
    "VGG",
    "ModelBuilder",
    "Normalize",
    "ResNet18",
    "SmallCNN",
    "WideResNet",
    "build_model",
    "prunable_layers",
]

MODELS: dict[ModelName, ModelBuilder] = {
    ModelName.mlp: mlp,
    ModelName.cnn: cnn,
    ModelName.vgg16_bn: vgg16_bn,
    ModelName.resnet18: resnet18,
    ModelName.wrn: wrn,
}



def build_model(model: ModelSpec, dataset: DatasetSpec | DatasetName | DatasetInfo) -> nn.Module:
    """Build ``model`` for ``dataset``'s input shape, class count and channel statistics.

    Args:
        model: which network and its size knobs.
        dataset: a dataset spec or name (metadata from :data:`tscnc.data.DATASETS`), or a
            :class:`~tscnc.data.DatasetInfo` for a custom input.

    Returns:
        A freshly initialised ``nn.Module`` on the CPU mapping (N, C, H, W) images in [0, 1] to
        (N, num_classes) logits; move it with ``.to(device)``.
    """
    if isinstance(dataset, DatasetInfo):
        info = dataset
    else:
        info = dataset_info(dataset.name if isinstance(dataset, DatasetSpec) else dataset)
    return MODELS[model.name](model, info)
