"""Download the torchvision datasets into a data root, with their checksums verified.

Sources and MD5s are torchvision's own (the class attributes of ``torchvision.datasets.MNIST``,
``FashionMNIST``, ``CIFAR10``, ``CIFAR100`` and ``SVHN``), fetched by torchvision's downloaders
(``torchvision.datasets.utils.download_url`` / ``download_and_extract_archive``, which verify the
MD5 of every file they fetch). The result is the layout
``torchvision.datasets.<X>(root=ROOT, download=True)`` creates, which :mod:`tscnc.data` reads.

The dataset classes themselves are not instantiated: their constructors load the data with a
plain ``pickle.load`` (CIFAR); here nothing is unpickled, and the extracted CIFAR batches are
checked against torchvision's per-file MD5s too.

Example (needs the internet)::

    >>> download("cifar10", Path("data"))                        # doctest: +SKIP
    PosixPath('data/cifar-10-batches-py')
"""

from __future__ import annotations

import logging
import urllib.error
from pathlib import Path
from typing import Any

from tscnc.errors import DatasetError
from tscnc.spec import DatasetName

__all__ = ["DOWNLOADABLE", "download"]

log = logging.getLogger(__name__)

# Dataset -> torchvision class name (the source of URLs and MD5s).
DOWNLOADABLE: dict[DatasetName, str] = {
    DatasetName.mnist: "MNIST",
    DatasetName.fashion_mnist: "FashionMNIST",
    DatasetName.cifar10: "CIFAR10",
    DatasetName.cifar100: "CIFAR100",
    DatasetName.svhn: "SVHN",
}

_FETCH_ERRORS = (urllib.error.URLError, OSError, RuntimeError, ValueError)


def _fail(name: DatasetName, what: str, err: BaseException) -> DatasetError:
    text = str(err).strip()
    if text == "File not found or corrupted.":       # torchvision's words for an MD5 mismatch
        text = "checksum (MD5) mismatch: the downloaded file is not the published one"
    return DatasetError(f"downloading {name.value} failed at {what}: {text}; the partial file "
                        f"was removed (try again, or download it by hand: `tscnc data list` "
                        f"shows the expected layout)")


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def _mnist_like(cls: Any, root: Path, name: DatasetName) -> Path:
    from torchvision.datasets.utils import download_and_extract_archive

    raw = root / cls.__name__ / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for filename, md5 in cls.resources:
        errors = []
        for mirror in cls.mirrors:
            try:
                download_and_extract_archive(f"{mirror}{filename}", download_root=str(raw),
                                             filename=filename, md5=md5)
                break
            except _FETCH_ERRORS as e:
                _remove(raw / filename)
                errors.append(f"{mirror}: {_fail(name, filename, e).message}")
        else:
            raise DatasetError(f"downloading {name.value} failed: no mirror served a valid "
                               f"{filename} ({'; '.join(errors)})")
    return raw.parent


def _cifar(cls: Any, root: Path, name: DatasetName) -> Path:
    from torchvision.datasets.utils import check_integrity, download_and_extract_archive

    try:
        download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)
    except _FETCH_ERRORS as e:
        _remove(root / cls.filename)
        raise _fail(name, cls.filename, e) from e
    folder = root / cls.base_folder
    bad = [f for f, md5 in (*cls.train_list, *cls.test_list)
           if not check_integrity(str(folder / f), md5)]
    if bad:
        raise DatasetError(f"downloading {name.value}: the archive's files {', '.join(bad)} do "
                           f"not match their published checksums")
    return folder


def _svhn(cls: Any, root: Path, name: DatasetName) -> Path:
    from torchvision.datasets.utils import download_url

    root.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        url, filename, md5 = cls.split_list[split]
        try:
            download_url(url, str(root), filename, md5)
        except _FETCH_ERRORS as e:
            _remove(root / filename)
            raise _fail(name, filename, e) from e
    return root


def download(name: DatasetName | str, root: Path) -> Path:
    """Fetch dataset ``name`` into ``root`` (a data root, or a folder inside one).

    Files already present with the right MD5 are not fetched again. Returns the dataset's folder.

    Raises:
        DatasetError: an embedded or unknown dataset, every source failing, or a checksum
            mismatch (the bad file is removed).
    """
    n = DatasetName(name)
    if n not in DOWNLOADABLE:
        raise DatasetError(f"{n.value} is embedded (it ships with an installed package); "
                           f"nothing to download. Downloadable: "
                           f"{', '.join(d.value for d in DOWNLOADABLE)}")
    import torchvision.datasets

    cls = getattr(torchvision.datasets, DOWNLOADABLE[n])
    root = Path(root)
    log.info("downloading %s into %s", n.value, root)
    if n in (DatasetName.mnist, DatasetName.fashion_mnist):
        return _mnist_like(cls, root, n)
    if n in (DatasetName.cifar10, DatasetName.cifar100):
        return _cifar(cls, root, n)
    return _svhn(cls, root, n)
