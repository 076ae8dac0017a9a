"""Workers' heartbeats and Celery's queue depths (:class:`WorkersMixin`)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence

from backend.store.base import StoreBase
from backend.store.codec import enc
from backend.store.keys import CELERY_PRIORITY_STEPS, CELERY_QUEUES
from backend.store.records import WorkerRecord, decode_worker


class WorkersMixin(StoreBase):
    """The workers part of :class:`backend.store.Store`."""

    def heartbeat(self, worker: str, device: str, run_id: str | None, ttl: int,
                  queue: str | None = None, memory_bytes: int | None = None,
                  datasets: Sequence[Mapping[str, str | None]] | None = None) -> None:
        """Record that ``worker`` is alive (expires after ``ttl`` seconds), what memory its
        device offers (admission of new sweeps compares their estimate with it) and which
        datasets it can read (``[{"name": "mnist", "data_dir": None}, ...]``; None: not told)."""
        now = time.time()
        key = self.k.worker(worker)
        with self.r.pipeline(transaction=True) as p:
            p.hset(key, mapping={"name": worker, "device": device, "queue": enc(queue),
                                 "run": enc(run_id), "last_seen": enc(now),
                                 "memory": enc(memory_bytes),
                                 "datasets": "" if datasets is None else json.dumps(
                                     [dict(d) for d in datasets])})
            p.expire(key, max(1, int(ttl)))
            p.zadd(self.k.workers, {worker: now})
            p.execute()

    def workers(self) -> list[WorkerRecord]:
        """Workers whose heartbeat has not expired (expired ones are dropped from the index)."""
        names = self.r.zrange(self.k.workers, 0, -1)
        if not names:
            return []
        hs = self._hashes(map(self.k.worker, names))
        out, gone = [], []
        for n, h in zip(names, hs, strict=True):
            if not h:
                gone.append(n)
                continue
            out.append(decode_worker(n, h))
        if gone:
            self.r.zrem(self.k.workers, *gone)
        return sorted(out, key=lambda w: w.name)

    def hold_pretrain(self, sweep_id: str, pretrain_key: str, worker: str) -> str | None:
        """Take the lease of a sweep's pretrain (one group's) for ``worker``; returns None when
        taken, or the worker holding it when that one is alive. A holder whose heartbeat
        expired has lost it. A deleted sweep's lease is never taken (returns None)."""
        holder = self._hold_pretrain(keys=[self.k.sweep_pretrains(sweep_id), self.k.sweep(sweep_id)],
                                     args=[pretrain_key, worker, self.k.worker_prefix])
        return holder or None

    def release_pretrain(self, sweep_id: str, pretrain_key: str, worker: str) -> None:
        """Give the lease of a sweep's pretrain back, if ``worker`` holds it."""
        self._release_pretrain(keys=[self.k.sweep_pretrains(sweep_id)],
                               args=[pretrain_key, worker])

    def queue_depths(self, queues: Iterable[str] = CELERY_QUEUES) -> dict[str, int]:
        """Messages waiting in each Celery queue (all priority lists)."""
        queues = list(queues)
        with self.r.pipeline(transaction=False) as p:
            for q in queues:
                for key in self.k.celery_queue(q):
                    p.llen(key)
            res = p.execute()
        n = 1 + len(CELERY_PRIORITY_STEPS)
        return {q: int(sum(res[i * n:(i + 1) * n])) for i, q in enumerate(queues)}

    def unacked_messages(self) -> int:
        """Celery messages delivered to a worker and not yet acknowledged (running stages, or
        messages of a worker that died, waiting for the visibility timeout)."""
        return int(self.r.hlen(self.k.CELERY_UNACKED))
