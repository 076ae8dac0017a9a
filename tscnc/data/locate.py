"""Finding a file-backed dataset in the data roots (:mod:`tscnc.dataroots`), checking it cheaply
before a run, and downloading it when the spec asks to."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tscnc.data.catalog import (
    DATASETS,
    EMBEDDED,
    EXPECTED_FILES,
    Where,
    describe_expected,
    show_file,
)
from tscnc.data.readers import IDX_UBYTE, idx_path
from tscnc.dataroots import candidate_dirs, data_roots
from tscnc.errors import DatasetError
from tscnc.spec import DatasetName, DatasetSpec


def _expected_paths(name: DatasetName, folder: Path) -> list[Path]:
    mnist_like = name in (DatasetName.mnist, DatasetName.fashion_mnist)
    return [idx_path(folder, rel) if mnist_like else folder / rel
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


def where_is(spec: DatasetSpec, roots: Sequence[Path | str] | None) -> Where:
    """The located dataset folder, or DatasetError naming (relative) what is missing."""
    info = DATASETS[spec.name]
    found = locate_dataset(spec, roots)
    if found is not None:
        return Where(found, spec.data_dir)
    # The most complete candidate says what is missing; nothing here names a machine path.
    partial = [(len(_missing(spec.name, f)), f) for f in _candidates(spec, roots) if f.is_dir()]
    n_files = len(EXPECTED_FILES[spec.name][0]) + len(EXPECTED_FILES[spec.name][1])
    partial = [(n, f) for n, f in partial if n < n_files]
    if partial:
        folder = min(partial, key=lambda t: t[0])[1]
        missing = ", ".join(show_file(spec.data_dir, r) for r in _missing(spec.name, folder))
        raise DatasetError(f"{info.title} is incomplete in its data root: missing {missing}; "
                           f"{describe_expected(spec.name, spec.data_dir)}")
    where = f"data_dir {spec.data_dir!r}" if spec.data_dir else "any data root"
    raise DatasetError(f"{info.title} not found in {where}: "
                       f"{describe_expected(spec.name, spec.data_dir)}")


def maybe_download(spec: DatasetSpec, roots: Sequence[Path | str] | None) -> None:
    """``dataset.download: true``: fetch a missing dataset into the first data root."""
    if not spec.download or spec.name in EMBEDDED or locate_dataset(spec, roots) is not None:
        return
    from tscnc.download import download

    candidates = _candidates(spec, roots)
    if not candidates:
        raise DatasetError("dataset.data_dir leaves every data root; cannot download there")
    download(spec.name, candidates[0])


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
    where = where_is(spec, roots)
    if spec.name in (DatasetName.mnist, DatasetName.fashion_mnist):
        for rel, ndim in zip((*EXPECTED_FILES[spec.name][0], *EXPECTED_FILES[spec.name][1]),
                             (3, 1, 3, 1), strict=True):
            _check_idx_header(idx_path(where.path, rel), ndim, where)


def _check_idx_header(path: Path, ndim: int, where: Where) -> None:
    """Header of an uncompressed idx file agrees with its size (a cheap truncation check)."""
    if path.suffix == ".gz":
        return                          # checking would mean decompressing: left to the loader
    with open(path, "rb") as f:
        head = f.read(4 + 4 * ndim)
    name = where.show(path)
    if len(head) < 4 + 4 * ndim or head[:2] != b"\0\0" or head[2] != IDX_UBYTE or head[3] != ndim:
        raise DatasetError(f"{name} is not an unsigned-byte idx file with {ndim} dimension(s)")
    dims = [int.from_bytes(head[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = 4 + 4 * ndim + int(np.prod(dims))
    if path.stat().st_size != expected:
        raise DatasetError(f"{name} is corrupt: header says {dims} ({expected} bytes), the file "
                           f"has {path.stat().st_size} bytes")
