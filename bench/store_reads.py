"""Reads of the runs and sweeps lists, each against how it read before, interleaved in one
process on one store, so the machine's load falls on both alike. Prints the medians and their
ratio, after checking both give the same answer:

- a page of runs: ``Store.get_runs`` (one call of the ``GET_RUNS`` script) against a pipeline
  of two commands per run (HGETALL, EXISTS);
- the summaries of a page of sweeps: ``Store.sweep_summaries`` (the counts and running runs
  kept on write) against a script counting every run status of each sweep.

    .venv/bin/python bench/store_reads.py --runs 20000 --repeat 400
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from backend.store import Store  # noqa: E402
from backend.store.records import RunRecord, SweepSummary, decode_run  # noqa: E402
from tscnc.records import RunStatus  # noqa: E402


def pipelined(store: Store, run_ids: list[str]) -> list[RunRecord]:
    """The runs as ``Store.get_runs`` read them before the script: one pipeline."""
    with store.r.pipeline(transaction=False) as p:
        for rid in run_ids:
            p.hgetall(store.k.run(rid))
            p.exists(store.k.run_cancel(rid))
        res = p.execute()
    recs = (decode_run(res[i], bool(res[i + 1])) for i in range(0, len(res), 2))
    return [r for r in recs if r is not None]


# How the summaries were read before the counts were kept on write: per sweep, a walk over
# its status hash (run id -> status) and the progress of each running run.
WALK_SUMMARIES = """
local names = {}
for s in string.gmatch(ARGV[2], '%S+') do names[#names + 1] = s end
local out = {}
for i, key in ipairs(KEYS) do
  local counts, running = {}, 0
  local h = redis.call('HGETALL', key)
  for j = 1, #h, 2 do
    local s = h[j + 1]
    counts[s] = (counts[s] or 0) + 1
    if s == 'running' then
      running = running + (tonumber(redis.call('HGET', ARGV[1] .. h[j], 'progress')) or 0)
    end
  end
  local row = {}
  for k, s in ipairs(names) do row[k] = counts[s] or 0 end
  row[#names + 1] = tostring(running)
  out[i] = row
end
return out
"""


def walked(store: Store, walk: Any, sweep_ids: list[str]) -> dict[str, SweepSummary]:
    """The summaries as ``Store.sweep_summaries`` read them before the counts."""
    names = [s.value for s in RunStatus]
    rows = walk(keys=[store.k.sweep_status(s) for s in sweep_ids],
                args=[store.k.run(""), " ".join(names)])
    return {sid: SweepSummary.from_counts(
                {RunStatus(n): int(c) for n, c in zip(names, row[:-1], strict=True)},
                float(row[-1]))
            for sid, row in zip(sweep_ids, rows, strict=True)}


def interleaved(calls: dict[str, Callable[[], object]], repeat: int) -> list[float]:
    """The median ms of each call, the calls alternating in order."""
    ms: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(repeat):
        for name in (list(calls) if i % 2 == 0 else list(calls)[::-1]):
            t0 = time.perf_counter()
            calls[name]()
            ms[name].append((time.perf_counter() - t0) * 1000)
    return [statistics.median(ms[n]) for n in calls]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20_000, help="runs stored (as bench/load.py)")
    ap.add_argument("--page", type=int, default=50, help="runs read per call")
    ap.add_argument("--repeat", type=int, default=400)
    args = ap.parse_args(argv)

    from bench.load import Deadline, fill
    from tests.support.services import start_redis, stop_process

    url, proc = start_redis(Path(tempfile.mkdtemp(prefix="store-reads-")))
    try:
        store = Store.from_url(url, timeout=120)
        owner = store.create_token("bench", "admin")[0].id
        fill(store, args.runs, owner, Deadline(7200))
        ids = [r.id for r in store.list_runs(limit=args.page)[0]]
        assert ([r.model_dump() for r in pipelined(store, ids)]
                == [r.model_dump() for r in store.get_runs(ids)])
        before, after = interleaved({"pipeline": lambda: pipelined(store, ids),
                                     "script": lambda: store.get_runs(ids)}, args.repeat)
        sweeps = store.list_sweeps(limit=args.page)[0]
        sweep_ids = [s.id for s in sweeps]
        walk = store.r.register_script(WALK_SUMMARIES)
        old, new = walked(store, walk, sweep_ids), store.sweep_summaries(sweep_ids)
        for sid in sweep_ids:   # progress: the same sum, taken in another order
            assert old[sid].counts == new[sid].counts, sid
            assert math.isclose(old[sid].progress, new[sid].progress, rel_tol=1e-9), sid
        walk_ms, kept_ms = interleaved({"walk": lambda: walked(store, walk, sweep_ids),
                                        "kept": lambda: store.sweep_summaries(sweep_ids)},
                                       args.repeat)
        print(f"{sum(store.status_counts().values())} runs stored; {len(ids)} runs per call, "
              f"{args.repeat} calls each, interleaved")
        print(f"pipeline median {before:.2f} ms; script median {after:.2f} ms; "
              f"ratio {before / after:.2f}")
        print(f"summaries of {len(sweep_ids)} sweeps ({sum(len(s.run_ids) for s in sweeps)} "
              f"runs): walk median {walk_ms:.3f} ms; kept median {kept_ms:.3f} ms; "
              f"ratio {walk_ms / kept_ms:.2f}")
        store.close()
    finally:
        stop_process(proc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
