"""Request and response schemas of the REST API (one family per resource; pydantic only).

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
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tscnc.names import DisplayName
from tscnc.records import FailureCategory, MaybeInf, RunResult, RunStatus, Stage
from tscnc.spec import PRESETS, Method, ParamValue, SweepSpec
from tscnc.summary import (  # noqa: F401  (re-exported: the API's response models)
    Difference,
    GroupDifference,
    KappaGeo,
    MeanInterval,
    SummaryGroup,
    SummaryPublic,
)

T = TypeVar("T")



class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")


class Role(StrEnum):
    """API token roles (DESIGN §7): admin manages tokens and everything; member submits and
    manages its own sweeps; viewer only reads."""

    admin = "admin"
    member = "member"
    viewer = "viewer"


class SweepStatus(StrEnum):
    """Aggregate status of a sweep's runs (``summary`` adds the counts).

    ``queued``: every run queued; ``running``: some run running, or queued while others have
    ended; ``succeeded`` / ``failed`` / ``cancelled``: every run ended so; ``finished``: every
    run ended, not all the same way (e.g. 11 succeeded, 1 cancelled).
    """

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    finished = "finished"


class Page(_Schema, Generic[T]):
    """One page of a list. ``next`` is an opaque cursor (pass it as ``?cursor=``) or null."""

    items: list[T]
    total: int = Field(description="number of items matching the filters (all pages)")
    next: str | None = None


# ---- sweeps ---------------------------------------------------------------------------------

class SweepCreate(_Schema):
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


class RunMonitor(_Schema):
    """The training monitor's latest values (a cheap PGD on the monitor slice each epoch):
    progress, not results."""

    stage: Stage | None = None
    epoch: int | None = None
    clean_accuracy: float | None = None
    robust_accuracy: float | None = None
    kappa_median: MaybeInf | None = None
    sparsity: float | None = Field(default=None, description="fraction of weights pruned now")


class RunPublic(_Schema):
    """One run: a (method, sparsity, seed) point of a sweep, with its live state."""

    id: str
    sweep_id: str
    key: str = Field(description="readable name, e.g. tscnc-s0.9-seed0 (unique in a sweep)")
    sweep_name: str = ""
    dataset: str = ""
    model: str = ""
    method: Method
    sparsity: float
    seed: int
    params: dict[str, ParamValue] = Field(
        default_factory=dict, description="the run's grid values by dotted spec path, e.g. "
                                          '{"constraints.lambda_cnc": 0.1}; {} without a grid')
    status: RunStatus
    stage: Stage | None = None
    epoch: int | None = Field(default=None, description="last epoch reported in `stage`")
    progress: float = Field(ge=0.0, le=1.0, description="fraction of the whole run done")
    total_epochs: int
    category: FailureCategory | None = None
    message: str | None = None
    created: float
    started: float | None = None
    finished: float | None = None
    worker: str | None = None
    device: str | None = None
    attempts: int = 0
    task_id: str | None = None
    cancel_requested: bool = False
    owner: str = Field(description="id of the token that submitted the sweep")
    # Results: null until the run is evaluated (has_result); live values are in `monitor`.
    clean_accuracy: float | None = Field(default=None, description="final; null until evaluated")
    robust_accuracy: float | None = Field(
        default=None, description="final: the lowest accuracy over the attacks; null until "
                                  "evaluated")
    kappa_median: MaybeInf | None = None
    sparsity_actual: float | None = None
    monitor: RunMonitor | None = Field(
        default=None, description="latest training-monitor values (not results); null before "
                                  "the first epoch")
    has_result: bool = False
    has_checkpoint: bool = False
    notes: str = Field(default="", description="free text its owner wrote (PATCH to change)")
    tags: list[str] = Field(default_factory=list)


class SweepPublic(_Schema):
    """A sweep as listed: its spec and a summary of its runs."""

    id: str
    name: str
    preset: str | None = None
    owner: str = Field(description="id of the token that submitted it")
    owner_name: str
    created: float
    status: SweepStatus
    summary: str = Field(description="the status and the runs per status, e.g. "
                                     "'finished · 11 succeeded · 1 cancelled'")
    counts: dict[RunStatus, int] = Field(description="number of runs per status")
    progress: float = Field(ge=0.0, le=1.0, description="mean progress of its runs")
    run_ids: list[str]
    spec: SweepSpec
    notes: str = Field(default="", description="free text its owner wrote (PATCH to change)")
    tags: list[str] = Field(default_factory=list)


class SweepDetail(SweepPublic):
    """``GET /api/v1/sweeps/{id}``: the sweep and all its runs."""

    runs: list[RunPublic]


class ResultPublic(RunResult):
    """A run's final result (:class:`tscnc.records.RunResult`) plus the service's run id."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")
    run_id: str


class SweepResults(_Schema):
    """``GET /api/v1/sweeps/{id}/results``: results of the runs that have one."""

    sweep_id: str
    items: list[ResultPublic]
    missing: list[str] = Field(description="run ids without a result yet")


# ---- seed statistics (DESIGN §3.5) ------------------------------------------------------------
# The summary's models are defined once, torch-free, in tscnc.summary (the client and the CLI's
# report use them too): SummaryPublic, SummaryGroup, MeanInterval, KappaGeo, Difference,
# GroupDifference.


# ---- events ---------------------------------------------------------------------------------

