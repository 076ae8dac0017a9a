"""Run reads: one run or many, the runs list (answered from :mod:`backend.store.index`), a
run's events and results (:class:`RunsMixin`); the writes are in :mod:`backend.store.lifecycle`."""

from __future__ import annotations

from collections.abc import Sequence

from backend.store import index, retention, sweepindex
from backend.store.base import StoreBase
from backend.store.codec import MAX_STREAM_ID, StreamEntry, entries
from backend.store.records import RUN_SORT_FIELDS, RunRecord, decode_run
from tscnc.records import RunResult, RunStatus
from tscnc.spec import Method

# The layout of the list indexes (backend/store/index.py, textindex.py, sweepindex.py): raise it
# whenever a change makes data indexed by an older version incomplete, so that the API
# rebuilds the indexes at start-up (Store.ensure_indexes) instead of lists silently missing runs.
# 2: the word index of free text and the sweeps-list indexes; 3: its pairs of words; 4: each
# sweep's runs per status and running runs, kept on write.
INDEX_VERSION = 4


class RunsMixin(StoreBase):
    """The runs part of :class:`backend.store.Store`: reads."""

    # Runs read per call of the read script (Redis answers nothing else meanwhile).
    GET_RUNS_CHUNK = 200

    def get_run(self, run_id: str) -> RunRecord | None:
        with self.r.pipeline(transaction=False) as p:
            p.hgetall(self.k.run(run_id))
            p.exists(self.k.run_cancel(run_id))
            h, cancel = p.execute()
        return decode_run(h, bool(cancel))

    def get_runs(self, run_ids: Sequence[str]) -> list[RunRecord]:
        """Runs in the given order (missing ones skipped)."""
        out = []
        for j in range(0, len(run_ids), self.GET_RUNS_CHUNK):
            keys: list[str] = []
            for rid in run_ids[j:j + self.GET_RUNS_CHUNK]:
                keys += (self.k.run(rid), self.k.run_cancel(rid))
            res = self._get_runs(keys=keys)
            for i in range(0, len(res), 2):
                flat = res[i]
                rec = decode_run(dict(zip(flat[::2], flat[1::2], strict=True)), bool(res[i + 1]))
                if rec is not None:
                    out.append(rec)
        return out

    def status_counts(self) -> dict[RunStatus, int]:
        with self.r.pipeline(transaction=False) as p:
            for s in RunStatus:
                p.zcard(self.k.runs_by_status(s))
            return dict(zip(RunStatus, (int(n) for n in p.execute()), strict=True))

    def list_runs(self, *, sweep_id: str | None = None, status: RunStatus | None = None,
                  method: Method | None = None, limit: int = 50, cursor: str | None = None,
                  desc: bool = True, sort: str | None = None,
                  where: index.IndexFilter | None = None, text: str | None = None
                  ) -> tuple[list[RunRecord], int, str | None]:
        """Runs matching all the given filters (``where``: dataset, model, owner, tag, dates,
        metric range; ``text``: contained in the run's key, sweep name or notes,
        case-insensitively), newest first, or ordered by ``sort`` (one of
        :data:`RUN_SORT_FIELDS`), answered from the list indexes (:mod:`backend.store.index`,
        :mod:`backend.store.textindex`); returns (runs, total, next)."""
        keys = []
        if sweep_id is not None:
            keys.append(self.k.sweep_runs(sweep_id))
        if status is not None:
            keys.append(self.k.runs_by_status(status))
        if method is not None:
            keys.append(self.k.runs_by_method(method))
        if sort is not None and sort not in RUN_SORT_FIELDS:
            raise ValueError(f"cannot sort runs by {sort!r}; one of {sorted(RUN_SORT_FIELDS)}")

        def by_key(key: str, n: int, cur: str | None, d: bool) -> tuple[list[str], int]:
            # Filtered order by run key: SORT over the matching set only (n + 1 ids).
            off = min(int(cur), 2**32) if cur else 0
            with self.r.pipeline(transaction=False) as p:
                p.sort(key, by=f"{self.k.run('*')}->key", start=off, num=n + 1, desc=d,
                       alpha=True)
                p.zcard(key)
                ids, total = p.execute()
            return list(ids), int(total)

        page = self._query(self.ix, keys, where, sort, desc, limit, cursor, self.k.runs,
                           self.k.run(""), by_key, text)
        return self.get_runs(page.ids), page.total, page.next

    def compact_events(self, keep_logs: int = 100) -> tuple[int, int]:
        """Apply the retention policy to the streams of finished runs and sweeps
        (:mod:`backend.store.retention`); returns (streams compacted, entries dropped)."""
        return retention.compact_finished(self, keep_logs)

    def reindex(self) -> int:
        """Rebuild every runs-list and sweeps-list index from the run and sweep hashes
        (``tscnc reindex``) and record their layout (:data:`INDEX_VERSION`); returns the number
        of runs."""
        sweepindex.rebuild(self)
        n = index.rebuild(self.r, self.ix, self.k.run, self.k.runs,
                          self.k.runs_by_status, self.k.runs_by_method, self._reindex)
        self.r.set(self.k.index_version, INDEX_VERSION)
        return n

    def ensure_indexes(self, lock_seconds: int = 600) -> int | None:
        """Rebuild the list indexes when the stored data was indexed with another layout
        (data written by an older version: lists would miss its runs); the API calls this at
        start-up. Returns the number of runs reindexed, or None when nothing was needed or
        another process holds the rebuild.

        A store with no runs and no sweeps just records the layout. With several API
        processes one rebuilds (a lock key, expiring after ``lock_seconds``).
        """
        if self.r.get(self.k.index_version) == str(INDEX_VERSION):
            return None
        if not self.r.zcard(self.k.runs) and not self.r.zcard(self.k.sweeps):
            self.r.set(self.k.index_version, INDEX_VERSION)
            return None
        if not self.r.set(self.k.index_rebuilding, "1", nx=True, ex=lock_seconds):
            return None
        try:
            return self.reindex()
        finally:
            self.r.delete(self.k.index_rebuilding)

    def epoch_keys(self, run_id: str) -> set[tuple[str, int]]:
        """(stage, epoch) pairs already recorded for the run."""
        out = set()
        for m in self.r.smembers(self.k.run_epochs(run_id)):
            stage, _, epoch = m.partition(":")
            out.add((stage, int(epoch)))
        return out

    def _range(self, stream: str, after: str | None, limit: int) -> list[StreamEntry]:
        if after == MAX_STREAM_ID:
            return []                      # nothing can follow the largest id
        lo = f"({after}" if after else "-"
        return entries(self.r.xrange(stream, lo, "+", count=limit))

    def events(self, run_id: str, after: str | None = None, limit: int = 100) -> list[StreamEntry]:
        """Past events of a run, oldest first, strictly after stream id ``after``."""
        return self._range(self.k.run_stream(run_id), after, limit)

    def get_result(self, run_id: str) -> RunResult | None:
        raw = self.r.get(self.k.run_result(run_id))
        return RunResult.model_validate_json(raw) if raw else None

    def get_results(self, run_ids: Sequence[str]) -> dict[str, RunResult]:
        if not run_ids:
            return {}
        raws = self.r.mget([self.k.run_result(r) for r in run_ids])
        return {r: RunResult.model_validate_json(x) for r, x in zip(run_ids, raws, strict=True)
                if x}

    def cancel_requested(self, run_id: str) -> bool:
        return bool(self.r.exists(self.k.run_cancel(run_id)))

    def _run_static(self, run_id: str) -> RunRecord | None:
        rec = self._static.get(run_id)
        if rec is None:
            rec = self.get_run(run_id)
            if rec is None:
                return None
            if len(self._static) > 4096:
                self._static.clear()
            self._static[run_id] = rec
        return rec
