"""Sweeps: submit, list, get, cancel, delete, results (JSON/CSV), events (SSE)."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from backend import sse
from backend.deps import (
    AsyncStoreDep,
    DispatcherDep,
    PrincipalDep,
    ReaderDep,
    SettingsDep,
    StoreDep,
    WriterDep,
)
from backend.routes.common import (
    ERRORS,
    SSE_ERRORS,
    Cursor,
    Limit,
    SweepId,
    cancel_runs,
    get_sweep_or_404,
    invalid,
)
from backend.schemas import (
    ErrorBody,
    Page,
    SweepCancelled,
    SweepCreate,
    SweepDetail,
    SweepPublic,
    SweepResults,
    SweepStatus,
)
from backend.settings import Settings
from backend.store import IdempotencyConflict, WorkerRecord, search
from backend.store.index import IndexFilter
from backend.views import result_public, results_csv, sweep_detail, sweep_public
from tscnc.dataroots import DATA_DIR_RULE, candidate_dirs
from tscnc.footprint import estimate
from tscnc.spec import PRESETS, Method, SweepSpec, resolve

log = logging.getLogger(__name__)

router = APIRouter(prefix="/sweeps", tags=["sweeps"])


def resolve_spec(body: SweepCreate, settings: Settings) -> SweepSpec:
    """Preset (or defaults) deep-merged with ``body.spec``, validated by :class:`SweepSpec`
    and the server's bounds; errors are 422 naming the field under ``body.spec``."""
    if body.preset is not None and body.preset not in PRESETS:
        raise invalid(("body", "preset"),
                      f"unknown preset {body.preset!r}; known: {', '.join(PRESETS)}")
    try:
        spec = resolve(body.preset, body.spec)
    except ValidationError as e:
        raise RequestValidationError([
            {"loc": ("body", "spec", *err["loc"]), "msg": err["msg"], "type": err["type"]}
            for err in e.errors(include_url=False, include_context=False, include_input=False)
        ]) from None
    errors: list[dict[str, Any]] = []
    t = spec.training
    for name in ("pretrain_epochs", "prune_epochs", "finetune_epochs"):
        if getattr(t, name) > settings.max_epochs_per_stage:
            errors.append({"loc": ("body", "spec", "training", name), "type": "less_than_equal",
                           "msg": f"at most {settings.max_epochs_per_stage} epochs per stage on "
                                  f"this server (TSCNC_MAX_EPOCHS_PER_STAGE)"})
        for i, v in enumerate(spec.grid.get(f"training.{name}", [])):
            if isinstance(v, int) and v > settings.max_epochs_per_stage:
                errors.append({"loc": ("body", "spec", "grid", f"training.{name}", i),
                               "type": "less_than_equal",
                               "msg": f"at most {settings.max_epochs_per_stage} epochs per stage "
                                      f"on this server (TSCNC_MAX_EPOCHS_PER_STAGE)"})
    # The form of data_dir was checked by the spec; a link inside a root must not lead out of it
    # either. Same message as for a bad form: nothing here tells which paths exist.
    if spec.dataset.data_dir is not None and not candidate_dirs(spec.dataset.data_dir,
                                                                settings.data_roots):
        errors.append({"loc": ("body", "spec", "dataset", "data_dir"), "type": "value_error",
                       "msg": f"Value error, {DATA_DIR_RULE}"})
    n = spec.run_count()
    if n > settings.max_runs_per_sweep:
        errors.append({"loc": ("body", "spec", "grid") if spec.grid else ("body", "spec"),
                       "type": "too_many_runs",
                       "msg": f"methods × sparsities × seeds{' × grid' if spec.grid else ''} "
                              f"expands to {n} runs; this server "
                              f"allows at most {settings.max_runs_per_sweep} per sweep "
                              f"(TSCNC_MAX_RUNS_PER_SWEEP)"})
    if errors:
        raise RequestValidationError(errors)
    return spec


