"""Runs: list/filter/paginate, get, cancel, retry, events (SSE or JSON), result, checkpoint."""

from __future__ import annotations

import builtins
import logging
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.responses import FileResponse

from backend import sse
from backend.deps import (
    AsyncStoreDep,
    DispatcherDep,
    PrincipalDep,
    SettingsDep,
    StoreDep,
    WriterDep,
)
from backend.routes.common import (
    ERRORS,
    SSE_ERRORS,
    Cursor,
    Limit,
    RunId,
    cancel_runs,
    get_run_or_404,
    invalid,
)
from backend.schemas import (
    EventEnvelope,
    EventPage,
    Page,
    ResultPublic,
    RetryRequest,
    RunPublic,
    RunSort,
)
from backend.settings import Settings
from backend.store import Store, search
from backend.store.index import IndexFilter
from backend.views import result_public, run_public
from tscnc.records import RunStatus
from tscnc.spec import Method

log = logging.getLogger(__name__)

router = APIRouter(prefix="/runs", tags=["runs"])

# The same pattern as Last-Event-ID: every part below 2**64, so each value the schema allows is
# one the server takes (a 20-digit part may not be).
StreamId = Annotated[str | None, Query(pattern=sse.LAST_EVENT_ID_PATTERN,
                                       description="a stream id (exclusive)")]


@router.get("", response_model=Page[RunPublic], responses=ERRORS)
def list_runs(
    p: PrincipalDep, store: StoreDep, settings: SettingsDep,
    sweep: Annotated[str | None, Query(max_length=64, description="sweep id")] = None,
    status_: Annotated[RunStatus | None, Query(alias="status")] = None,
    method: Method | None = None,
    order: Literal["desc", "asc"] = "desc",
    sort: Annotated[RunSort | None, Query(description="order by this field instead of "
                                                      "creation time")] = None,
    limit: Limit = 50, cursor: Cursor = None,
    q: search.Text = None, tag: search.TagQ = None, dataset: search.NameQ = None,
    model: search.NameQ = None, owner: search.OwnerQ = None,
    created_from: search.TimeQ = None, created_to: search.TimeQ = None,
    metric: search.MetricQ = None, min: search.BoundQ = None, max: search.BoundQ = None,
) -> Page[RunPublic]:
    """Runs matching every given filter, newest first (``order=asc``: oldest first), or ordered
    by ``sort`` (over all matching runs, not one page). ``q`` searches the run's key, its
    sweep's name and its notes; ``metric`` with ``min``/``max`` keeps evaluated runs in the
    range (e.g. ``metric=robust_accuracy&min=0.5``). A share link must name one of its
    sweeps."""
    if p.sweeps is not None:
        if sweep is None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "a share link must filter by sweep")
        p.require_sweep(sweep)
    f = search.Filters(q=q, tag=tag, dataset=dataset, model=model, owner=owner,
                       created_from=created_from, created_to=created_to, metric=metric,
                       min=min, max=max)
    f.check()
    size = builtins.min(limit, settings.max_page_size)
    args = dict(sweep_id=sweep, status=status_, method=method, desc=order == "desc",
                sort=sort.value if sort is not None else None)
    # Every filter, the free text too, is answered by the indexes (backend.store.index).
    args["where"] = IndexFilter(**f.model_dump(exclude={"q"}))
    runs, total, nxt = store.list_runs(limit=size, cursor=cursor, text=f.q or None,
                                       **args)  # type: ignore[arg-type]
    return Page[RunPublic](items=[run_public(r) for r in runs], total=total, next=nxt)


@router.get("/{run_id}", response_model=RunPublic, responses=ERRORS)
def get_run(run_id: RunId, p: PrincipalDep, store: StoreDep) -> RunPublic:
    run = get_run_or_404(store, run_id)
    p.require_sweep(run.sweep_id)
    return run_public(run)


@router.post("/{run_id}/cancel", response_model=RunPublic,
             responses={409: {"description": "the run has already finished"}, **ERRORS})
def cancel_run(run_id: RunId, p: WriterDep, store: StoreDep,
               dispatcher: DispatcherDep) -> RunPublic:
    """Queued: revoked and cancelled at once. Running: asked to stop (``cancel_requested``);
    the worker saves its checkpoint and confirms with status ``cancelled``."""
    run = get_run_or_404(store, run_id)
    p.require_owner(run.owner, "run")
    if run.terminal:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"run {run_id} has already finished ({run.status.value})")
    cancel_runs(store, dispatcher, [run_id])
    return run_public(get_run_or_404(store, run_id))


@router.post("/{run_id}/retry", response_model=RunPublic,
             responses={409: {"description": "only failed or cancelled runs can be retried"},
                        **ERRORS})
