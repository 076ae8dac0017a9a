"""Where training runs and what the GPU options mean there (``training.device``, ``training.amp``,
``training.channels_last``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tscnc.errors import InvalidInput
from tscnc.spec import Amp, DeviceKind, SweepSpec


def resolve_device(kind: DeviceKind | str = DeviceKind.auto) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an input error."""
    kind = DeviceKind(kind)
    if kind == DeviceKind.cuda and not torch.cuda.is_available():
        raise InvalidInput("training.device is 'cuda' but no CUDA device is available")
    if kind == DeviceKind.cpu or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


@dataclass(frozen=True)
class DeviceOptions:
    """What ``training.amp`` and ``training.channels_last`` mean on a device.

    On CUDA, ``amp`` is the autocast dtype of the training step's forwards (``bf16``, or
    ``fp16`` whose loss is also scaled by a :class:`torch.amp.GradScaler`) and
    ``memory_format`` is ``channels_last`` for the model's 4-D weights and the 4-D batches. On
    any other device both are no-ops. The constraints are computed outside autocast (float32).
    Evaluation uses the memory format but never autocast: reported robust accuracies come from
    full-precision attack gradients whatever the training precision.

    Example::

        >>> DeviceOptions.of(preset("cifar10-vgg16"), torch.device("cpu"))
        DeviceOptions(amp=None, memory_format=torch.contiguous_format)
    """

    amp: torch.dtype | None = None
    memory_format: torch.memory_format = torch.contiguous_format

    @classmethod
    def of(cls, spec: SweepSpec, device: torch.device) -> DeviceOptions:
        if device.type != "cuda":
            return cls()
        amp = {Amp.bf16: torch.bfloat16, Amp.fp16: torch.float16}.get(spec.training.amp)
        fmt = torch.channels_last if spec.training.channels_last else torch.contiguous_format
        return cls(amp, fmt)

    def model(self, model: nn.Module) -> nn.Module:
        """Move ``model``'s 4-D parameters and buffers to the memory format (in place)."""
        if self.memory_format == torch.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=self.memory_format) if x.dim() == 4 else x

    def scaler(self) -> torch.amp.GradScaler:
        """The loss scaler of fp16 training (disabled, a pass-through, otherwise)."""
        return torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)
