"""Search and filters of the sweeps and runs lists (free text, tag, dataset, model, method,
status, owner, creation date, a metric range): the query parameters and their checks.

Both lists answer every filter, the free text ``q`` too, from indexes maintained on write:
:mod:`backend.store.index` and :mod:`backend.store.sweepindex`, with the word index of
:mod:`backend.store.textindex`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query

from backend.store.index import IndexFilter

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


class Filters(IndexFilter):
    """The filters of a runs-list request (None: not filtered on): the indexes' and the free
    text ``q``."""

    q: str | None = None
    metric: RangeMetric | None = None

    def check(self) -> None:
        """Complete a range given without its metric: ``min``/``max`` alone bound the robust
        accuracy (the headline metric). Every combination the OpenAPI schema allows is a valid
        request (the conformance test holds the server to that): ``min`` above ``max`` is an
        empty range, not an error."""
        if (self.min is not None or self.max is not None) and self.metric is None:
            self.metric = "robust_accuracy"
