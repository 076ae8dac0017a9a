"""Health, identity, presets, queue and workers."""

from __future__ import annotations

import redis.exceptions
from fastapi import APIRouter
from fastapi.responses import JSONResponse

import tscnc
from backend.deps import PrincipalDep, ReaderDep, SettingsDep, StoreDep
from backend.routes.common import ERRORS
from backend.schemas import (
    DatasetAvailability,
    DatasetsPublic,
    Health,
    Me,
    PresetPublic,
    QueuePublic,
    WorkerPublic,
)
from tscnc.spec import PRESETS, DatasetName, preset

HOW_TO_ADD_DATASET = (
    "A worker reads datasets from its data roots (TSCNC_DATA_ROOTS). On the workers' machine, "
    "`tscnc data download NAME --dir ROOT` fetches one into a data root (checksums verified), "
    "or put its files there yourself (`tscnc data list` shows what each root holds and the "
    "dataset.data_dir to use); a spec with dataset.download: true fetches it on first use. "
    "Workers report what they can read every minute.")

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


@router.get("/me", response_model=Me, responses=ERRORS)
def me(p: PrincipalDep) -> Me:
    """Who the presented credential is."""
    return Me(kind=p.kind, id=p.id, name=p.name, role=p.role,
              sweeps=sorted(p.sweeps) if p.sweeps is not None else None)


@router.get("/presets", response_model=list[PresetPublic], responses=ERRORS)
def presets(p: PrincipalDep) -> list[PresetPublic]:
    """Named sweep presets (use one as ``preset`` in POST /api/v1/sweeps)."""
    return [PresetPublic(name=name, description=desc, spec=preset(name))
            for name, (desc, _) in PRESETS.items()]


@router.get("/queue", response_model=QueuePublic, responses=ERRORS)
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


@router.get("/datasets", response_model=DatasetsPublic, responses=ERRORS)
def datasets(p: ReaderDep, store: StoreDep) -> DatasetsPublic:
    """Datasets the online workers can read (each worker reports its own data roots), so a
    form offers only what can run; ``how_to_add`` says how to add one."""
    reporting = [w for w in store.workers() if w.datasets is not None]
    out = []
    for name in DatasetName:
        readers = [w for w in reporting if any(d.get("name") == name.value for d in w.datasets
                                               or [])]
        dirs = list(dict.fromkeys(d.get("data_dir") for w in readers for d in w.datasets or []
                                  if d.get("name") == name.value))
        out.append(DatasetAvailability(name=name.value, workers=len(readers), data_dirs=dirs))
    return DatasetsPublic(workers=len(reporting), datasets=out, how_to_add=HOW_TO_ADD_DATASET)
