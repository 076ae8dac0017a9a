"""The datasets a run reads: :class:`ImageArrayDataset` (uint8 images in memory, scaled to [0, 1]
per item, optional augmentation) and :func:`load_data`, the (train, test) pair of a spec."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from tscnc.data.catalog import DATASETS, EMBEDDED
from tscnc.data.locate import check_dataset, maybe_download, where_is
from tscnc.data.readers import EMBEDDED_SPLITS, load_cifar, load_mnist_like, load_svhn
from tscnc.errors import DatasetError
from tscnc.spec import DatasetName, DatasetSpec


class ImageArrayDataset(Dataset[tuple[Tensor, int]]):
    """Images held in memory as one uint8 tensor.

    Args:
        images: (N, C, H, W) uint8 tensor of raw pixel values.
        targets: (N,) int64 tensor of class indices.
        max_value: the value that maps to 1.0 (255 for 8-bit images, 16 for digits).
        transform: optional augmentation applied to the uint8 (C, H, W) image.

    ``dataset[i]`` is ``(x, y)`` with ``x`` float32 (C, H, W) in [0, 1] and ``y`` an int.

    Example::

        >>> ds = ImageArrayDataset(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.tensor([0, 1]))
        >>> ds[1][0].shape, ds[1][1]
        (torch.Size([1, 8, 8]), 1)
    """

    def __init__(self, images: Tensor, targets: Tensor, max_value: float = 255.0,
                 transform: Callable[[Tensor], Tensor] | None = None) -> None:
        if images.dim() != 4 or images.dtype != torch.uint8:
            raise ValueError(f"images must be a (N, C, H, W) uint8 tensor, got "
                             f"{tuple(images.shape)} {images.dtype}")
        if targets.shape != (images.shape[0],):
            raise ValueError(f"targets must have shape ({images.shape[0]},), got {tuple(targets.shape)}")
        self.images = images
        self.targets = targets.long()
        self.max_value = float(max_value)
        self.transform = transform

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        img = self.images[index]
        if self.transform is not None:
            img = self.transform(img)
        return img.float().div_(self.max_value), int(self.targets[index])


def _train_transform(name: DatasetName, augment: bool) -> Callable[[Tensor], Tensor] | None:
    if not augment or name not in (DatasetName.cifar10, DatasetName.cifar100, DatasetName.svhn):
        return None
    # Imported here so that metadata users (tscnc.models) do not pay for torchvision.
    from torchvision.transforms import v2

    size = DATASETS[name].image_size
    steps: list[Any] = [v2.RandomCrop(size, padding=4)]
    if name != DatasetName.svhn:       # house numbers are not mirror-symmetric
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps)  # type: ignore[no-any-return]


def _arrays(spec: DatasetSpec, train: bool, roots: Sequence[Path | str] | None
            ) -> tuple[Tensor, Tensor, float]:
    """(images uint8 (N, C, H, W), labels int64 (N,), max pixel value) of one split."""
    name = spec.name
    if name in EMBEDDED:
        split, max_value = EMBEDDED_SPLITS[name]
        x, y = split()[0 if train else 1]
        # Copies: the split is cached, and callers may modify their tensors.
        return torch.from_numpy(x.copy()), torch.from_numpy(y.astype(np.int64)), max_value
    maybe_download(spec, roots)
    check_dataset(spec, roots)
    where = where_is(spec, roots)
    if name in (DatasetName.mnist, DatasetName.fashion_mnist):
        x_t, y_t = load_mnist_like(name, where, train)
    elif name in (DatasetName.cifar10, DatasetName.cifar100):
        x_t, y_t = load_cifar(name, where, train)
    else:
        x_t, y_t = load_svhn(where, train)
    n_classes = DATASETS[name].num_classes
    if y_t.numel() and (int(y_t.min()) < 0 or int(y_t.max()) >= n_classes):
        raise DatasetError(f"{DATASETS[name].title} in {where.show('.')} has labels outside "
                           f"0..{n_classes - 1} (found {int(y_t.min())}..{int(y_t.max())}): "
                           f"wrong dataset?")
    return x_t, y_t, 255.0


def load_data(spec: DatasetSpec, roots: Sequence[Path | str] | None = None
              ) -> tuple[ImageArrayDataset, ImageArrayDataset]:
    """The (train, test) datasets of ``spec``, with subsets and augmentation applied.

    ``train_subset``/``test_subset`` keep the first N examples of each split (after the fixed
    split of the embedded sets), the same N whatever the run seed. Augmentation is on the
    training split only. The result does not depend on any seed; shuffling belongs to
    :func:`~tscnc.data.loaders.train_loader`. File-backed datasets are read from the data roots
    (``roots``, default ``TSCNC_DATA_ROOTS``), downloaded first when ``spec.download`` and
    missing.

    Raises:
        DatasetError: missing or corrupt files (named relative to the data root).
    """
    out = []
    for train, subset in ((True, spec.train_subset), (False, spec.test_subset)):
        x, y, max_value = _arrays(spec, train, roots)
        if subset is not None:
            x, y = x[:subset], y[:subset]
        if x.shape[0] == 0:
            raise DatasetError(f"{DATASETS[spec.name].title} {'train' if train else 'test'} split "
                               f"is empty")
        tf = _train_transform(spec.name, spec.augment) if train else None
        out.append(ImageArrayDataset(x, y, max_value=max_value, transform=tf))
    return out[0], out[1]
