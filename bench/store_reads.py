"""A page of runs read from Redis: ``Store.get_runs`` (one call of the ``GET_RUNS`` script)
against the same reads as a pipeline of two commands per run (HGETALL, EXISTS: how
``get_runs`` read before), interleaved in one process on one store, so the machine's load
falls on both alike. Prints the medians and their ratio, after checking both give the same
records.

    .venv/bin/python bench/store_reads.py --runs 20000 --repeat 400
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from backend.store import Store  # noqa: E402
from backend.store.records import RunRecord, decode_run  # noqa: E402


def pipelined(store: Store, run_ids: list[str]) -> list[RunRecord]:
    """The runs as ``Store.get_runs`` read them before the script: one pipeline."""
    with store.r.pipeline(transaction=False) as p:
        for rid in run_ids:
            p.hgetall(store.k.run(rid))
            p.exists(store.k.run_cancel(rid))
        res = p.execute()
    recs = (decode_run(res[i], bool(res[i + 1])) for i in range(0, len(res), 2))
    return [r for r in recs if r is not None]


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
        calls = {"pipeline": lambda: pipelined(store, ids), "script": lambda: store.get_runs(ids)}
        ms: dict[str, list[float]] = {name: [] for name in calls}
        for i in range(args.repeat):
            for name in (list(calls) if i % 2 == 0 else list(calls)[::-1]):
                t0 = time.perf_counter()
                calls[name]()
                ms[name].append((time.perf_counter() - t0) * 1000)
        before, after = (statistics.median(ms[n]) for n in calls)
        print(f"{sum(store.status_counts().values())} runs stored; {len(ids)} runs per call, "
              f"{args.repeat} calls each, interleaved")
        print(f"pipeline median {before:.2f} ms; script median {after:.2f} ms; "
              f"ratio {before / after:.2f}")
        store.close()
    finally:
        stop_process(proc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
