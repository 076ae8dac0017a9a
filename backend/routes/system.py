"""Health, identity, presets, queue and workers."""

from __future__ import annotations

import redis.exceptions
from fastapi import APIRouter
from fastapi.responses import JSONResponse

import tscnc
from backend.deps import PrincipalDep, ReaderDep, SettingsDep, StoreDep
from backend.routes.sweeps import _ERRORS
from backend.schemas import Health, Me, PresetPublic, QueuePublic, WorkerPublic
from tscnc.spec import PRESETS, preset

router = APIRouter(tags=["system"])


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
def health(store: StoreDep) -> Health | JSONResponse:
    """Liveness and Redis reachability (no credential needed)."""
    try:
        store.ping()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        body = Health(status="unavailable", redis="down", version=tscnc.__version__)
        return JSONResponse(body.model_dump(), status_code=503)
    return Health(status="ok", redis="ok", version=tscnc.__version__)


@router.get("/me", response_model=Me, responses=_ERRORS)
def me(p: PrincipalDep) -> Me:
    """Who the presented credential is."""
    return Me(kind=p.kind, id=p.id, name=p.name, role=p.role,
              sweeps=sorted(p.sweeps) if p.sweeps is not None else None)


@router.get("/presets", response_model=list[PresetPublic], responses=_ERRORS)
def presets(p: PrincipalDep) -> list[PresetPublic]:
    """Named sweep presets (use one as ``preset`` in POST /api/v1/sweeps)."""
    return [PresetPublic(name=name, description=desc, spec=preset(name))
            for name, (desc, _) in PRESETS.items()]


@router.get("/queue", response_model=QueuePublic, responses=_ERRORS)
def queue(p: ReaderDep, store: StoreDep, settings: SettingsDep) -> QueuePublic:
    """Messages waiting per Celery queue, workers online (from heartbeats) with their device
    and current run, and runs per status."""
    return QueuePublic(
        queues=store.queue_depths(settings.queues),
        workers=[WorkerPublic(name=w.name, device=w.device, run=w.run, last_seen=w.last_seen,
                              memory_bytes=w.memory_bytes)
                 for w in store.workers()],
        runs=store.status_counts(),
    )
