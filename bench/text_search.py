"""Free text ``q`` of the runs list: the store call with this checkout's word index against an
older commit's, side by side on one store (issue 16).

The older commit's query (its ``QUERY_SCRIPT`` and ``query_tokens`` from
``backend/store/textindex.py``, read with ``git show``) and this checkout's run in turn, one
call each per round, on the same Redis, so the machine's load falls on both alike. Per variant:
p50/p95 of the wall time of ``Store.list_runs`` (newest 50 matches, their records read) and
p50 of the Redis server's CPU time per call (``INFO cpu`` before and after: nothing else may use
that Redis meanwhile), and a check that both give the same page and total.

The store: ``--redis URL`` (already filled, e.g. by ``bench/load.py``; its indexes are rebuilt
first when they have another layout), or a private redis-server filled with ``--runs`` runs as
``bench/load.py`` fills it. The older commit's indexes must be a subset of this checkout's (true
while the word sets, ``wordsfx`` and ``wordlong`` keep their layout).

    nice .venv/bin/python bench/text_search.py --runs 100000 --before 394e99e --repeat 60
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from backend.store import Store, textindex  # noqa: E402
from tscnc.records import RunStatus  # noqa: E402

VARIANTS: dict[str, dict[str, Any]] = {
    "q=s0.9 (two common tokens)": {"text": "s0.9"},
    "q=s0.9 + status=succeeded": {"text": "s0.9", "status": RunStatus.succeeded},
    "q=note (a word)": {"text": "note"},
    "q=40 (inside many words)": {"text": "40"},
    "q=load-0 + status=succeeded": {"text": "load-0", "status": RunStatus.succeeded},
    "q=tscnc-s0.9 (three tokens, checked)": {"text": "tscnc-s0.9"},
}


def older(rev: str) -> types.ModuleType:
    """``backend/store/textindex.py`` as of ``rev``, as a module."""
    src = subprocess.run(["git", "show", f"{rev}:backend/store/textindex.py"], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout
    mod = types.ModuleType("textindex_before")
    exec(compile(src, f"{rev}:backend/store/textindex.py", "exec"), mod.__dict__)
    return mod


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]


def server_cpu(store: Store) -> float:
    info = store.r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--redis", help="a filled store (default: fill a private redis-server)")
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--before", default="HEAD", help="the commit to compare with")
    ap.add_argument("--repeat", type=int, default=60)
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args(argv)

    proc = None
    if args.redis:
        url = args.redis
    else:
        from bench.load import Deadline, fill
        from tests.support.services import start_redis, stop_process
        url, proc = start_redis(tempfile.mkdtemp(prefix="text-search-"))
    try:
        store = Store.from_url(url, timeout=120)
        if not args.redis:
            owner = store.create_token("bench", "admin")[0].id
            t, _ = fill(store, args.runs, owner, Deadline(7200))
            print(f"filled {args.runs} runs in {t:.0f} s", flush=True)
        t0 = time.perf_counter()
        if store.ensure_indexes() is not None:
            print(f"indexes rebuilt in {time.perf_counter() - t0:.0f} s", flush=True)
        runs = sum(store.status_counts().values())
        old = older(args.before)
        codes = {f"before ({args.before})": (store.r.register_script(old.QUERY_SCRIPT),
                                             old.query_tokens),
                 "after (this checkout)": (store._text_query, textindex.query_tokens)}
        current = textindex.query_tokens
        out: dict[str, Any] = {"runs": runs, "before": args.before, "variants": {}}
        try:
            for name, kw in VARIANTS.items():
                wall: dict[str, list[float]] = {c: [] for c in codes}
                cpu: dict[str, list[float]] = {c: [] for c in codes}
                answers: dict[str, tuple[list[str], int]] = {}
                for i in range(args.repeat):
                    order = list(codes) if i % 2 == 0 else list(codes)[::-1]
                    for c in order:
                        store._text_query, textindex.query_tokens = codes[c]
                        c0, t0 = server_cpu(store), time.perf_counter()
                        page, total, _ = store.list_runs(limit=50, **kw)
                        wall[c].append((time.perf_counter() - t0) * 1000)
                        cpu[c].append((server_cpu(store) - c0) * 1000)
                        answers[c] = ([r.id for r in page], total)
                (a, ta), (b, tb) = answers.values()
                assert a == b and ta == tb, (name, ta, tb)
                row = {c: {"p50_ms": statistics.median(wall[c]), "p95_ms": pct(wall[c], 0.95),
                           "redis_cpu_p50_ms": statistics.median(cpu[c])} for c in codes}
                out["variants"][name] = {"matches": ta, **row}
                print(f"{name} ({ta} matches): " + "; ".join(
                    f"{c} p50 {r['p50_ms']:.1f} p95 {r['p95_ms']:.1f} ms, Redis CPU p50 "
                    f"{r['redis_cpu_p50_ms']:.1f} ms" for c, r in row.items()), flush=True)
        finally:
            store._text_query, textindex.query_tokens = codes["after (this checkout)"][0], current
        print(f"runs stored: {runs}; {args.repeat} calls per variant and code, interleaved")
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=2))
        store.close()
    finally:
        if proc is not None:
            stop_process(proc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
