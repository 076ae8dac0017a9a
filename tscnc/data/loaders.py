"""From datasets to batches: :func:`train_loader`, the one construction of a shuffled, seeded
training loader (the pipeline's stages and :func:`make_loaders` both use it), fixed evaluation
tensors (:func:`to_tensors`) and the loaders of a whole dataset (:func:`make_loaders`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from tscnc.data.datasets import ImageArrayDataset, load_data
from tscnc.spec import DatasetSpec


def to_tensors(dataset: Dataset[tuple[Tensor, int]], limit: int | None = None
               ) -> tuple[Tensor, Tensor]:
    """Stack the first ``limit`` examples (all when None) into ``x`` (N, C, H, W), ``y`` (N,).

    Used for fixed evaluation sets; for an augmented dataset each call draws new augmentations,
    so pass an unaugmented one (the test split).

    Example::

        >>> _, test = load_data(DatasetSpec(name="digits"))
        >>> x, y = to_tensors(test, limit=100)
        >>> tuple(x.shape), y.dtype
        ((100, 1, 8, 8), torch.int64)
    """
    n = len(dataset) if limit is None else min(limit, len(dataset))  # type: ignore[arg-type]
    if isinstance(dataset, ImageArrayDataset) and dataset.transform is None:
        # Fast path: one vectorised conversion instead of N item calls.
        return dataset.images[:n].float().div_(dataset.max_value), dataset.targets[:n].clone()
    items = [dataset[i] for i in range(n)]
    return (torch.stack([x for x, _ in items]),
            torch.tensor([int(y) for _, y in items], dtype=torch.long))


def train_loader(dataset: Dataset[Any], batch_size: int, seed: int, *, num_workers: int = 0,
                 pin_memory: bool = False, persistent_workers: bool = False) -> DataLoader[Any]:
    """Batches of ``dataset`` in an order drawn from ``seed``: the same seed, the same batches.

    A last batch of a single example breaks BatchNorm in training mode, so only that case drops
    the last batch.

    Example::

        >>> train, _ = load_data(DatasetSpec(name="digits"))
        >>> x, y = next(iter(train_loader(train, batch_size=64, seed=0)))
        >>> tuple(x.shape)
        (64, 1, 8, 8)
    """
    return DataLoader(dataset, batch_size=batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(seed),
                      drop_last=len(dataset) % batch_size == 1,  # type: ignore[arg-type]
                      num_workers=num_workers, pin_memory=pin_memory,
                      persistent_workers=persistent_workers)


class Loaders(NamedTuple):
    """Train (shuffled, augmented), test and monitor loaders of one dataset.

    ``monitor`` iterates the first ``monitor_examples`` test examples: a small fixed slice used
    for the per-epoch clean/robust accuracy curves. It is only watched, never used to select a
    model or a hyper-parameter, so taking it from the test split biases nothing.
    """

    train: DataLoader[tuple[Tensor, int]]
    test: DataLoader[tuple[Tensor, int]]
    monitor: DataLoader[tuple[Tensor, int]] | None


def make_loaders(spec: DatasetSpec, batch_size: int, seed: int, num_workers: int = 0,
                 monitor_examples: int = 200, pin_memory: bool = False,
                 eval_batch_size: int | None = None) -> Loaders:
    """Build the loaders of ``spec``.

    Args:
        spec: dataset spec (name, data_dir, subsets, augment).
        batch_size: training batch size.
        seed: seeds the training shuffle (and the workers' augmentation streams), so two runs
            with the same seed see the same batches.
        num_workers: DataLoader worker processes (0 = in the calling process).
        monitor_examples: size of the monitor slice (0 = no monitor loader).
        pin_memory: pin host memory (worth it when training on CUDA).
        eval_batch_size: batch size of the test/monitor loaders (default: 2 × batch_size).

    Example::

        >>> loaders = make_loaders(DatasetSpec(name="digits"), batch_size=64, seed=0)
        >>> x, y = next(iter(loaders.train))
        >>> tuple(x.shape), tuple(y.shape)
        ((64, 1, 8, 8), (64,))
    """
    train, test = load_data(spec)
    eval_bs = eval_batch_size or 2 * batch_size
    common: dict[str, Any] = {"num_workers": num_workers, "pin_memory": pin_memory,
                              "persistent_workers": num_workers > 0}
    train_batches = train_loader(train, batch_size, seed, **common)
    test_loader = DataLoader(test, batch_size=eval_bs, shuffle=False, **common)
    monitor = None
    if monitor_examples > 0:
        idx: Sequence[int] = range(min(monitor_examples, len(test)))
        monitor = DataLoader(Subset(test, idx), batch_size=eval_bs, shuffle=False,
                             num_workers=0, pin_memory=pin_memory)
    return Loaders(train_batches, test_loader, monitor)
