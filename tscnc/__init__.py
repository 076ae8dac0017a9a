"""TSCNC core: robust and compact networks via the Transformed Sparse Constraint and the
Condition Number Constraint (arXiv:2503.20454).

Importing ``tscnc`` is light (no torch); the heavy modules load on first use::

    >>> import tscnc
    >>> model = tscnc.load_model("out/artifacts/runs/tscnc-s0.9-seed0/final.pt")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from pathlib import Path


def load_model(checkpoint: str | Path, device: Any = "cpu") -> Any:
    """Rebuild the (pruned) model saved in a run's final checkpoint (``weights_only=True``)."""
    from tscnc.pipeline import load_model as _load

    return _load(checkpoint, device)