def retry_run(run_id: RunId, p: WriterDep, store: StoreDep,
              dispatcher: DispatcherDep, body: RetryRequest | None = None) -> RunPublic:
    """Queue a failed or cancelled run again (its events are kept; stages resume from their
    checkpoints). A checkpoint written by another tscnc build is resumed from with a warning
    event, or, with the body ``{"fresh": true}``, its stage and the later ones start over."""
    run = get_run_or_404(store, run_id)
    p.require_owner(run.owner, "run")
    if not store.retry_run(run_id):
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"run {run_id} is {run.status.value}; only failed or cancelled runs "
                            "can be retried")
    try:
        if body is not None and body.fresh:
            dispatcher.enqueue(run.sweep_id, [run_id], fresh=True)
        else:
            dispatcher.enqueue(run.sweep_id, [run_id])
    except Exception as e:
        log.exception("could not enqueue run %s", run_id)
        store.set_status(run_id, RunStatus.failed, category="error",
                         message=f"could not be queued: {type(e).__name__}: {e}")
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            f"run {run_id} could not be queued ({type(e).__name__}); "
                            "retry again later") from e
    return run_public(get_run_or_404(store, run_id))


@router.get("/{run_id}/events", response_class=Response,
            responses={200: {"model": EventPage, "content": {"text/event-stream": {}},
                             "description": "SSE stream, or with Accept: application/json a "
                                            "page of past events (EventPage)"},
                       204: {"description": "the run has finished; nothing after "
                                            "Last-Event-ID"},
                       **SSE_ERRORS})
async def run_events(
    run_id: RunId, request: Request, p: PrincipalDep, store: StoreDep, astore: AsyncStoreDep,
    settings: SettingsDep,
    last_event_id: sse.LastEventIdQuery = None,
    last_event_id_header: sse.LastEventIdHeader = None,
    after: StreamId = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="JSON page size")] = 100,
) -> Response:
    """Server-Sent Events of the run (history first, then live; ends after the final status),
    or with ``Accept: application/json`` a page of past events after ``after``."""
    accept = request.headers.get("accept", "")
    if "application/json" in accept and "text/event-stream" not in accept:
        if after is not None and not sse.valid_stream_id(after):
            raise invalid(("query", "after"), "not a stream id (each part < 2**64)")
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(_events_page, store, p, run_id, after, limit)
    state = await astore.run_state(run_id) if len(run_id) <= 64 else None
    if state is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no run {run_id!r}")
    p.require_sweep(state[1])
    start = sse.start_id(request, last_event_id)
    resp = await sse.run_events(request, astore, run_id, start, settings.sse_keepalive)
    return resp if resp is not None else Response(status_code=status.HTTP_204_NO_CONTENT)


def _events_page(store: Store, p: Any, run_id: str, after: str | None, limit: int) -> Response:
    run = get_run_or_404(store, run_id)
    p.require_sweep(run.sweep_id)
    import json

    entries = store.events(run_id, after, limit)
    page = EventPage(items=[EventEnvelope(id=e.id, run_id=e.run_id, event=json.loads(e.data))
                            for e in entries],
                     next=entries[-1].id if len(entries) == limit else None)
    return Response(page.model_dump_json(), media_type="application/json")


@router.get("/{run_id}/result", response_model=ResultPublic, responses=ERRORS)
def get_result(run_id: RunId, p: PrincipalDep, store: StoreDep) -> ResultPublic:
    run = get_run_or_404(store, run_id)
    p.require_sweep(run.sweep_id)
    result = store.get_result(run_id)
    if result is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"run {run_id} has no result yet ({run.status.value})")
    return result_public(run_id, result)


def checkpoint_path(settings: Settings, stored: str) -> Path | None:
    """The stored checkpoint path if it names a regular file inside the artifacts directory
    after resolving every symlink and ``..``; None otherwise (never builds a path from
    request input)."""
    root = settings.artifacts_dir.resolve()
    raw = Path(stored)
    candidates = [raw] if raw.is_absolute() else [Path.cwd() / raw, root / raw]
    for c in candidates:
        try:
            real = c.resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if real.is_relative_to(root) and real.is_file():
            return real
    return None


@router.get("/{run_id}/checkpoint", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}}}, **ERRORS})
def get_checkpoint(run_id: RunId, p: PrincipalDep, store: StoreDep,
                   settings: SettingsDep) -> FileResponse:
    """Download the run's latest checkpoint (a torch file; load it with
    ``torch.load(..., weights_only=True)``)."""
    run = get_run_or_404(store, run_id)
    p.require_sweep(run.sweep_id)
    p.require_checkpoints()
    if not run.checkpoint:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"run {run_id} has no checkpoint yet")
    path = checkpoint_path(settings, run.checkpoint)
    if path is None:
        log.warning("refused checkpoint path %r of run %s (missing or outside %s)",
                    run.checkpoint, run_id, settings.artifacts_dir)
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"the checkpoint of run {run_id} is not available")
    return FileResponse(path, media_type="application/octet-stream",
                        filename=f"{run.key or run_id}-{path.name}")
