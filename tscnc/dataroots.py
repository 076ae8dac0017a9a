"""Where datasets may be read from: the operator-configured data roots (torch- and pydantic-free).

A service reads datasets only under its *data roots* (DESIGN §7), a list of directories set by
the operator in ``TSCNC_DATA_ROOTS`` (comma-separated; default ``data``, relative to the working
directory). A spec's ``dataset.data_dir`` is not a path on the machine but a dataset folder
*inside* a root: a name such as ``"cifar"`` or a relative path such as ``"team/mnist"``. It is
checked twice:

- by its form (:func:`check_data_dir`, at submit and wherever a spec is validated): no absolute
  path, no ``~``, no ``.``/``..`` component, no backslash, a short alphabet. The check never
  looks at the file system, so its verdict (and message) cannot reveal which paths exist;
- by where it leads (:func:`candidate_dirs`, by the worker before reading): ``root/data_dir`` is
  resolved (symlinks followed) and kept only if it is still inside the resolved root.

Example::

    >>> check_data_dir("team/mnist")
    'team/mnist'
    >>> check_data_dir("../etc")
    Traceback (most recent call last):
    ...
    ValueError: must be a dataset folder name or a relative path inside a data root ...
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tscnc.spec import DatasetName

__all__ = ["DATA_DIR_RULE", "DEFAULT_DATA_ROOTS", "ENV_VAR", "candidate_dirs", "check_data_dir",
           "data_roots", "dataset_folders", "holds_dataset", "parse_data_roots",
           "readable_datasets"]

ENV_VAR = "TSCNC_DATA_ROOTS"
DEFAULT_DATA_ROOTS: tuple[str, ...] = ("data",)

# One message for every rejected form: it must not depend on the file system.
DATA_DIR_RULE = ("must be a dataset folder name or a relative path inside a data root "
                 "(letters, digits, '.', '_', '-' and '/' between names; no absolute path, no '~', "
                 "no '.' or '..' component)")

_PART = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}"
_DATA_DIR = re.compile(rf"{_PART}(?:/{_PART}){{0,15}}")


def check_data_dir(value: str) -> str:
    """``value`` if it is a well-formed relative dataset folder, else ``ValueError(DATA_DIR_RULE)``.

    Accepted: ``"mnist"``, ``"team/cifar-10"``, ``"v1.2/svhn"``. Refused: ``"/data"``,
    ``"~/data"``, ``"../x"``, ``"a/../b"``, ``"a//b"``, ``"a/"``, ``"."``, ``"C:\\\\x"``.
    """
    parts = value.split("/")
    if not _DATA_DIR.fullmatch(value) or any(p in (".", "..") for p in parts):
        raise ValueError(DATA_DIR_RULE)
    return value


def parse_data_roots(value: str | Iterable[str | os.PathLike[str]] | None) -> tuple[Path, ...]:
    """The roots of a setting value: a comma-separated string, a JSON list or a list of paths.

    Empty entries are dropped; an empty result is an error (a service with no data root cannot
    read any dataset but the embedded ones, and should say so through ``data`` instead).

    Example::

        >>> parse_data_roots("data, /srv/datasets")
        (PosixPath('data'), PosixPath('/srv/datasets'))
    """
    if value is None:
        return tuple(Path(p) for p in DEFAULT_DATA_ROOTS)
    if isinstance(value, str):
        text = value.strip()
        items: list[str | os.PathLike[str]] = (
            list(json.loads(text)) if text.startswith("[") else list(text.split(",")))
    else:
        items = list(value)
    roots = tuple(Path(str(p).strip()) for p in items if str(p).strip())
    if not roots:
        raise ValueError(f"{ENV_VAR} names no directory (give one or more, comma-separated)")
    return roots


def data_roots(environ: Mapping[str, str] | None = None) -> tuple[Path, ...]:
    """The data roots of this process: ``TSCNC_DATA_ROOTS`` if set, else ``("data",)``."""
    env = os.environ if environ is None else environ
    return parse_data_roots(env.get(ENV_VAR))


def candidate_dirs(data_dir: str | None, roots: Iterable[Path]) -> list[Path]:
    """The directories ``data_dir`` may name, one per root, in root order.

    ``data_dir`` None means the root itself (the layout ``tscnc data download NAME --dir ROOT``
    creates). A candidate whose real path (symlinks resolved) leaves its real root is dropped, so
    a link inside a root cannot lead a reader elsewhere; ``data_dir`` is re-checked by form first
    (defence in depth: a worker does not trust that the API checked it).

    Raises:
        ValueError: ``data_dir`` is not of the accepted form (:data:`DATA_DIR_RULE`).
    """
    if data_dir is not None:
        check_data_dir(data_dir)
    out = []
    for root in roots:
        real_root = Path(root).expanduser().resolve()
        path = real_root if data_dir is None else (real_root / data_dir).resolve()
        if path == real_root or path.is_relative_to(real_root):
            out.append(path)
    return out


# ---- which datasets the roots hold (reads tscnc.data, and so torch, on first call) ----------

def dataset_folders(roots: Iterable[Path]) -> list[str | None]:
    """The ``dataset.data_dir`` values worth trying under ``roots``: None (a root itself), then
    the folders directly under each root (sorted per root, each name once); a root that cannot
    be listed adds none."""
    dirs: list[str | None] = [None]
    for root in roots:
        with contextlib.suppress(OSError):
            dirs += sorted(p.name for p in Path(root).iterdir() if p.is_dir())
    return list(dict.fromkeys(dirs))


def holds_dataset(name: DatasetName, data_dir: str | None, roots: Sequence[Path]) -> bool:
    """Whether one of ``roots`` holds every file of dataset ``name`` in ``data_dir`` (False for
    a folder name a spec cannot give)."""
    from tscnc.data import locate_dataset
    from tscnc.spec import DatasetSpec

    try:
        spec = DatasetSpec(name=name, data_dir=data_dir)
    except ValueError:
        return False
    return locate_dataset(spec, roots) is not None


def readable_datasets(roots: Sequence[Path] | None = None) -> list[dict[str, str | None]]:
    """The datasets readable here: embedded ones, and each one whose files are whole in one of
    the data roots (default: :func:`data_roots`) or in a folder directly under one (that
    folder's name is the ``data_dir`` to give). Names no machine path."""
    from tscnc.data import EMBEDDED
    from tscnc.spec import DatasetName

    roots = data_roots() if roots is None else tuple(roots)
    out: list[dict[str, str | None]] = []
    for name in DatasetName:
        if name in EMBEDDED:
            out.append({"name": name.value, "data_dir": None})
            continue
        out += [{"name": name.value, "data_dir": d} for d in dataset_folders(roots)
                if holds_dataset(name, d, roots)]
    return out
