"""CIFAR-style models: HYDRA's VGG-16-BN, ResNet-18 and Wide ResNets, built from prunable layers.

All three take 32×32 inputs by design and end in an adaptive average pool, so 28×28 MNIST-like
inputs (one channel) work too. Convolutions have no bias (a BatchNorm follows each one).
"""

from __future__ import annotations

from torch import Tensor, nn

from tscnc.data import DatasetInfo
from tscnc.layers import PConv2d, PLinear
from tscnc.models.common import Normalize
from tscnc.spec import ModelSpec

# ---- VGG-16-BN (HYDRA's CIFAR variant) -------------------------------------------------------

# 13 convolutions; no pool after the last block, so a 32×32 input leaves a 2×2 map
# (HYDRA's ``cfgs["16"]``).
VGG16_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                                    512, 512, 512, "M", 512, 512, 512)


class VGG(nn.Module):
    """VGG with BatchNorm, a 2×2 adaptive average pool and a three-layer classifier.

    As in HYDRA (Sehwag et al. 2020): convs 3×3 (no bias) → BN → ReLU; classifier
    ``Linear(512·4, 256) → ReLU → Linear(256, 256) → ReLU → Linear(256, classes)``. ``width``
    scales every channel count by ``width / 64`` (64 = the paper's network) and the classifier's
    hidden size to ``4·width``.

    Shapes: (N, C, 32, 32) in [0, 1] → logits (N, num_classes).

    Example::

        >>> import torch
        >>> m = VGG(in_channels=3, num_classes=10, width=8, mean=(0.5,) * 3, std=(0.25,) * 3)
        >>> m(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_channels: int, num_classes: int, width: int,
                 mean: tuple[float, ...], std: tuple[float, ...],
                 cfg: tuple[int | str, ...] = VGG16_CFG) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        layers: list[nn.Module] = []
        c_in = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            c_out = max(1, int(v) * width // 64)
            layers += [PConv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        hidden = 4 * width
        self.classifier = nn.Sequential(
            PLinear(c_in * 2 * 2, hidden), nn.ReLU(inplace=True),
            PLinear(hidden, hidden), nn.ReLU(inplace=True),
            PLinear(hidden, num_classes),
        )
        # HYDRA's initialisation (its ``initialize_weights``, kaiming_normal).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(self.normalize(x)))
        return self.classifier(x.flatten(1))


# ---- ResNet-18 (CIFAR variant) ----------------------------------------------------------------

class BasicBlock(nn.Module):
    """Two 3×3 conv–BN layers with an identity or 1×1 conv–BN shortcut (post-activation)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = PConv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = PConv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(PConv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR ResNet-18: a 3×3 stem (no max-pool), stages of [2, 2, 2, 2] basic blocks with
    ``w, 2w, 4w, 8w`` channels (w = ``width``, 64 in the standard network), global average pool
    and one linear layer.

    Shapes: (N, C, 32, 32) in [0, 1] → logits (N, num_classes).

    Example::

        >>> import torch
        >>> m = ResNet18(in_channels=3, num_classes=10, width=8, mean=(0.5,) * 3, std=(0.25,) * 3)
        >>> m(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_channels: int, num_classes: int, width: int,
                 mean: tuple[float, ...], std: tuple[float, ...],
                 blocks: tuple[int, ...] = (2, 2, 2, 2)) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.conv1 = PConv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        stages: list[nn.Module] = []
        c_in = width
        for i, n in enumerate(blocks):
            c_out = width * 2**i
            stage = [BasicBlock(c_in if j == 0 else c_out, c_out, (1 if i == 0 else 2) if j == 0 else 1)
                     for j in range(n)]
            stages.append(nn.Sequential(*stage))
            c_in = c_out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = PLinear(c_in, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(self.normalize(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


# ---- Wide ResNet (Zagoruyko & Komodakis; the variant used by TRADES) --------------------------

class WideBlock(nn.Module):
    """Pre-activation block: BN → ReLU → conv3×3 → BN → ReLU → conv3×3, plus a shortcut
    (a 1×1 conv of the activated input when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = PConv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = PConv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.equal = c_in == c_out and stride == 1
        self.shortcut = None if self.equal else PConv2d(c_in, c_out, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        a = self.relu(self.bn1(x))
        out = self.conv2(self.relu(self.bn2(self.conv1(a))))
        if self.shortcut is None:
            return x + out
        return self.shortcut(a) + out


class WideResNet(nn.Module):
    """WRN-``depth``-``widen``: depth = 6n + 4 (n blocks per stage), stages of ``16k, 32k, 64k``
    channels (k = ``widen``), a final BN–ReLU, global average pool and one linear layer.

    Shapes: (N, C, 32, 32) in [0, 1] → logits (N, num_classes).

    Example::

        >>> import torch
        >>> m = WideResNet(in_channels=3, num_classes=10, depth=10, widen=1,
        ...                mean=(0.5,) * 3, std=(0.25,) * 3)
        >>> m(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_channels: int, num_classes: int, depth: int, widen: int,
                 mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"wrn depth must be 6n+4 with n ≥ 1 (10, 16, 22, 28, 34), got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.normalize = Normalize(mean, std)
        self.conv1 = PConv2d(in_channels, widths[0], 3, padding=1, bias=False)
        stages: list[nn.Module] = []
        for i in range(3):
            blocks = [WideBlock(widths[i] if j == 0 else widths[i + 1], widths[i + 1],
                                (1 if i == 0 else 2) if j == 0 else 1) for j in range(n)]
            stages.append(nn.Sequential(*blocks))
        self.block1, self.block2, self.block3 = stages
        self.bn = nn.BatchNorm2d(widths[3])
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = PLinear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(self.normalize(x))
        x = self.block3(self.block2(self.block1(x)))
        x = self.relu(self.bn(x))
        return self.fc(self.avgpool(x).flatten(1))


# ---- builders ----------------------------------------------------------------------------------

def vgg16_bn(spec: ModelSpec, info: DatasetInfo) -> nn.Module:
    """HYDRA's CIFAR VGG-16-BN; ``spec.width`` = 64 gives the paper's network."""
    return VGG(info.channels, info.num_classes, spec.width, info.mean, info.std)


def resnet18(spec: ModelSpec, info: DatasetInfo) -> nn.Module:
    """CIFAR ResNet-18; ``spec.width`` = 64 gives the standard network."""
    return ResNet18(info.channels, info.num_classes, spec.width, info.mean, info.std)


def wrn(spec: ModelSpec, info: DatasetInfo) -> nn.Module:
    """WRN-``spec.depth``-``spec.widen`` (``spec.width`` is not used)."""
    return WideResNet(info.channels, info.num_classes, spec.depth, spec.widen, info.mean, info.std)