class EventEnvelope(_Schema):
    """One stream entry: the stream id (the SSE id), the run id and the event
    (a :data:`tscnc.records.Event` as JSON; ``type`` tells which; its ``run`` is the run id)."""

    id: str
    run_id: str
    event: dict[str, Any]


class EventPage(_Schema):
    """A page of past events, oldest first; pass ``next`` as ``?after=`` for the next page."""

    items: list[EventEnvelope]
    next: str | None = None


# ---- actions --------------------------------------------------------------------------------

class SweepCancelled(_Schema):
    """``POST /api/v1/sweeps/{id}/cancel``: what happened to each unfinished run."""

    sweep_id: str
    cancelled: list[str] = Field(description="queued runs cancelled at once")
    cancel_requested: list[str] = Field(description="running runs asked to stop (the worker "
                                                    "confirms with status cancelled)")


# ---- queue / workers / health ---------------------------------------------------------------

class WorkerPublic(_Schema):
    name: str
    device: str
    run: str | None = Field(default=None, description="id of the run it is working on")
    last_seen: float
    memory_bytes: int | None = Field(
        default=None, description="memory its device offers a run (RAM, or the GPU's memory)")


class DatasetAvailability(_Schema):
    """One dataset and whether the online workers can read it."""

    name: str
    workers: int = Field(description="online workers that can read it")
    data_dirs: list[str | None] = Field(
        description="dataset.data_dir values under which workers find it (null: a data root "
                    "itself)")


class DatasetsPublic(_Schema):
    """``GET /api/v1/datasets``: what a sweep can train on now, and how to add a dataset."""

    workers: int = Field(description="online workers that reported their datasets")
    datasets: list[DatasetAvailability]
    how_to_add: str


class QueuePublic(_Schema):
    queues: dict[str, int] = Field(description="messages waiting per Celery queue (gpu, cpu)")
    workers: list[WorkerPublic]
    runs: dict[RunStatus, int] = Field(description="number of runs per status, all sweeps")


class Health(_Schema):
    status: str = Field(description='"ok" or "unavailable"')
    redis: str = Field(description='"ok" or "down"')
    version: str


# ---- presets --------------------------------------------------------------------------------

class PresetPublic(_Schema):
    name: str
    description: str
    spec: SweepSpec


# ---- tokens and identity --------------------------------------------------------------------

class TokenCreate(_Schema):
    name: DisplayName = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.@ -]+$",
                              description="who or what holds it, e.g. alice or ci")
    role: Role = Role.member
    # Strict: JSON true is not one second (lax mode would coerce it).
    expires_in: float | None = Field(default=None, gt=0, le=10 * 365 * 86400, strict=True,
                                     description="lifetime in seconds; null = never expires")


class TokenPublic(_Schema):
    """A token as listed: never the secret (only its sha256 is stored)."""

    id: str
    name: str
    role: Role
    created: float
    expires: float | None = None
    revoked: bool = False


class TokenCreated(TokenPublic):
    token: str = Field(description="the secret; shown once, store it now")


class Me(_Schema):
    """Who the presented credential is: an API token, or a dashboard share link."""

    kind: str = Field(description='"token" or "share"')
    id: str
    name: str
    role: Role
    sweeps: list[str] | None = Field(default=None,
                                     description="share links: the sweeps they can read")


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


class DashboardCreate(_Schema):
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


class DashboardPublic(_Schema):
    id: str
    name: str
    owner: str
    sweep_ids: list[str]
    state: dict[str, Any]
    state_error: str | None = Field(
        default=None, description="why the stored state cannot be shown (it is then {}); "
                                  "null for a sound record")
    allow_checkpoints: bool = Field(default=False,
                                    description="the share link may download checkpoints")
    created: float
    revoked: bool = False


class DashboardCreated(DashboardPublic):
    share_token: str = Field(description="read-only credential (>= 128 bits); shown once")
    share_url: str = Field(description="path of the read-only page, /share/{token}")


class SharedDashboard(_Schema):
    """``GET /api/v1/share/{token}``: the dashboard and its sweeps with their runs."""

    dashboard: DashboardPublic
    sweeps: list[SweepDetail]


# A tag: a short label, e.g. "baseline" or "paper:fig3" (letters, digits and . : + # / - _).
Tag = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[\w][\w.:+#/ -]*$")]


class AnnotationUpdate(_Schema):
    """Body of ``PATCH /sweeps/{id}`` and ``PATCH /runs/{id}``: the new notes and/or tags
    (a field left out is unchanged; ``[]`` / ``""`` clear it). Duplicate tags are dropped."""

    notes: str | None = Field(default=None, max_length=5000)
    tags: list[Tag] | None = Field(default=None, max_length=20)

    @field_validator("tags")
    @classmethod
    def _unique(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else list(dict.fromkeys(t.strip() for t in v))


class RetryRequest(_Schema):
    """Body of ``POST /runs/{id}/retry`` (optional). ``fresh``: discard the run's checkpoints
    that another tscnc build wrote (or that predate the stage they were trained from) and train
    those stages again, instead of resuming from them with a warning."""

    fresh: bool = False


class ErrorBody(_Schema):
    """Error answers: ``detail`` is a message, or for 422 a list of
    ``{"loc": [...], "msg": ..., "type": ...}`` naming each bad field."""

    detail: Any
