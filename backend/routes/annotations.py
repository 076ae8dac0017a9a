"""Notes and tags of sweeps and runs: their owner (or an admin) writes them; every reader, share
links included, sees them in the sweep and run answers."""

from __future__ import annotations

from fastapi import APIRouter

from backend.deps import StoreDep, WriterDep
from backend.routes.common import ERRORS, RunId, SweepId, get_run_or_404, get_sweep_or_404
from backend.schemas import AnnotationUpdate, RunPublic, SweepPublic
from backend.views import run_public, sweep_public

router = APIRouter(tags=["annotations"])

_WHO = {403: {"description": "a viewer, or a member changing what another member owns"}}


@router.patch("/sweeps/{sweep_id}", response_model=SweepPublic, responses={**ERRORS, **_WHO})
def annotate_sweep(sweep_id: SweepId, body: AnnotationUpdate, p: WriterDep,
                   store: StoreDep) -> SweepPublic:
    """Set the sweep's notes and/or tags (members their own sweeps, admins any)."""
    sweep = get_sweep_or_404(store, sweep_id)
    p.require_owner(sweep.owner)
    store.annotate("sweep", sweep_id, notes=body.notes, tags=body.tags)
    sweep = get_sweep_or_404(store, sweep_id)
    return sweep_public(sweep, store.sweep_summaries([sweep_id]).get(sweep_id))


@router.patch("/runs/{run_id}", response_model=RunPublic, responses={**ERRORS, **_WHO})
def annotate_run(run_id: RunId, body: AnnotationUpdate, p: WriterDep,
                 store: StoreDep) -> RunPublic:
    """Set the run's notes and/or tags (members their own runs, admins any)."""
    run = get_run_or_404(store, run_id)
    p.require_owner(run.owner, "run")
    store.annotate("run", run_id, notes=body.notes, tags=body.tags)
    return run_public(get_run_or_404(store, run_id))
