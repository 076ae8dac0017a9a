"""Reply parsing in the data layer: redis-py's pure-Python RESP parser against hiredis (C),
side by side on the same store, for the store calls behind the runs and sweeps lists.

Starts a private redis-server, stores ``--runs`` runs (sweeps of 1,000, a mix of states, as
``bench/load.py``), then times each call ``--repeat`` times with each parser on its own
connection, interleaved, and prints medians and p95 in ms and their ratio.

    nice .venv/bin/python bench/redis_parser.py --runs 20000 --repeat 200
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from redis._parsers import _HiredisParser, _RESP2Parser  # noqa: E402

from backend.store import Store  # noqa: E402
from backend.store.index import IndexFilter  # noqa: E402
from bench.store_fill import bench_spec, populate  # noqa: E402
from tests.support.services import start_redis, stop_process  # noqa: E402


def _store(url: str, parser: type) -> Store:
    return Store(redis.Redis(connection_pool=redis.ConnectionPool.from_url(
        url, decode_responses=True, parser_class=parser)))


CALLS: dict[str, Any] = {
    "runs: newest 50": lambda st: st.list_runs(limit=50),
    "runs: status=succeeded, sort=kappa_median": lambda st: st.list_runs(
        status="succeeded", sort="kappa_median", limit=50),
    "runs: dataset=digits": lambda st: st.list_runs(where=IndexFilter(dataset="digits"), limit=50),
    "runs: free text 'note'": lambda st: st.list_runs(text="note", limit=50),
    "sweeps: newest 50": lambda st: st.list_sweeps(limit=50),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url, proc = start_redis(Path(tmp) / "redis")
        try:
            filler = Store.from_url(url)
            owner, _ = filler.create_token("bench", "member")
            for s in range(max(1, args.runs // 1000)):
                sweep, _ = filler.create_sweep(bench_spec(f"bench-{s}", 50, 4), owner.id,
                                               owner_name="bench")
                populate(filler, sweep.run_ids, annotate_every=10, release=True)
            n = filler.r.zcard(filler.k.runs)
            stores = {"pure Python (RESP2)": _store(url, _RESP2Parser),
                      "hiredis": _store(url, _HiredisParser)}
            times: dict[tuple[str, str], list[float]] = {}
            for _ in range(args.repeat):
                for call_name, call in CALLS.items():
                    for parser, st in stores.items():       # interleaved: same conditions
                        t0 = time.perf_counter()
                        call(st)
                        times.setdefault((call_name, parser), []).append(
                            1000 * (time.perf_counter() - t0))
            print(f"{n} runs stored; {args.repeat} calls each; ms (median / p95)\n")
            print("| call | pure Python median | p95 | hiredis median | p95 | median ratio |")
            print("|---|---|---|---|---|---|")
            for call_name in CALLS:
                row = []
                for parser in stores:
                    xs = sorted(times[(call_name, parser)])
                    row += [statistics.median(xs), xs[int(0.95 * (len(xs) - 1))]]
                print(f"| {call_name} | {row[0]:.2f} | {row[1]:.2f} | {row[2]:.2f} | "
                      f"{row[3]:.2f} | {row[0] / row[2]:.2f}× |")
        finally:
            stop_process(proc)


if __name__ == "__main__":
    main()
