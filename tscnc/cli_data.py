"""``tscnc data``: which datasets are present under which data root, and downloading them.

A *data root* is a directory datasets are read from (``TSCNC_DATA_ROOTS``, comma-separated;
default ``data``). ``tscnc data download NAME`` fetches a torchvision dataset into one with its
checksums verified (:mod:`tscnc.download`); ``tscnc data list`` shows, per dataset, where it was
found and the ``dataset.data_dir`` a spec should give for it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from tscnc.dataroots import (
    ENV_VAR,
    data_roots,
    dataset_folders,
    holds_dataset,
    parse_data_roots,
)
from tscnc.errors import DatasetError
from tscnc.spec import DatasetName

data_app = typer.Typer(no_args_is_help=True, add_completion=False,
                       help="Datasets: list what is present in the data roots, download more.")

RootOption = Annotated[list[Path] | None, typer.Option(
    "--data-root", help=f"a data root (repeatable; default: ${ENV_VAR}, else ./data)")]


def roots_from(option: list[Path] | None) -> tuple[Path, ...]:
    """The roots a command uses: ``--data-root`` values, else ``TSCNC_DATA_ROOTS``, else data."""
    return tuple(option) if option else data_roots()


def use_roots(option: list[Path] | None) -> None:
    """Make ``--data-root`` the roots of this process (what :mod:`tscnc.data` reads)."""
    if option:
        os.environ[ENV_VAR] = ",".join(str(p) for p in parse_data_roots(option))


def presence(roots: tuple[Path, ...]) -> list[tuple[str, str, str]]:
    """(dataset, where, data_dir) rows: every place under ``roots`` that holds a whole dataset.

    Looks in each root and in its immediate subfolders (a spec names those as ``data_dir``).
    Embedded datasets are listed once as ``embedded``; a dataset found nowhere as ``missing``.
    """
    from tscnc.data import EMBEDDED

    rows = []
    for name in DatasetName:
        if name in EMBEDDED:
            rows.append((name.value, "embedded (ships with an installed package)", "-"))
            continue
        found = [(name.value, str(root), data_dir or "(none: the root)")
                 for root in roots for data_dir in dataset_folders([root])
                 if holds_dataset(name, data_dir, [root])]
        rows.extend(found or [(name.value, "missing", f"tscnc data download {name.value}")])
    return rows


@data_app.command("list")
def list_datasets(data_root: RootOption = None) -> None:
    """Show which datasets are present under which data root (and the data_dir to use)."""
    roots = roots_from(data_root)
    typer.echo("data roots: " + ", ".join(f"{r}{'' if r.is_dir() else ' (absent)'}"
                                          for r in roots))
    rows = [("dataset", "root", "dataset.data_dir"), *presence(roots)]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@data_app.command("download")
def download_dataset(
    name: Annotated[str, typer.Argument(help="mnist, fashion_mnist, cifar10, cifar100 or svhn")],
    dir: Annotated[Path | None, typer.Option(
        "--dir", help=f"data root to download into (default: the first of ${ENV_VAR}, else "
                      "./data)")] = None,
) -> None:
    """Download a dataset with torchvision's downloaders, checksums verified, into a data root."""
    from tscnc.download import DOWNLOADABLE, download

    try:
        dataset = DatasetName(name)
    except ValueError:
        raise typer.BadParameter(f"unknown dataset {name!r}; downloadable: "
                                 f"{', '.join(d.value for d in DOWNLOADABLE)}",
                                 param_hint="NAME") from None
    root = dir if dir is not None else data_roots()[0]
    try:
        folder = download(dataset, root)
    except DatasetError as e:
        typer.echo(f"error: {e.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{dataset.value}: ready in {folder}")
    if dir is not None and Path(dir).resolve() not in {r.resolve() for r in data_roots()}:
        typer.echo(f"note: {dir} is not one of the data roots ({ENV_VAR}); add it there (or "
                   f"pass --data-root to `tscnc run`) so that runs can read it")


def register(app: typer.Typer) -> None:
    """Add the ``data`` group to the ``tscnc`` command line."""
    app.add_typer(data_app, name="data")
