"""What several route modules share: path and query parameter types, the error responses
every route documents, the 404 lookups of a sweep and a run, and the cancellation of runs."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import HTTPException, Query, status
from fastapi.exceptions import RequestValidationError

from backend.schemas import ErrorBody
from backend.store import RunRecord, Store, SweepRecord
from tscnc.records import RunStatus

__all__ = [
    "ERRORS",
    "SSE_ERRORS",
    "Cursor",
    "Limit",
    "RunId",
    "SweepId",
    "cancel_runs",
    "get_run_or_404",
    "get_sweep_or_404",
    "invalid",
]

log = logging.getLogger(__name__)

SweepId = Annotated[str, "sweep id"]
RunId = Annotated[str, "run id"]
Limit = Annotated[int, Query(ge=1, le=10_000, description="page size (capped by the server)")]
Cursor = Annotated[str | None, Query(pattern=r"^\d{1,20}$", description="`next` of the "
                                                                         "previous page")]

# The error answers every authenticated route may give (documented in OpenAPI).
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 404: {"model": ErrorBody},
    503: {"model": ErrorBody}}
# The event streams also answer 400 to a malformed Last-Event-ID / last_event_id.
SSE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "malformed Last-Event-ID"}, **ERRORS}


def invalid(loc: tuple[Any, ...], msg: str, typ: str = "value_error") -> RequestValidationError:
    """A 422 naming one field (``loc`` as in FastAPI's own validation errors)."""
    return RequestValidationError([{"loc": loc, "msg": msg, "type": typ}])


def get_sweep_or_404(store: Store, sweep_id: str) -> SweepRecord:
    sweep = store.get_sweep(sweep_id) if len(sweep_id) <= 64 else None
    if sweep is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no sweep {sweep_id!r}")
    return sweep


def get_run_or_404(store: Store, run_id: str) -> RunRecord:
    run = store.get_run(run_id) if len(run_id) <= 64 else None
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no run {run_id!r}")
    return run


def cancel_runs(store: Store, dispatcher: Any, run_ids: list[str]) -> tuple[list[str], list[str]]:
    """Queued runs: cancel flag + revoke + status cancelled (the only terminal status the API
    sets). Running runs: cancel flag only; the worker stops and confirms. Returns
    (cancelled, cancel_requested)."""
    cancelled, requested = [], []
    for run in store.get_runs(run_ids):
        if run.terminal:
            continue
        store.request_cancel(run.id)
        if run.status == RunStatus.queued:
            if run.task_id:
                try:
                    dispatcher.revoke(run.task_id)
                except Exception:
                    log.warning("could not revoke task %s of run %s", run.task_id, run.id,
                                exc_info=True)
            if store.set_status(run.id, RunStatus.cancelled, message="cancelled while queued",
                                expect={RunStatus.queued}):
                cancelled.append(run.id)
                continue
        requested.append(run.id)
    return cancelled, requested
