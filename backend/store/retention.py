"""Retention of the event streams of finished runs (part of the data layer, DESIGN §2.4).

A finished run's stream keeps what the charts and the run page read — stage events, epoch
metrics, the evaluation and every status event — and drops what only mattered while it ran:
``progress`` events (the run hash holds the final progress) and the ``log`` lines of each run
beyond its last ``keep_logs``. Its sweep's stream is compacted the same way (per run) once every
run of the sweep has finished.

Two ways to apply it: by hand over every finished run (``tscnc compact-events``,
:func:`compact_finished`), or automatically as each run finishes (:func:`on_finish`, called by
:class:`backend.store.lifecycle.LifecycleMixin` after a transition to a final status when the
store's ``retention_keep_logs`` is set: ``TSCNC_RETENTION_KEEP_LOGS`` of the API and the
workers; unset, the default, keeps every event until compacted by hand).

Compaction rewrites a stream in one Lua script (atomic): the kept entries are re-added with
their own ids, so Last-Event-ID resumption and ``?after=`` pages keep working (an id that was
dropped still orders correctly). Rewriting, not XDEL, is what frees memory: Redis releases a
stream's node only once all its entries are deleted.
"""

from __future__ import annotations

from typing import Any

from tscnc.records import TERMINAL_STATUSES

# KEYS: stream; ARGV: log lines kept per run. Returns the number of entries dropped.
COMPACT_SCRIPT = """
local entries = redis.call('XRANGE', KEYS[1], '-', '+')
local n = tonumber(ARGV[1])
local logs, keep, dropped = {}, {}, 0
for i = #entries, 1, -1 do
  local f = entries[i][2]
  local t, run = '', ''
  for j = 1, #f, 2 do
    if f[j] == 'type' then t = f[j + 1] elseif f[j] == 'run' then run = f[j + 1] end
  end
  local k = true
  if t == 'progress' then k = false
  elseif t == 'log' then
    logs[run] = (logs[run] or 0) + 1
    if logs[run] > n then k = false end
  end
  keep[i] = k
  if not k then dropped = dropped + 1 end
end
if dropped == 0 then return 0 end
redis.call('DEL', KEYS[1])
for i = 1, #entries do
  if keep[i] then redis.call('XADD', KEYS[1], entries[i][1], unpack(entries[i][2])) end
end
return dropped
"""


def compact_finished(store: Any, keep_logs: int) -> tuple[int, int]:
    """Compact the streams of every finished run, and of every sweep all of whose runs have
    finished; returns (streams compacted, entries dropped). Idempotent."""
    k = store.k
    streams = dropped = 0
    sweeps: set[str] = set()
    for status in TERMINAL_STATUSES:
        for rid in store.r.zrange(k.runs_by_status(status), 0, -1):
            n = int(store._compact(keys=[k.run_stream(rid)], args=[keep_logs]))
            streams, dropped = streams + (n > 0), dropped + n
            sid = store.r.hget(k.run(rid), "sweep_id")
            if sid:
                sweeps.add(sid)
    for sid in sweeps:
        statuses = store.sweep_statuses(sid)
        if statuses and all(s in TERMINAL_STATUSES for s in statuses.values()):
            n = int(store._compact(keys=[k.sweep_stream(sid)], args=[keep_logs]))
            streams, dropped = streams + (n > 0), dropped + n
    return streams, dropped


def on_finish(store: Any, run_id: str, sweep_id: str, keep_logs: int) -> int:
    """Compact the stream of a run that has just finished, and its sweep's stream if every run
    of the sweep has now finished; returns the entries dropped. A failure is left to the next
    finish or to ``tscnc compact-events`` (the run's transition has happened already)."""
    k = store.k
    dropped = int(store._compact(keys=[k.run_stream(run_id)], args=[keep_logs]))
    statuses = store.sweep_statuses(sweep_id)
    if statuses and all(s in TERMINAL_STATUSES for s in statuses.values()):
        dropped += int(store._compact(keys=[k.sweep_stream(sweep_id)], args=[keep_logs]))
    return dropped


def memory_usage(store: Any, run_ids: list[str]) -> dict[str, float]:
    """Redis MEMORY USAGE (bytes) per run (its hash, stream, epochs set, result and its share
    of its sweep's stream is not counted) and per stream entry, averaged over ``run_ids``."""
    k = store.k
    total = entries = stream_bytes = 0
    for rid in run_ids:
        for key in (k.run(rid), k.run_stream(rid), k.run_epochs(rid), k.run_result(rid)):
            total += int(store.r.memory_usage(key, samples=0) or 0)
        stream_bytes += int(store.r.memory_usage(k.run_stream(rid), samples=0) or 0)
        entries += int(store.r.xlen(k.run_stream(rid)))
    n = max(1, len(run_ids))
    return {"bytes_per_run": total / n, "events_per_run": entries / n,
            "bytes_per_event": stream_bytes / max(1, entries)}
