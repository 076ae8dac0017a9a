"""Request and response schemas of the REST API (one family per resource; pydantic only).

The resources themselves (a run, a sweep, a token, a dashboard, ...) are defined once,
torch-free, in :mod:`tscnc.resources` (the store's records and the Python client share them);
this module re-exports them with the request bodies, which only the API reads.

Conventions (documented in ``docs/api.md``):

* timestamps are Unix seconds (float, UTC), like the ``time`` field of events;
* κ and other values that may be infinite travel as the string ``"Infinity"`` (the same
  convention as :mod:`tscnc.records`);
* every list answers :class:`Page` ``{"items": [...], "total": n, "next": cursor-or-null}``;
  pass ``next`` back as ``?cursor=`` to get the following page;
* closed vocabularies are enums (:class:`tscnc.spec.Method`, :class:`tscnc.records.RunStatus`,
  :class:`Role`, ...) parsed at the boundary, so an unknown value is a 422 naming the field.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, field_validator

from tscnc.names import DisplayName
from tscnc.resources import (  # noqa: F401  (re-exported: the API's response models)
    ApiModel,
    DashboardCreated,
    DashboardPublic,
    DatasetAvailability,
    DatasetsPublic,
    EventEnvelope,
    EventPage,
    Health,
    Me,
    Page,
    PresetPublic,
    QueuePublic,
    ResultPublic,
    Role,
    RunMonitor,
    RunPublic,
    SharedDashboard,
    SweepCancelled,
    SweepDetail,
    SweepPublic,
    SweepResults,
    SweepStatus,
    TokenCreated,
    TokenPublic,
    WorkerPublic,
)
from tscnc.spec import PRESETS
from tscnc.summary import (  # noqa: F401  (re-exported: the API's response models)
    Difference,
    GroupDifference,
    KappaGeo,
    MeanInterval,
    SummaryGroup,
    SummaryPublic,
)

# ---- sweeps ---------------------------------------------------------------------------------

class SweepCreate(ApiModel):
    """Body of ``POST /api/v1/sweeps``.

    The resolved spec is ``preset`` (or the defaults of :class:`SweepSpec` when no preset is
    given) deep-merged with ``spec`` (a partial or full SweepSpec; objects merge key by key,
    lists and scalars replace). Validation errors name the field under ``body.spec``, e.g.
    ``["body", "spec", "sparsities", 0]``. Send an ``Idempotency-Key`` header to make a
    retried POST return the same sweep (status 200 instead of 201).
    """

    # The schema lists the preset names (a client's validator then knows them); an unknown one
    # still gets the server's 422 listing them.
    preset: str | None = Field(default=None, max_length=100,
                               description="name from GET /api/v1/presets, e.g. digits-quick",
                               json_schema_extra=lambda s: s.update(
                                   anyOf=[{"type": "string", "enum": list(PRESETS)},
                                          {"type": "null"}]))
    spec: dict[str, Any] = Field(
        default_factory=dict,
        description="partial or full SweepSpec (see components/schemas/SweepSpec) merged over "
                    "the preset",
    )


class RunSort(StrEnum):
    """Fields ``GET /api/v1/runs?sort=`` can order by (all matching runs, server side)."""

    sparsity = "sparsity"
    seed = "seed"
    progress = "progress"
    clean_accuracy = "clean_accuracy"
    robust_accuracy = "robust_accuracy"
    kappa_median = "kappa_median"
    sparsity_actual = "sparsity_actual"
    key = "key"
    method = "method"
    status = "status"


# ---- tokens and identity --------------------------------------------------------------------

class TokenCreate(ApiModel):
    name: DisplayName = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.@ -]+$",
                              description="who or what holds it, e.g. alice or ci")
    role: Role = Role.member
    # Strict: JSON true is not one second (lax mode would coerce it).
    expires_in: float | None = Field(default=None, gt=0, le=10 * 365 * 86400, strict=True,
                                     description="lifetime in seconds; null = never expires")


# ---- dashboards -----------------------------------------------------------------------------

MAX_STATE_BYTES = 64 * 1024
MAX_STATE_DEPTH = 16


def state_problem(state: Any) -> str | None:
    """Why a dashboard ``state`` cannot be stored or shown, else None.

    Depth counts nested containers (``{}`` is 1, ``{"a": [1]}`` is 2) and is measured without
    recursion, so a record nested thousands of levels deep is judged, not crashed on. Size is
    the UTF-8 length of its compact JSON. Example: ``state_problem({"a": {"b": 1}})`` is None.
    """
    if not isinstance(state, dict):
        return "state must be a JSON object"
    stack: list[tuple[Any, int]] = [(state, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_STATE_DEPTH:
            return f"state is nested deeper than {MAX_STATE_DEPTH} levels"
        children = value.values() if isinstance(value, dict) else value
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    try:
        size = len(json.dumps(state, allow_nan=False, separators=(",", ":")).encode())
    except (ValueError, TypeError):
        return "state must be plain JSON (finite numbers)"
    if size > MAX_STATE_BYTES:
        return f"state is larger than {MAX_STATE_BYTES} bytes of JSON"
    return None


class DashboardCreate(ApiModel):
    name: DisplayName = Field(min_length=1, max_length=200)
    sweep_ids: list[Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]] = Field(
        min_length=1, max_length=50, description="sweeps the share link may read")
    state: dict[str, Any] = Field(
        default_factory=dict,
        description=f"view state saved by the frontend (plain JSON, at most {MAX_STATE_BYTES} "
                    f"bytes and {MAX_STATE_DEPTH} levels deep)")
    allow_checkpoints: bool = Field(
        default=False, description="whether the share link may download the checkpoints of "
                                   "its runs (off unless the creator allows it)")

    @field_validator("state")
    @classmethod
    def _bounded_state(cls, v: dict[str, Any]) -> dict[str, Any]:
        problem = state_problem(v)
        if problem:
            raise ValueError(problem)
        return v


Tag = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[\w][\w.:+#/ -]*$")]


class AnnotationUpdate(ApiModel):
    """Body of ``PATCH /sweeps/{id}`` and ``PATCH /runs/{id}``: the new notes and/or tags
    (a field left out is unchanged; ``[]`` / ``""`` clear it). Duplicate tags are dropped."""

    notes: str | None = Field(default=None, max_length=5000)
    tags: list[Tag] | None = Field(default=None, max_length=20)

    @field_validator("tags")
    @classmethod
    def _unique(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else list(dict.fromkeys(t.strip() for t in v))


class RetryRequest(ApiModel):
    """Body of ``POST /runs/{id}/retry`` (optional). ``fresh``: discard the run's checkpoints
    that another tscnc build wrote (or that predate the stage they were trained from) and train
    those stages again, instead of resuming from them with a warning."""

    fresh: bool = False


class ErrorBody(ApiModel):
    """Error answers: ``detail`` is a message, or for 422 a list of
    ``{"loc": [...], "msg": ..., "type": ...}`` naming each bad field."""

    detail: Any
