"""Run writes (:class:`LifecycleMixin`): status changes, claims by workers, take-overs and
retries, events with the run fields they imply, results, notes and tags, cancel requests. Each
change is one Lua script (:mod:`backend.store.scripts`), so it is atomic with the indexes."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis

from backend.store import retention
from backend.store.codec import encode_event, fields_json
from backend.store.progress import derived_fields
from backend.store.records import RunRecord
from backend.store.runs import RunsMixin
from backend.store.scripts import ALLOWED_FROM, STATUS_ORDER
from backend.store.textindex import search_text
from tscnc.records import (
    TERMINAL_STATUSES,
    EpochEvent,
    Event,
    FailureCategory,
    RunResult,
    RunStatus,
    StatusEvent,
)

log = logging.getLogger(__name__)


class LifecycleMixin(RunsMixin):
    """The run-writing part of :class:`backend.store.Store`."""

    def _transition_call(self, run_id: str, status: RunStatus, allowed: Iterable[RunStatus] | None,
                         event: StatusEvent, fields: Mapping[str, Any], flags: str = "",
                         me: str = "") -> tuple[bool, str, str]:
        run = self._run_static(run_id)
        if run is None:
            return False, "", ""
        k = self.k
        allowed_s = "" if allowed is None else " ".join(sorted(RunStatus(s).value for s in allowed))
        ok, cur, sid = self._transition(
            keys=[k.run(run_id), k.run_stream(run_id), k.sweep_stream(run.sweep_id),
                  k.sweep_status(run.sweep_id), k.run_cancel(run_id),
                  *[k.runs_by_status(s) for s in STATUS_ORDER],
                  k.sweep_counts(run.sweep_id), k.sweep_running(run.sweep_id)],
            args=[run_id, status.value, allowed_s, encode_event(event), fields_json(fields),
                  flags, me, k.worker_prefix, " ".join(s.value for s in STATUS_ORDER),
                  self.ix.prefix, k.sweep(run.sweep_id), run.sweep_id, self.sx.prefix])
        return bool(ok), cur, sid

    def _set_status(self, run_id: str, status: RunStatus | str, *,
                    category: FailureCategory | str | None = None, message: str | None = None,
                    worker: str | None = None, device: str | None = None,
                    expect: Iterable[RunStatus] | None = None, force: bool = False,
                    clear_cancel: bool = False) -> tuple[bool, str]:
        status = RunStatus(status)
        cat = FailureCategory(category) if category else None
        if status == RunStatus.failed and cat is None:
            cat = FailureCategory.error
        now = time.time()
        fields: dict[str, Any] = {"status": status, "message": message, "category": cat}
        if status == RunStatus.running:
            fields.update(started=now, finished=None)
            if worker is not None:
                fields["worker"] = worker
            if device is not None:
                fields["device"] = device
        elif status == RunStatus.queued:
            fields.update(finished=None, worker=None, device=None)
        else:
            fields["finished"] = now
            if status == RunStatus.succeeded:
                fields["progress"] = 1.0
        allowed = None if force else (expect if expect is not None else ALLOWED_FROM[status])
        ev = StatusEvent(run=run_id, status=status, category=cat, message=message, time=now)
        ok, _, sid = self._transition_call(run_id, status, allowed, ev, fields,
                                           "c" if clear_cancel else "")
        if ok and status in TERMINAL_STATUSES and self.retention_keep_logs is not None:
            run = self._run_static(run_id)
            try:                         # the automatic retention policy (store/retention.py)
                if run is not None:
                    retention.on_finish(self, run_id, run.sweep_id, self.retention_keep_logs)
            except redis.RedisError as e:
                log.warning("could not compact the events of run %s (%s); tscnc compact-events "
                            "will", run_id, e)
        return ok, sid

    def set_status(self, run_id: str, status: RunStatus | str, *,
                   category: FailureCategory | str | None = None, message: str | None = None,
                   worker: str | None = None, device: str | None = None,
                   expect: Iterable[RunStatus] | None = None, force: bool = False) -> bool:
        """Change a run's status, maintain the status index and append a StatusEvent to its
        streams, atomically. Returns False (and changes nothing) when the run is unknown or
        the change is not allowed from its current status (:data:`ALLOWED_FROM`, or ``expect``
        when given; ``force`` skips the check). ``failed`` without a category records
        ``error``. ``running`` sets ``started``, ``worker``, ``device``; terminal statuses set
        ``finished``; ``queued`` clears the worker.
        """
        ok, _ = self._set_status(run_id, status, category=category, message=message,
                                 worker=worker, device=device, expect=expect, force=force)
        return ok

    def claim(self, run_id: str, worker: str, device: str) -> bool:
        """Mark a run running on ``worker`` unless it has ended or runs on another live worker
        (whose heartbeat has not expired). A StatusEvent is appended only when the status
        changes (queued → running); re-claiming a running run just updates worker/device."""
        now = time.time()
        run = self._run_static(run_id)
        if run is None:
            return False
        ev = StatusEvent(run=run_id, status=RunStatus.running, time=now)
        fields: dict[str, Any] = {"status": RunStatus.running, "worker": worker,
                                  "device": device, "finished": None, "category": None,
                                  "message": None}
        cur = self.r.hget(self.k.run(run_id), "status")
        if cur != RunStatus.running.value:
            fields["started"] = now
        ok, _, _ = self._transition_call(run_id, RunStatus.running,
                                         {RunStatus.queued, RunStatus.running}, ev, fields,
                                         "ws", worker)
        return ok

    def release(self, run_id: str) -> bool:
        """Forget the worker of a running run (between stages, so the next stage's task can
        claim it on any worker). The run stays running."""
        return bool(self._update(keys=[self.k.run(run_id)], args=[fields_json({"worker": None})]))

    def lost_runs(self, alive: Iterable[str]) -> list[RunRecord]:
        """Running runs whose worker is set but not among ``alive`` (worker names)."""
        alive = set(alive)
        ids = self.r.zrange(self.k.runs_by_status(RunStatus.running), 0, -1)
        if not ids:
            return []
        with self.r.pipeline(transaction=False) as p:
            for rid in ids:
                p.hget(self.k.run(rid), "worker")
            workers = p.execute()
        lost = [rid for rid, w in zip(ids, workers, strict=True) if w and w not in alive]
        return [r for r in self.get_runs(lost) if r.status == RunStatus.running]

    def take_over(self, run_id: str, worker: str) -> bool:
        """Atomically take a running run whose worker's heartbeat expired (only one live
        worker wins); the caller then re-queues or fails it."""
        return bool(self._take_over(keys=[self.k.run(run_id)], args=[worker, self.k.worker_prefix]))

    def retry_run(self, run_id: str) -> bool:
        """failed/cancelled → queued, clearing the cancel flag and counting one more attempt
        (events are kept)."""
        ok, _ = self._set_status(run_id, RunStatus.queued, message="retried",
                                 expect={RunStatus.failed, RunStatus.cancelled},
                                 clear_cancel=True)
        if ok:
            self._update(keys=[self.k.run(run_id)],
                         args=[fields_json({"progress": 0.0, "stage": None, "epoch": None})])
            self.incr_attempts(run_id)
        return ok

    def record_event(self, run_id: str, event: Event) -> str | None:
        """Append ``event`` to the run's stream and its sweep's stream, atomically with the run
        fields it implies (stage, epoch, progress, latest metrics). Returns the run stream id,
        or None when dropped: an epoch event whose (stage, epoch) is already recorded (a
        resumed stage never shows an epoch twice), an unknown/deleted run, or a run that has
        ended (nothing follows its final status, e.g. a shared pretrain still going on for
        the rest of its group after this run was cancelled). A StatusEvent
        goes through :meth:`set_status`. ``event.run`` is set to ``run_id``.
        """
        if isinstance(event, StatusEvent):
            ok, sid = self._set_status(run_id, event.status, category=event.category,
                                       message=event.message)
            return sid or None
        if event.run != run_id:
            event = event.model_copy(update={"run": run_id})
        run = self._run_static(run_id)
        if run is None:
            return None
        dedupe = f"{event.stage.value}:{event.epoch}" if isinstance(event, EpochEvent) else ""
        k = self.k
        res = self._append(
            keys=[k.run(run_id), k.run_stream(run_id), k.sweep_stream(run.sweep_id),
                  k.run_epochs(run_id)],
            args=[run_id, event.type, encode_event(event), dedupe,
                  fields_json(derived_fields(event, run)), self.ix.prefix])
        return res or None

    def set_task_id(self, run_id: str, task_id: str) -> bool:
        return bool(self._update(keys=[self.k.run(run_id)],
                                 args=[fields_json({"task_id": task_id})]))

    def incr_attempts(self, run_id: str) -> int:
        """Add one to the run's attempts; returns the new count (0 if the run is unknown)."""
        res = self._update(keys=[self.k.run(run_id)], args=["{}", "", "attempts"])
        return int(res or 0)

    def put_result(self, run_id: str, result: RunResult) -> bool:
        """Store the final result and copy its headline numbers onto the run."""
        robust = min(result.robust_accuracy.values()) if result.robust_accuracy else None
        fields = {"has_result": True, "clean_accuracy": result.clean_accuracy,
                  "robust_accuracy": robust, "kappa_median": result.condition_number.median,
                  "sparsity_actual": result.sparsity_actual, "checkpoint": result.checkpoint}
        return bool(self._update(keys=[self.k.run(run_id), self.k.run_result(run_id)],
                                 args=[fields_json(fields), result.model_dump_json()]))

    def annotate(self, kind: str, item_id: str, *, notes: str | None = None,
                 tags: Sequence[str] | None = None) -> bool:
        """Set the notes and/or the tags (None: unchanged) of a ``kind`` ("sweep" or "run");
        False when it does not exist."""
        fields: dict[str, Any] = {}
        if tags is not None:
            fields["tags"] = json.dumps(list(tags))
        if kind == "sweep":        # its list indexes follow (backend.store.sweepindex)
            if notes is not None:
                name = self.r.hget(self.k.sweep(item_id), "name")
                fields["notes"], fields["ftext"] = notes, search_text(name or "", notes)
            return bool(self._sweep_update(keys=[self.k.sweep(item_id)],
                                           args=[fields_json(fields), self.sx.prefix]))
        if notes is not None:
            fields["notes"] = notes
            run = self._run_static(item_id)
            if run is not None:    # the word index follows (backend.store.textindex)
                fields["ftext"] = search_text(run.key, run.sweep_name, notes)
        return bool(self._update(keys=[self.k.run(item_id)], args=[fields_json(fields)]))

    def request_cancel(self, run_id: str, ttl: int = 7 * 86400) -> None:
        self.r.set(self.k.run_cancel(run_id), "1", ex=ttl)
