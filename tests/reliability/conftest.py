"""Reliability tests (issue 6): make ``tests.*`` importable when pytest runs without
``python -m`` (the helpers live in tests/reliability/helpers.py)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