def admit(spec: SweepSpec, settings: Settings, workers: list[WorkerRecord]) -> None:
    """Refuse (422 naming ``body.spec``, with the estimate) a sweep whose run would need more
    training memory than ``TSCNC_MAX_RUN_MEMORY_GIB`` or than every registered worker of the
    queue it would go to reports (:func:`tscnc.footprint.estimate`; without registered workers
    only the cap applies: the sweep waits for a worker)."""
    from worker.dispatch import choose_queue  # imported on first use, as the dispatcher is

    # The largest run of the grid (its model and batch size may be gridded).
    need = max((estimate(spec.with_params(c)) for c in spec.grid_combinations()),
               key=lambda e: e.memory_bytes) if spec.grid else estimate(spec)
    gib = 2**30
    problem = None
    if need.memory_bytes > settings.max_run_memory_gib * gib:
        problem = (f"over this server's limit of {settings.max_run_memory_gib:g} GiB per run "
                   "(TSCNC_MAX_RUN_MEMORY_GIB)")
    else:
        queue = choose_queue(spec, [w.model_dump() for w in workers])
        offers = [w.memory_bytes for w in workers if w.queue == queue and w.memory_bytes]
        if offers and max(offers) < need.memory_bytes:
            problem = (f"more than any registered {queue} worker offers (the largest: "
                       f"{max(offers) / gib:,.1f} GiB)")
    if problem:
        raise invalid(("body", "spec"),
                      f"a run of this sweep needs {need.describe()}, {problem}; lower "
                      "training.batch_size or the model's size", "too_much_memory")


@router.post("", status_code=status.HTTP_201_CREATED, response_model=SweepDetail,
             responses={200: {"model": SweepDetail,
                              "description": "the sweep created earlier with this "
                                             "Idempotency-Key"},
                        409: {"model": ErrorBody,
                              "description": "the Idempotency-Key was used for another spec"},
                        422: {"description": "invalid spec (loc names the field)"},
                        **ERRORS})
def create_sweep(
    body: SweepCreate, response: Response, p: WriterDep, store: StoreDep,
    settings: SettingsDep, dispatcher: DispatcherDep,
    idempotency_key: Annotated[str | None, Header(
        max_length=200, description="makes a retried POST return the same sweep")] = None,
) -> SweepDetail:
    """Submit a sweep: validate, store one queued run per (method, sparsity, seed), enqueue."""
    spec = resolve_spec(body, settings)
    admit(spec, settings, store.workers())
    try:
        sweep, created = store.create_sweep(spec, p.id, idempotency_key or None,
                                            owner_name=p.name, preset=body.preset,
                                            idempotency_ttl=settings.idempotency_ttl)
    except IdempotencyConflict as e:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"Idempotency-Key {idempotency_key!r} was used for sweep {e.sweep_id} with another "
            "spec; use a new key for a different sweep") from None
    if not created:
        response.status_code = status.HTTP_200_OK
    if created or not sweep.enqueued:
        try:
            dispatcher.enqueue(sweep.id, None)
        except Exception as e:
            log.exception("could not enqueue sweep %s", sweep.id)
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                f"sweep {sweep.id} was stored but could not be queued ({type(e).__name__}: "
                f"{e}); repeat the request with the same Idempotency-Key to queue it") from e
        store.mark_enqueued(sweep.id)
    return sweep_detail(sweep, store.sweep_runs(sweep.id))


@router.get("", response_model=Page[SweepPublic], responses=ERRORS)
def list_sweeps(
    p: ReaderDep, store: StoreDep, settings: SettingsDep, limit: Limit = 50,
    cursor: Cursor = None, q: search.Text = None, tag: search.TagQ = None,
    dataset: search.NameQ = None, model: search.NameQ = None, method: Method | None = None,
    status_: Annotated[SweepStatus | None, Query(alias="status")] = None,
    owner: search.OwnerQ = None, created_from: search.TimeQ = None,
    created_to: search.TimeQ = None,
) -> Page[SweepPublic]:
    """Sweeps, newest first, matching every given filter (``q`` searches names and notes;
    ``method``: one of the sweep's methods; ``status``: the sweep's status from its runs)."""
    size = min(limit, settings.max_page_size)
    # Every filter is answered by the indexes (backend.store.sweepindex).
    where = IndexFilter(tag=tag, dataset=dataset, model=model, owner=owner,
                        created_from=created_from, created_to=created_to)
    sweeps, total, nxt = store.list_sweeps(
        limit=size, cursor=cursor, where=where, text=q or None,
        method=method.value if method is not None else None,
        status=status_.value if status_ is not None else None)
    summaries = store.sweep_summaries([s.id for s in sweeps])
    return Page[SweepPublic](items=[sweep_public(s, summaries.get(s.id)) for s in sweeps],
                             total=total, next=nxt)


