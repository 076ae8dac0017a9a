"""Enqueue and revoke stage tasks (torch-free: the API calls this).

A sweep's runs are grouped by pretrain key (:meth:`tscnc.spec.SweepSpec.pretrain_groups`); each
group becomes the Celery canvas ``pretrain(group) | group(complete(run) for run in group)``, so
the shared pretrain fans out to the group's runs and several workers can share a sweep.
Retrying single runs enqueues ``complete(run)`` alone: it re-runs the pretrain first only if its
weights are missing.
"""

from __future__ import annotations

import uuid
from typing import Any

from celery import Celery, chain, group, signature

from tscnc.queues import Queue
from tscnc.spec import DeviceKind, SweepSpec
from worker.celery_app import TASK_COMPLETE, TASK_PRETRAIN


def _app(celery_app: Celery | None) -> Celery:
    if celery_app is not None:
        return celery_app
    from worker.celery_app import app

    return app


def _store(store: Any | None) -> Any:
    if store is not None:
        return store
    from backend.store import Store
    from worker.settings import WorkerSettings

    return Store.from_url(WorkerSettings().redis_url)


def choose_queue(spec: SweepSpec, workers: list[dict[str, Any]]) -> Queue:
    """``cuda`` → gpu, ``cpu`` → cpu, ``auto`` → gpu when a GPU worker is online, else cpu."""
    device = spec.training.device
    if device == DeviceKind.cuda:
        return Queue.gpu
    if device == DeviceKind.cpu:
        return Queue.cpu
    return Queue.gpu if any(w.get("queue") == Queue.gpu for w in workers) else Queue.cpu


def enqueue_runs(sweep_id: str, run_ids: list[str] | None = None, *, store: Any = None,
                 celery_app: Celery | None = None, fresh: bool = False,
                 grouped: bool = False) -> None:
    """Queue ``run_ids`` of a sweep (all its runs when None) and record their task ids.

    Runs given by id get one complete task each, unless ``grouped``: then, as for a whole
    sweep, each pretrain group among them gets one pretrain task chained to its runs' complete
    tasks (a stage handed back on SIGTERM is queued again this way).
    ``fresh`` (single runs: a retry): the complete task discards checkpoints another build
    wrote instead of resuming from them (:func:`tscnc.pipeline.complete_run`)."""
    st, app = _store(store), _app(celery_app)
    sweep = st.get_sweep(sweep_id)
    if sweep is None:
        raise KeyError(f"unknown sweep {sweep_id}")
    queue = choose_queue(sweep.sweep_spec(), [w.model_dump() for w in st.workers()]).value
    ids = list(run_ids) if run_ids is not None else list(sweep.run_ids)
    runs = [st.get_run(r) for r in ids]
    if run_ids is not None and not grouped:
        for run in runs:
            tid = uuid.uuid4().hex
            st.set_task_id(run.id, tid)
            signature(TASK_COMPLETE, args=(sweep_id, run.id),
                      kwargs={"fresh": True} if fresh else {}, app=app, immutable=True,
                      queue=queue).apply_async(task_id=tid)
        return
    by_key = {run.key: run for run in runs}
    specs = sweep.sweep_spec().pretrain_groups([run.run_spec() for run in runs])
    for group_specs in specs.values():
        members = [by_key[r.key] for r in group_specs]
        completes = []
        for run in members:
            tid = uuid.uuid4().hex
            st.set_task_id(run.id, tid)
            completes.append(signature(TASK_COMPLETE, args=(sweep_id, run.id), app=app,
                                       immutable=True, queue=queue).set(task_id=tid))
        head = signature(TASK_PRETRAIN, args=(sweep_id, [r.id for r in members]), app=app,
                         immutable=True, queue=queue)
        chain(head, group(completes)).apply_async()


def revoke(task_id: str, *, celery_app: Celery | None = None) -> None:
    """Revoke a queued task (a running one is stopped cooperatively instead)."""
    _app(celery_app).control.revoke(task_id)
