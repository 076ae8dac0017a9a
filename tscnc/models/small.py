"""Small models for the embedded 8×8 digits (they also accept MNIST-sized inputs)."""

from __future__ import annotations

from torch import Tensor, nn

from tscnc.data import DatasetInfo
from tscnc.layers import PConv2d, PLinear
from tscnc.models.common import Normalize
from tscnc.spec import ModelSpec


class MLP(nn.Module):
    """Fully connected network: flatten → [Linear → ReLU] × ``hidden_layers`` → Linear.

    Shapes: (N, C, H, W) in [0, 1] → logits (N, num_classes); the first layer has
    C·H·W inputs (64 for digits).

    Example::

        >>> import torch
        >>> m = MLP(in_features=64, num_classes=10, width=32, mean=(0.3,), std=(0.4,))
        >>> m(torch.rand(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_features: int, num_classes: int, width: int,
                 mean: tuple[float, ...], std: tuple[float, ...], hidden_layers: int = 2) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        layers: list[nn.Module] = []
        fan_in = in_features
        for _ in range(hidden_layers):
            layers += [PLinear(fan_in, width), nn.ReLU(inplace=True)]
            fan_in = width
        layers.append(PLinear(fan_in, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(self.normalize(x).flatten(1))


class SmallCNN(nn.Module):
    """Four 3×3 convolutions (``w, w, 2w, 2w`` channels, one 2×2 max-pool) and two linear layers.

    No BatchNorm: the net is small enough to train without, and every layer's matrix is then
    the whole story for the condition-number metrics. An adaptive average pool to 2×2 makes it
    accept any input size ≥ 2×2 (8×8 digits, 28×28 MNIST).

    Shapes: (N, C, H, W) in [0, 1] → logits (N, num_classes).

    Example::

        >>> import torch
        >>> m = SmallCNN(in_channels=1, num_classes=10, width=8, mean=(0.3,), std=(0.4,))
        >>> m(torch.rand(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_channels: int, num_classes: int, width: int,
                 mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        w = width
        self.normalize = Normalize(mean, std)
        self.features = nn.Sequential(
            PConv2d(in_channels, w, 3, padding=1), nn.ReLU(inplace=True),
            PConv2d(w, w, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            PConv2d(w, 2 * w, 3, padding=1), nn.ReLU(inplace=True),
            PConv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(2),
        )
        self.classifier = nn.Sequential(
            PLinear(2 * w * 4, 2 * w), nn.ReLU(inplace=True),
            PLinear(2 * w, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(self.normalize(x)).flatten(1))


def mlp(spec: ModelSpec, info: DatasetInfo) -> nn.Module:
    """MLP with two hidden layers of ``spec.width`` units."""
    c, h, w = info.shape
    return MLP(c * h * w, info.num_classes, spec.width, info.mean, info.std)


def cnn(spec: ModelSpec, info: DatasetInfo) -> nn.Module:
    """:class:`SmallCNN` with base channel count ``spec.width``."""
    return SmallCNN(info.channels, info.num_classes, spec.width, info.mean, info.std)