@router.get("/{sweep_id}", response_model=SweepDetail, responses=ERRORS)
def get_sweep(sweep_id: SweepId, p: PrincipalDep, store: StoreDep) -> SweepDetail:
    p.require_sweep(sweep_id)
    sweep = get_sweep_or_404(store, sweep_id)
    return sweep_detail(sweep, store.sweep_runs(sweep_id))


@router.post("/{sweep_id}/cancel", response_model=SweepCancelled, responses=ERRORS)
def cancel_sweep(sweep_id: SweepId, p: WriterDep, store: StoreDep,
                 dispatcher: DispatcherDep) -> SweepCancelled:
    """Cancel every unfinished run of the sweep."""
    sweep = get_sweep_or_404(store, sweep_id)
    p.require_owner(sweep.owner)
    cancelled, requested = cancel_runs(store, dispatcher, sweep.run_ids)
    return SweepCancelled(sweep_id=sweep_id, cancelled=cancelled, cancel_requested=requested)


@router.delete("/{sweep_id}", status_code=status.HTTP_204_NO_CONTENT, responses=ERRORS)
def delete_sweep(sweep_id: SweepId, p: WriterDep, store: StoreDep,
                 dispatcher: DispatcherDep) -> Response:
    """Cancel unfinished runs, then remove the sweep, its runs, events and results
    (checkpoints on disk are kept)."""
    sweep = get_sweep_or_404(store, sweep_id)
    p.require_owner(sweep.owner)
    cancel_runs(store, dispatcher, sweep.run_ids)
    store.delete_sweep(sweep_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{sweep_id}/results", response_model=SweepResults,
            responses={200: {"content": {"text/csv": {}}}, **ERRORS})
def sweep_results(sweep_id: SweepId, p: PrincipalDep, store: StoreDep,
                  format: Annotated[Literal["json", "csv"], Query(
                      description="json (default) or csv (one flat row per run)")] = "json",
                  ) -> Any:
    """Final results of the sweep's finished runs (runs without one are listed in
    ``missing``)."""
    p.require_sweep(sweep_id)
    sweep = get_sweep_or_404(store, sweep_id)
    results = store.get_results(sweep.run_ids)
    ordered = [(rid, results[rid]) for rid in sweep.run_ids if rid in results]
    if format == "csv":
        return Response(results_csv(ordered), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="sweep-{sweep_id}-results.csv"'})
    return SweepResults(sweep_id=sweep_id, items=[result_public(r, x) for r, x in ordered],
                        missing=[r for r in sweep.run_ids if r not in results])


@router.get("/{sweep_id}/events", response_class=Response,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "SSE: every event of every run of the sweep"},
                       204: {"description": "all runs finished; nothing after Last-Event-ID"},
                       **SSE_ERRORS})
async def sweep_events(
    sweep_id: SweepId, request: Request, p: PrincipalDep, astore: AsyncStoreDep,
    settings: SettingsDep,
    last_event_id: sse.LastEventIdQuery = None,
    last_event_id_header: sse.LastEventIdHeader = None,
) -> Response:
    p.require_sweep(sweep_id)
    after = sse.start_id(request, last_event_id)
    if await astore.sweep_statuses(sweep_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no sweep {sweep_id!r}")
    resp = await sse.sweep_events(request, astore, sweep_id, after, settings.sse_keepalive)
    return resp if resp is not None else Response(status_code=status.HTTP_204_NO_CONTENT)

