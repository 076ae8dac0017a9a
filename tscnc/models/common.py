"""Pieces shared by every model: the fixed input normalisation and the builder signature."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from tscnc.data import DatasetInfo
from tscnc.spec import ModelSpec

# A builder turns a model spec and the input description into a model (see tscnc.models).
ModelBuilder = Callable[[ModelSpec, DatasetInfo], nn.Module]


class Normalize(nn.Module):
    """Fixed per-channel standardisation ``(x − mean) / std``; nothing in it is trainable.

    Models take inputs in [0, 1] and normalise inside, so attacks and ε live in pixel space.
    ``mean``/``std`` are buffers: they move with ``.to(device)`` and are saved in checkpoints.

    Shapes: (N, C, H, W) → (N, C, H, W).

    Example::

        >>> norm = Normalize((0.5,), (0.25,))
        >>> norm(torch.ones(1, 1, 2, 2)).flatten().tolist()
        [2.0, 2.0, 2.0, 2.0]
    """

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(f"need one positive std per mean, got mean={mean}, std={std}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"
