"""Sweeps: creation with their runs (idempotent), reads, summaries and deletion
(:class:`SweepsMixin`)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence

import redis

from backend.store import sweepindex
from backend.store.codec import StreamEntry, enc, encode_event
from backend.store.index import IndexFilter
from backend.store.progress import stage_offsets
from backend.store.records import RunRecord, SweepRecord, SweepSummary, decode_sweep
from backend.store.runs import RunsMixin
from backend.store.textindex import search_text
from tscnc.records import RunStatus, StatusEvent
from tscnc.spec import SweepSpec


class IdempotencyConflict(Exception):
    """An Idempotency-Key already names a sweep with another spec or preset (HTTP 409)."""

    def __init__(self, sweep_id: str) -> None:
        super().__init__(sweep_id)
        self.sweep_id = sweep_id


class SweepsMixin(RunsMixin):
    """The sweeps part of :class:`backend.store.Store`."""

    def create_sweep(self, spec: SweepSpec, owner: str, idempotency_key: str | None = None, *,
                     owner_name: str = "", preset: str | None = None,
                     idempotency_ttl: int = 86400) -> tuple[SweepRecord, bool]:
        """Store a sweep and one queued run per ``spec.runs()``.

        With ``idempotency_key`` the same (owner, key) returns the first sweep and False, if
        that sweep has the same spec and preset; otherwise :class:`IdempotencyConflict`.
        Creation is one MULTI transaction (WATCH on the key makes concurrent retries safe).
        """
        k = self.k
        idem = k.idempotency(owner, idempotency_key) if idempotency_key else None
        runs = spec.runs()
        specs = [spec.for_run(rs) for rs in runs]   # each run's grid values applied
        spec_json = spec.model_dump_json()
        with self.r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    if idem:
                        pipe.watch(idem)
                        existing = pipe.get(idem)
                        if existing:
                            found = self.get_sweep(existing)
                            if found is not None:
                                pipe.reset()
                                if found.spec != json.loads(spec_json) or found.preset != preset:
                                    raise IdempotencyConflict(found.id)
                                return found, False
                    last = int(self.r.incrby(k.seq, len(runs) + 1))
                    seq0 = last - len(runs)
                    now = time.time()
                    sweep_id = uuid.uuid4().hex
                    run_ids = [uuid.uuid4().hex for _ in runs]
                    pipe.multi()
                    pipe.hset(k.sweep(sweep_id), mapping={
                        "id": sweep_id, "name": spec.name, "preset": enc(preset),
                        "owner": owner, "owner_name": owner_name, "created": enc(now),
                        "seq": str(seq0), "spec": spec_json, "run_ids": json.dumps(run_ids),
                        "enqueued": "0", "idem": idem or "",
                        "ftext": sweepindex.sweep_text(spec.name, "")})
                    pipe.zadd(k.sweeps, {sweep_id: seq0})
                    sweepindex.add_static(pipe, self.sx, sweep_id, seq0, now,
                                          json.loads(spec_json), owner)
                    for i, (rid, rs) in enumerate(zip(run_ids, runs, strict=True)):
                        seq = seq0 + 1 + i
                        pipe.hset(k.run(rid), mapping={
                            "id": rid, "sweep_id": sweep_id, "key": rs.key,
                            "sweep_name": spec.name, "dataset": spec.dataset.name.value,
                            "model": spec.model.name.value,
                            "method": rs.method.value, "sparsity": enc(rs.sparsity),
                            "seed": str(rs.seed), "params": json.dumps(rs.params),
                            "status": RunStatus.queued.value, "stage": "",
                            "epoch": "", "progress": "0",
                            "total_epochs": str(specs[i].total_epochs(rs.method)),
                            "offsets": json.dumps(stage_offsets(specs[i], rs.method)),
                            "category": "", "message": "", "created": enc(now), "started": "",
                            "finished": "", "worker": "", "device": "", "attempts": "0",
                            "task_id": "", "owner": owner, "seq": str(seq), "checkpoint": "",
                            "has_result": "0",
                            "ftext": search_text(rs.key, spec.name, "")})
                        pipe.zadd(k.runs, {rid: seq})
                        pipe.zadd(k.runs_by_status(RunStatus.queued), {rid: seq})
                        pipe.zadd(k.runs_by_method(rs.method), {rid: seq})
                        pipe.zadd(k.sweep_runs(sweep_id), {rid: seq})
                        pipe.hset(k.sweep_status(sweep_id), rid, RunStatus.queued.value)
                        self._reindex(keys=[k.run(rid)], args=[rid, self.ix.prefix, ""],
                                      client=pipe)
                        data = encode_event(StatusEvent(run=rid, status=RunStatus.queued,
                                                        time=now))
                        fields = {"run": rid, "type": "status", "data": data}
                        pipe.xadd(k.run_stream(rid), fields)
                        pipe.xadd(k.sweep_stream(sweep_id), fields)
                    self._sweep_reindex(keys=sweepindex.reindex_keys(k, sweep_id),
                                        args=[sweep_id, self.sx.prefix, ""], client=pipe)
                    if idem:
                        pipe.set(idem, sweep_id, ex=idempotency_ttl)
                    pipe.execute()
                    break
                except redis.WatchError:
                    continue
        sweep = self.get_sweep(sweep_id)
        assert sweep is not None
        return sweep, True

    def mark_enqueued(self, sweep_id: str) -> None:
        if self.r.exists(self.k.sweep(sweep_id)):
            self.r.hset(self.k.sweep(sweep_id), "enqueued", "1")

    # ---- reads -----------------------------------------------------------------------------

    def get_sweep(self, sweep_id: str) -> SweepRecord | None:
        return decode_sweep(self.r.hgetall(self.k.sweep(sweep_id)))

    def get_sweeps(self, sweep_ids: Sequence[str]) -> list[SweepRecord]:
        if not sweep_ids:
            return []
        hashes = self._hashes(map(self.k.sweep, sweep_ids))
        return [s for s in map(decode_sweep, hashes) if s is not None]

    def sweep_runs(self, sweep_id: str) -> list[RunRecord]:
        """A sweep's runs in spec order."""
        return self.get_runs(self.r.zrange(self.k.sweep_runs(sweep_id), 0, -1))

    def sweep_summaries(self, sweep_ids: Sequence[str]) -> dict[str, SweepSummary]:
        """Per sweep: runs per status and mean progress (finished runs count as 1), read in
        Redis by one script (:data:`backend.store.scripts.SUMMARIES`) from the counts kept on
        write (:mod:`backend.store.sweepindex`)."""
        if not sweep_ids:
            return {}
        names = [s.value for s in RunStatus]
        keys = [key for s in sweep_ids
                for key in (self.k.sweep_counts(s), self.k.sweep_running(s))]
        rows = self._summaries(keys=keys, args=[self.k.run(""), " ".join(names)])
        return {sid: SweepSummary.from_counts(
                    {RunStatus(n): int(c) for n, c in zip(names, row[:-1], strict=True)},
                    float(row[-1]))
                for sid, row in zip(sweep_ids, rows, strict=True)}

    def sweep_statuses(self, sweep_id: str) -> dict[str, RunStatus]:
        return {r: RunStatus(s) for r, s in self.r.hgetall(self.k.sweep_status(sweep_id)).items()}

    def list_sweeps(self, *, limit: int = 50, cursor: str | None = None, desc: bool = True,
                    where: IndexFilter | None = None, method: str | None = None,
                    status: str | None = None, text: str | None = None
                    ) -> tuple[list[SweepRecord], int, str | None]:
        """Sweeps matching every given filter (``where``: dataset, model, owner, tag, dates;
        ``method``: one of its methods; ``status``: its status from its runs'; ``text``: in
        its name or notes, case-insensitively), newest first, from the indexes of
        :mod:`backend.store.sweepindex`; returns (sweeps, total, next)."""
        if where is not None and where.metric is not None:
            raise ValueError("sweeps have no metric range")
        sx = self.sx
        sets = [] if method is None else [sx.vocab("method", method)]
        if status is not None:
            sets.append(sx.vocab("status", status))
        page = self._query(sx, sets, where, None, desc, limit, cursor, self.k.sweeps,
                           self.k.sweep(""), text=text)
        return self.get_sweeps(page.ids), page.total, page.next

    def sweep_events(self, sweep_id: str, after: str | None = None,
                     limit: int = 100) -> list[StreamEntry]:
        return self._range(self.k.sweep_stream(sweep_id), after, limit)

    def delete_sweep(self, sweep_id: str) -> bool:
        """Remove a sweep with its runs, events and results (cancel flags are kept until they
        expire so a worker still running one of its runs stops)."""
        sweep = self.get_sweep(sweep_id)
        if sweep is None:
            return False
        runs = self.get_runs(sweep.run_ids)
        k = self.k
        idem = self.r.hget(k.sweep(sweep_id), "idem")
        with self.r.pipeline(transaction=True) as p:
            self._sweep_reindex(keys=sweepindex.reindex_keys(k, sweep_id),
                                args=[sweep_id, self.sx.prefix, "d"], client=p)
            sweepindex.drop_static(p, self.sx, sweep_id, sweep.spec, sweep.owner)
            for run in runs:
                self._reindex(keys=[k.run(run.id)], args=[run.id, self.ix.prefix, "d"], client=p)
                p.delete(k.run(run.id), k.run_stream(run.id), k.run_epochs(run.id),
                         k.run_result(run.id))
                p.zrem(k.runs, run.id)
                p.zrem(k.runs_by_method(run.method), run.id)
                for s in RunStatus:
                    p.zrem(k.runs_by_status(s), run.id)
                self._static.pop(run.id, None)
            p.delete(k.sweep(sweep_id), k.sweep_runs(sweep_id), k.sweep_status(sweep_id),
                     k.sweep_counts(sweep_id), k.sweep_running(sweep_id),
                     k.sweep_pretrains(sweep_id), k.sweep_stream(sweep_id))
            if idem:
                p.delete(idem)
            p.zrem(k.sweeps, sweep_id)
            p.execute()
        return True
