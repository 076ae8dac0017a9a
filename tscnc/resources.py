"""The service's resources, defined once: a run, a sweep, a token, a dashboard, a worker.

Torch-free and web-stack-free (pydantic only), so the three places that speak of these things
share one definition: the REST API answers with the ``*Public`` models (``backend.schemas``
re-exports them with the request bodies), the data layer's records extend the ``*Base`` models
with the fields only the store keeps (``backend.store.records``), and the Python client
(:mod:`tscnc.client`) returns the ``*Public`` models it reads.

Each family is built by inheritance, as in the FastAPI full-stack template, so a field is
written once::

    RunBase ──> RunPublic          (+ monitor, has_checkpoint: what the API shows)
            └─> store's RunRecord  (+ seq, offsets, checkpoint, monitor_*: what Redis keeps)

Conventions (``docs/api.md``): timestamps are Unix seconds (float, UTC); κ and other values
that may be infinite travel as the string ``"Infinity"``; every list answers :class:`Page`.

Example::

    >>> run = RunPublic(id="r1", sweep_id="s1", key="dense-s0-seed0", method="dense",
    ...                 sparsity=0.0, seed=0, status="queued", progress=0.0, total_epochs=3,
    ...                 created=0.0, owner="tok1")
    >>> run.terminal, run.status.value
    (False, 'queued')
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from tscnc.records import TERMINAL_STATUSES, FailureCategory, MaybeInf, RunResult, RunStatus, Stage
from tscnc.spec import Method, ParamValue, SweepSpec

__all__ = [
    "ApiModel", "DashboardBase", "DashboardCreated", "DashboardPublic", "DatasetAvailability",
    "DatasetsPublic", "EventEnvelope", "EventPage", "Health", "Me", "Page", "PresetPublic",
    "QueuePublic", "ResultPublic", "Role", "RunBase", "RunMonitor", "RunPublic", "SharedDashboard",
    "SweepBase", "SweepCancelled", "SweepDetail", "SweepPublic", "SweepResults", "SweepStatus",
    "TokenBase", "TokenCreated", "TokenPublic", "WorkerBase", "WorkerPublic",
]

T = TypeVar("T")

_BASE = ConfigDict(ser_json_inf_nan="strings")


class ApiModel(BaseModel):
    """A model of the API (an answer, or in ``backend.schemas`` a request body): unknown fields
    are refused (the OpenAPI schema says so), infinities travel as ``"Infinity"``."""

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


class Page(ApiModel, Generic[T]):
    """One page of a list. ``next`` is an opaque cursor (pass it as ``?cursor=``) or null."""

    items: list[T]
    total: int = Field(description="number of items matching the filters (all pages)")
    next: str | None = None


# ---- runs -----------------------------------------------------------------------------------

class RunBase(BaseModel):
    """The fields of a run that the API shows and the store keeps alike."""

    model_config = _BASE

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
    has_result: bool = False
    notes: str = Field(default="", description="free text its owner wrote (PATCH to change)")
    tags: list[str] = Field(default_factory=list)

    @property
    def terminal(self) -> bool:
        """The run has ended (succeeded, failed or cancelled)."""
        return self.status in TERMINAL_STATUSES


class RunMonitor(ApiModel):
    """The training monitor's latest values (a cheap PGD on the monitor slice each epoch):
    progress, not results."""

    stage: Stage | None = None
    epoch: int | None = None
    clean_accuracy: float | None = None
    robust_accuracy: float | None = None
    kappa_median: MaybeInf | None = None
    sparsity: float | None = Field(default=None, description="fraction of weights pruned now")


class RunPublic(RunBase, ApiModel):
    """One run: a (method, sparsity, seed) point of a sweep, with its live state."""

    monitor: RunMonitor | None = Field(
        default=None, description="latest training-monitor values (not results); null before "
                                  "the first epoch")
    has_checkpoint: bool = False


class ResultPublic(RunResult):
    """A run's final result (:class:`tscnc.records.RunResult`) plus the service's run id."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")
    run_id: str


# ---- sweeps ---------------------------------------------------------------------------------

class SweepBase(BaseModel):
    """The fields of a sweep that the API shows and the store keeps alike (the store keeps
    the spec as stored JSON, the API shows it parsed)."""

    model_config = _BASE

    id: str
    name: str
    preset: str | None = None
    owner: str = Field(description="id of the token that submitted it")
    owner_name: str
    created: float
    run_ids: list[str]
    notes: str = Field(default="", description="free text its owner wrote (PATCH to change)")
    tags: list[str] = Field(default_factory=list)


class SweepPublic(SweepBase, ApiModel):
    """A sweep as listed: its spec and a summary of its runs."""

    status: SweepStatus
    summary: str = Field(description="the status and the runs per status, e.g. "
                                     "'finished · 11 succeeded · 1 cancelled'")
    counts: dict[RunStatus, int] = Field(description="number of runs per status")
    progress: float = Field(ge=0.0, le=1.0, description="mean progress of its runs")
    spec: SweepSpec


