"""The store's records: the resources of :mod:`tscnc.resources` plus the fields only the store
keeps, and their decoding from Redis hashes (:func:`backend.store.codec.decode_hash`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from backend.store.codec import decode_hash
from backend.store.index import SORT_NUMERIC, SORT_RANKED
from tscnc.records import TERMINAL_STATUSES, RunStatus, Stage
from tscnc.resources import DashboardBase, RunBase, SweepBase, TokenBase, WorkerBase
from tscnc.spec import RunSpec, SweepSpec

_REC = ConfigDict(extra="ignore")


class RunRecord(RunBase):
    """A stored run (hash ``run:{id}``)."""

    model_config = _REC

    seq: int = 0
    offsets: dict[str, int] = Field(default_factory=dict)   # epochs done before each stage
    checkpoint: str | None = None
    # The training monitor's latest epoch (progress, not results).
    monitor_stage: Stage | None = None
    monitor_epoch: int | None = None
    monitor_clean_accuracy: float | None = None
    monitor_robust_accuracy: float | None = None
    monitor_kappa_median: float | None = None
    monitor_sparsity: float | None = None

    @field_validator("progress", mode="before")
    @classmethod
    def _clamp(cls, v: Any) -> float:
        return min(1.0, max(0.0, float(v)))

    def run_spec(self) -> RunSpec:
        """The run as :class:`tscnc.spec.RunSpec` (what the pipeline and grouping take)."""
        return RunSpec(method=self.method, sparsity=self.sparsity, seed=self.seed,
                       params=self.params)


def decode_run(h: Mapping[str, str], cancel: bool = False) -> RunRecord | None:
    if not h or not h.get("id") or not h.get("sweep_id"):
        return None
    return decode_hash(RunRecord, h, cancel_requested=cancel)


class SweepRecord(SweepBase):
    """A stored sweep (hash ``sweep:{id}``); ``spec`` is the stored JSON, unparsed."""

    model_config = _REC

    seq: int = 0
    spec: dict[str, Any]
    enqueued: bool = False

    def sweep_spec(self) -> SweepSpec:
        return SweepSpec.model_validate(self.spec)


def decode_sweep(h: Mapping[str, str]) -> SweepRecord | None:
    return decode_hash(SweepRecord, h) if h and h.get("id") else None


class SweepSummary(BaseModel):
    """Counts of runs per status and mean progress of a sweep."""

    counts: dict[RunStatus, int]
    progress: float

    @classmethod
    def of(cls, runs: Iterable[tuple[RunStatus, float]]) -> SweepSummary:
        """The summary of runs given as (status, progress): an ended run counts as done (1), a
        queued one as not started (0), a running one by its progress."""
        counts = dict.fromkeys(RunStatus, 0)
        running = 0.0
        for status, progress in runs:
            counts[status] += 1
            running += progress if status == RunStatus.running else 0.0
        return cls.from_counts(counts, running)

    @classmethod
    def from_counts(cls, counts: Mapping[RunStatus, int], running_progress: float
                    ) -> SweepSummary:
        """The summary from the runs per status and the sum of the running runs' progress:
        progress = (ended runs + Σ running progress) / runs."""
        full = {s: int(counts.get(s, 0)) for s in RunStatus}
        n = sum(full.values())
        done = sum(full[s] for s in TERMINAL_STATUSES) + running_progress
        return cls(counts=full, progress=min(1.0, done / n) if n else 0.0)


class TokenRecord(TokenBase):
    """A stored token (hash ``token:{sha256(secret)}``)."""

    model_config = _REC

    seq: int = 0


def decode_token(h: Mapping[str, str]) -> TokenRecord | None:
    if not h or not h.get("id"):
        return None
    return decode_hash(TokenRecord, h, role=h.get("role") or "viewer")


class DashboardRecord(DashboardBase):
    """A stored dashboard (hash ``dashboard:{id}``; ``state_error`` says why its stored state
    could not be read, ``state`` is then ``{}``)."""

    model_config = _REC

    seq: int = 0


def decode_dashboard(h: Mapping[str, str]) -> DashboardRecord | None:
    """Decode a stored dashboard; never raises, whatever the hash holds (a damaged field is
    replaced by its default, a damaged state is reported in ``state_error``)."""
    if not h or not h.get("id"):
        return None

    def loads(field: str, default: Any, kind: type) -> tuple[Any, bool]:
        try:
            value = json.loads(h.get(field) or json.dumps(default))
        except (ValueError, RecursionError):
            return default, False
        return (value, True) if isinstance(value, kind) else (default, False)

    def number(field: str, kind: Callable[[str], Any]) -> Any:
        try:
            return kind(h.get(field) or "0")
        except (ValueError, OverflowError):
            return kind("0")

    state, ok = loads("state", {}, dict)
    sweep_ids, _ = loads("sweep_ids", [], list)
    return DashboardRecord(id=str(h["id"]), name=str(h.get("name", "")),
                           owner=str(h.get("owner", "")),
                           sweep_ids=[x for x in sweep_ids if isinstance(x, str)], state=state,
                           created=number("created", float), revoked=h.get("revoked") == "1",
                           seq=number("seq", int), allow_checkpoints=h.get("checkpoints") == "1",
                           state_error=None if ok else "the stored state is not a JSON object")


class WorkerRecord(WorkerBase):
    """A worker's heartbeat (hash ``worker:{name}``, expires)."""

    model_config = _REC

    queue: str | None = None
    # Datasets it can read: [{"name", "data_dir"}] (data_dir None: a data root itself).
    datasets: list[dict[str, str | None]] | None = None


def decode_worker(name: str, h: Mapping[str, str]) -> WorkerRecord:
    return decode_hash(WorkerRecord, h, name=h.get("name") or name,
                       memory_bytes=h.get("memory") or None)


# Run fields a listing can be ordered by (besides creation time).
RUN_SORT_FIELDS = frozenset({*SORT_NUMERIC, *SORT_RANKED, "key"})
