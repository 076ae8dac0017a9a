"""Search and filters of the sweeps and runs lists (free text, tag, dataset, model, method,
status, owner, creation date, a metric range): the query parameters and their checks.

The runs list answers every filter, the free text ``q`` too, from the indexes of
:mod:`backend.store.index` and :mod:`backend.store.textindex`. The sweeps list (far fewer
items) checks every filter record by record over a bounded scan of the newest
:data:`SCAN_LIMIT` sweeps, then pages the matches with an offset cursor.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Annotated, Literal, TypeVar

from fastapi import Query

from backend.store.index import IndexFilter
from backend.store.records import RunRecord, SweepRecord

SCAN_LIMIT = 10_000

# The run fields a metric range applies to (results only: null until a run is evaluated).
RangeMetric = Literal["clean_accuracy", "robust_accuracy", "kappa_median", "sparsity_actual"]

Text = Annotated[str | None, Query(max_length=200, description="free text, case-insensitive: "
                                                               "in the name (a run's key or its "
                                                               "sweep's name) or the notes")]
TagQ = Annotated[str | None, Query(max_length=40, description="has this tag")]
NameQ = Annotated[str | None, Query(max_length=64)]
OwnerQ = Annotated[str | None, Query(max_length=64, description="owner's token id")]
TimeQ = Annotated[float | None, Query(ge=0, description="creation time bound (Unix seconds)")]
MetricQ = Annotated[RangeMetric | None, Query(description="metric the min/max range applies to "
                                                          "(default robust_accuracy)")]
BoundQ = Annotated[float | None, Query(allow_inf_nan=False)]

T = TypeVar("T")


class Filters(IndexFilter):
    """The filters of a list request (None: not filtered on): those the indexes answer, plus
    the free text ``q`` checked record by record."""

    q: str | None = None
    metric: RangeMetric | None = None

    def active(self) -> bool:
        return any(v not in (None, "") for v in self.model_dump().values())

    def check(self) -> None:
        """Complete a range given without its metric: ``min``/``max`` alone bound the robust
        accuracy (the headline metric). Every combination the OpenAPI schema allows is a valid
        request (the conformance test holds the server to that): ``min`` above ``max`` is an
        empty range, not an error."""
        if (self.min is not None or self.max is not None) and self.metric is None:
            self.metric = "robust_accuracy"

    def _common(self, name: str, notes: str, tags: Sequence[str], owner: str,
                created: float) -> bool:
        if self.q and self.q.casefold() not in f"{name}\n{notes}".casefold():
            return False
        if self.tag and self.tag not in tags:
            return False
        if self.owner and owner != self.owner:
            return False
        if self.created_from is not None and created < self.created_from:
            return False
        return not (self.created_to is not None and created > self.created_to)

    def run(self, r: RunRecord) -> bool:
        """Does run ``r`` pass? (Its metric must be known, i.e. evaluated, for a range.)"""
        if not self._common(f"{r.key}\n{r.sweep_name}", r.notes, r.tags, r.owner, r.created):
            return False
        if self.dataset and r.dataset != self.dataset:
            return False
        if self.model and r.model != self.model:
            return False
        if self.metric is not None:
            v = getattr(r, self.metric) if r.has_result else None
            if v is None or math.isnan(v):
                return False
            if self.min is not None and v < self.min:
                return False
            if self.max is not None and v > self.max:
                return False
        return True

    def sweep(self, s: SweepRecord, method: str | None = None) -> bool:
        """Does sweep ``s`` pass (``method``: one of its methods)?"""
        if not self._common(s.name, s.notes, s.tags, s.owner, s.created):
            return False
        spec = s.spec
        if self.dataset and spec.get("dataset", {}).get("name") != self.dataset:
            return False
        if self.model and spec.get("model", {}).get("name") != self.model:
            return False
        return not (method and method not in spec.get("methods", []))


def page_of(items: list[T], keep: Callable[[T], bool], limit: int,
            cursor: str | None) -> tuple[list[T], int, str | None]:
    """The matches of ``items`` (in their order) from offset ``cursor``: (page, total, next)."""
    matches = [x for x in items if keep(x)]
    start = int(cursor or 0)
    end = start + limit
    return matches[start:end], len(matches), str(end) if end < len(matches) else None