class SweepDetail(SweepPublic):
    """``GET /api/v1/sweeps/{id}``: the sweep and all its runs."""

    runs: list[RunPublic]

    @property
    def finished(self) -> bool:
        """Every run has ended (what :meth:`tscnc.client.Client.wait` waits for)."""
        return bool(self.runs) and all(r.terminal for r in self.runs)


class SweepResults(ApiModel):
    """``GET /api/v1/sweeps/{id}/results``: results of the runs that have one."""

    sweep_id: str
    items: list[ResultPublic]
    missing: list[str] = Field(description="run ids without a result yet")


class SweepCancelled(ApiModel):
    """``POST /api/v1/sweeps/{id}/cancel``: what happened to each unfinished run."""

    sweep_id: str
    cancelled: list[str] = Field(description="queued runs cancelled at once")
    cancel_requested: list[str] = Field(description="running runs asked to stop (the worker "
                                                    "confirms with status cancelled)")


# ---- events ---------------------------------------------------------------------------------

class EventEnvelope(ApiModel):
    """One stream entry: the stream id (the SSE id), the run id and the event
    (a :data:`tscnc.records.Event` as JSON; ``type`` tells which; its ``run`` is the run id)."""

    id: str
    run_id: str
    event: dict[str, Any]


class EventPage(ApiModel):
    """A page of past events, oldest first; pass ``next`` as ``?after=`` for the next page."""

    items: list[EventEnvelope]
    next: str | None = None


# ---- queue / workers / health / presets -------------------------------------------------------

class WorkerBase(BaseModel):
    model_config = _BASE

    name: str
    device: str
    run: str | None = Field(default=None, description="id of the run it is working on")
    last_seen: float
    memory_bytes: int | None = Field(
        default=None, description="memory its device offers a run (RAM, or the GPU's memory)")


class WorkerPublic(WorkerBase, ApiModel):
    pass


class DatasetAvailability(ApiModel):
    """One dataset and whether the online workers can read it."""

    name: str
    workers: int = Field(description="online workers that can read it")
    data_dirs: list[str | None] = Field(
        description="dataset.data_dir values under which workers find it (null: a data root "
                    "itself)")


class DatasetsPublic(ApiModel):
    """``GET /api/v1/datasets``: what a sweep can train on now, and how to add a dataset."""

    workers: int = Field(description="online workers that reported their datasets")
    datasets: list[DatasetAvailability]
    how_to_add: str


class QueuePublic(ApiModel):
    queues: dict[str, int] = Field(description="messages waiting per Celery queue (gpu, cpu)")
    workers: list[WorkerPublic]
    runs: dict[RunStatus, int] = Field(description="number of runs per status, all sweeps")


class Health(ApiModel):
    status: str = Field(description='"ok" or "unavailable"')
    redis: str = Field(description='"ok" or "down"')
    version: str


class PresetPublic(ApiModel):
    name: str
    description: str
    spec: SweepSpec


# ---- tokens and identity --------------------------------------------------------------------

class TokenBase(BaseModel):
    """A token as the API shows it and the store keeps it: never the secret (only its sha256
    is stored)."""

    model_config = _BASE

    id: str
    name: str
    role: Role
    created: float
    expires: float | None = None
    revoked: bool = False

    def valid(self, now: float | None = None) -> bool:
        """Not revoked and not expired (at ``now``, default: the current time)."""
        now = time.time() if now is None else now
        return not self.revoked and (self.expires is None or self.expires > now)


class TokenPublic(TokenBase, ApiModel):
    """A token as listed: never the secret (only its sha256 is stored)."""


class TokenCreated(TokenPublic):
    token: str = Field(description="the secret; shown once, store it now")


class Me(ApiModel):
    """Who the presented credential is: an API token, or a dashboard share link."""

    kind: str = Field(description='"token" or "share"')
    id: str
    name: str
    role: Role
    sweeps: list[str] | None = Field(default=None,
                                     description="share links: the sweeps they can read")


# ---- dashboards -----------------------------------------------------------------------------

class DashboardBase(BaseModel):
    """A saved dashboard: sweeps, the view state and whether its share link may download
    checkpoints."""

    model_config = _BASE

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


class DashboardPublic(DashboardBase, ApiModel):
    pass


class DashboardCreated(DashboardPublic):
    share_token: str = Field(description="read-only credential (>= 128 bits); shown once")
    share_url: str = Field(description="path of the read-only page, /share/{token}")


class SharedDashboard(ApiModel):
    """``GET /api/v1/share/{token}``: the dashboard and its sweeps with their runs."""

    dashboard: DashboardPublic
    sweeps: list[SweepDetail]
