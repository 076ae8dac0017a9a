"""TSCNC core: robust and compact networks via the Transformed Sparse Constraint and the
Condition Number Constraint (arXiv:2503.20454).

Importing ``tscnc`` is light (no torch); the heavy modules load on first use::

    >>> import tscnc
    >>> model = tscnc.load_model("out/artifacts/runs/tscnc-s0.9-seed0/final.pt")  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import re
import subprocess
from pathlib import Path as _Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from pathlib import Path


def load_model(checkpoint: str | Path, device: Any = "cpu") -> Any:
    """Rebuild the (pruned) model saved in a run's final checkpoint (``weights_only=True``)."""
    from tscnc.pipeline import load_model as _load

    return _load(checkpoint, device)


def _git_revision() -> str | None:
    """``git rev-parse HEAD`` of the checkout this package is imported from, or None (not a git
    checkout, no git, or a checkout of some other project that merely contains the package)."""
    src = _Path(__file__).resolve().parent
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel", "HEAD"], cwd=src,
                             capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = top.stdout.split()
    if top.returncode != 0 or len(lines) != 2 or not re.fullmatch(r"[0-9a-f]{40}", lines[1]):
        return None
    if _Path(lines[0]).resolve() / "tscnc" != src:
        return None
    return lines[1]


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, str]:
    """Which build of tscnc this is: ``{"tscnc": __version__}`` plus ``"git"``, the revision of
    the source checkout when there is one. Recorded in every checkpoint and result; computed once
    per process.

    Example::

        >>> code_version()["tscnc"] == __version__
        True
    """
    out = {"tscnc": __version__}
    rev = _git_revision()
    if rev is not None:
        out["git"] = rev
    return out
