"""Indexes of the sweeps list, maintained on write (part of the data layer, DESIGN §2.4).

Every filter of ``GET /api/v1/sweeps`` is a set of sweep ids scored by the sweep's ``seq``
(under the prefix ``sweeps:``, e.g. ``tscnc:sweeps:dataset:digits``), so that
:func:`backend.store.index.query_ids` intersects them into a page in creation order:

* set once at creation (a sweep's spec never changes): ``dataset:{name}``, ``model:{name}``,
  ``owner:{token id}``, ``method:{m}`` for each of its methods, and ``created`` (scored by the
  creation time: the date filter);
* ``tag:{t}`` and the word index of :mod:`backend.store.textindex` over its name and notes,
  kept by :data:`UPDATE_SCRIPT` with the tags and notes it sets (``PATCH``);
* ``status:{s}``: the sweep's status from its runs' (:func:`backend.views.sweep_status`),
  recomputed by :data:`LUA_SWEEP_STATUS` in the script that changes a run's status
  (:data:`backend.store.scripts.TRANSITION`).

The same script keeps, per sweep, its runs per status (hash ``sweep:{id}:counts``) and the set
of its running runs (``sweep:{id}:running``): a sweep's status and its summary in the sweeps
list (:data:`backend.store.scripts.SUMMARIES`) are read from them, not counted over its runs.

Deletion removes the sweep from every set; :func:`rebuild` (``tscnc reindex``) rebuilds them.
"""

from __future__ import annotations

import json
from typing import Any

from backend.store.index import IndexKeys
from backend.store.textindex import LUA_WORDS, search_text
from tscnc.records import RunStatus
from tscnc.resources import SweepStatus

_STATUSES = "{" + ", ".join(f"'{s.value}'" for s in SweepStatus) + "}"

# tscnc_sweep_run(status hash, counts hash, running set, run id, status): a run's status into
# its sweep's status hash, counts and running set.
# tscnc_sweep_recount(status hash, counts hash, running set): the counts and the running set
# from the status hash (sweep creation, rebuild).
# tscnc_sweep_status(counts hash, sweep hash, sweep id, index prefix): put the sweep into the
# status set its runs' statuses imply (the rule of backend.views.sweep_status).
LUA_SWEEP_STATUS = f"""
local function tscnc_sweep_run(st_hash, counts, running, rid, new)
  local old = redis.call('HGET', st_hash, rid)
  redis.call('HSET', st_hash, rid, new)
  if old then redis.call('HINCRBY', counts, old, -1) end
  redis.call('HINCRBY', counts, new, 1)
  if new == '{RunStatus.running.value}' then redis.call('SADD', running, rid)
  else redis.call('SREM', running, rid) end
end

local function tscnc_sweep_recount(st_hash, counts, running)
  redis.call('DEL', counts, running)
  local h = redis.call('HGETALL', st_hash)
  for j = 1, #h, 2 do
    redis.call('HINCRBY', counts, h[j + 1], 1)
    if h[j + 1] == '{RunStatus.running.value}' then redis.call('SADD', running, h[j]) end
  end
end

local function tscnc_sweep_status(counts, sweep, sid, p)
  local seq = redis.call('HGET', sweep, 'seq')
  if not seq then return end
  local c, n, kinds, last = {{}}, 0, 0, nil
  local h = redis.call('HGETALL', counts)
  for j = 1, #h, 2 do
    local k = tonumber(h[j + 1])
    if k > 0 then c[h[j]] = k; kinds = kinds + 1; last = h[j]; n = n + k end
  end
  local q, r = c['{RunStatus.queued.value}'] or 0, c['{RunStatus.running.value}'] or 0
  local st = '{SweepStatus.finished.value}'
  if n == 0 or q == n then st = '{SweepStatus.queued.value}'
  elseif q > 0 or r > 0 then st = '{SweepStatus.running.value}'
  elseif kinds == 1 then st = last end
  for _, s in ipairs({_STATUSES}) do
    if s == st then redis.call('ZADD', p .. 'status:' .. s, seq, sid)
    else redis.call('ZREM', p .. 'status:' .. s, sid) end
  end
end
"""

# Tags and words of a sweep (from its fields tags and ftext) into the sets they imply.
_LUA_SWEEP = LUA_WORDS + """
local function tscnc_sweep_reindex(sweep, p)
  local h = redis.call('HMGET', sweep, 'id', 'seq', 'tags', 'itags', 'ftext')
  local id, seq = h[1], h[2]
  if not id or not seq then return end
  tscnc_tags_sync(sweep, id, p, seq, h[3], h[4])
  tscnc_words_sync(sweep, id, p, seq, h[5])
end
"""

# Set fields of a sweep (notes, tags) and re-index it. KEYS: sweep hash; ARGV: fields json,
# sweep index prefix. Returns false when the sweep does not exist.
UPDATE_SCRIPT = _LUA_SWEEP + """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
for k, v in pairs(cjson.decode(ARGV[1])) do redis.call('HSET', KEYS[1], k, v) end
tscnc_sweep_reindex(KEYS[1], ARGV[2])
return 1
"""

# KEYS: sweep hash, sweep status hash, counts hash, running set; ARGV: sweep id, index prefix,
# 'd' to remove the sweep from its tag, word and status sets (before a deletion), else
# re-index them (the counts and running set recounted from the status hash).
REINDEX_SCRIPT = _LUA_SWEEP + LUA_SWEEP_STATUS + f"""
if ARGV[3] == 'd' then
  tscnc_words_drop(KEYS[1], ARGV[1], ARGV[2])
  local old = redis.call('HGET', KEYS[1], 'itags')
  if old and old ~= '' then
    for _, t in ipairs(cjson.decode(old)) do redis.call('ZREM', ARGV[2] .. 'tag:' .. t, ARGV[1]) end
  end
  for _, s in ipairs({_STATUSES}) do redis.call('ZREM', ARGV[2] .. 'status:' .. s, ARGV[1]) end
else
  tscnc_sweep_reindex(KEYS[1], ARGV[2])
  tscnc_sweep_recount(KEYS[2], KEYS[3], KEYS[4])
  tscnc_sweep_status(KEYS[3], KEYS[1], ARGV[1], ARGV[2])
end
return 1
"""


def reindex_keys(k: Any, sweep_id: str) -> list[str]:
    """The keys :data:`REINDEX_SCRIPT` takes for a sweep (``k``: the store's
    :class:`backend.store.keys.Keys`)."""
    return [k.sweep(sweep_id), k.sweep_status(sweep_id), k.sweep_counts(sweep_id),
            k.sweep_running(sweep_id)]


def sweep_text(name: str, notes: str) -> str:
    """What a sweep's free text ``q`` is searched in (casefolded; the hash's ``ftext``)."""
    return search_text(name, notes)


def static_sets(ix: IndexKeys, spec: dict[str, Any], owner: str) -> list[str]:
    """The sets a sweep belongs to for good (scored by its seq): dataset, model, owner and
    one per method."""
    out = [ix.vocab("dataset", str(spec.get("dataset", {}).get("name", ""))),
           ix.vocab("model", str(spec.get("model", {}).get("name", ""))),
           ix.vocab("owner", owner)]
    return out + [ix.vocab("method", str(m)) for m in spec.get("methods", [])]


def add_static(p: Any, ix: IndexKeys, sweep_id: str, seq: int, created: float,
               spec: dict[str, Any], owner: str) -> None:
    """Queue the sweep's static sets on pipeline ``p`` (creation, rebuild)."""
    for key in static_sets(ix, spec, owner):
        p.zadd(key, {sweep_id: seq})
    p.zadd(ix.created, {sweep_id: created})


def drop_static(p: Any, ix: IndexKeys, sweep_id: str, spec: dict[str, Any], owner: str) -> None:
    for key in static_sets(ix, spec, owner):
        p.zrem(key, sweep_id)
    p.zrem(ix.created, sweep_id)


def patterns(ix: IndexKeys) -> list[str]:
    """SCAN patterns of every sweeps-list index key."""
    p = ix.prefix
    return [f"{p}{f}:*" for f in ("dataset", "model", "owner", "method", "tag", "status",
                                  "word")] + [
        ix.created, f"{p}words", f"{p}wordsfx", f"{p}wordlong", f"{p}wordpair"]


def rebuild(store: Any, chunk: int = 200) -> int:
    """Rebuild every sweeps-list index from the sweep hashes; returns the number of sweeps."""
    r, k, ix = store.r, store.k, store.sx
    doomed: list[str] = []
    for pat in patterns(ix):
        doomed.extend(r.scan_iter(match=pat, count=1000))
    for i in range(0, len(doomed), 500):
        r.delete(*doomed[i:i + 500])
    ids = r.zrange(k.sweeps, 0, -1)
    for i in range(0, len(ids), chunk):
        part = ids[i:i + chunk]
        with r.pipeline(transaction=False) as p:
            for sid in part:
                p.hmget(k.sweep(sid), "seq", "created", "spec", "owner", "name", "notes")
            rows = p.execute()
        with r.pipeline(transaction=False) as p:
            for sid, (seq, created, spec, owner, name, notes) in zip(part, rows, strict=True):
                if seq is None:
                    continue
                add_static(p, ix, sid, int(seq), float(created or 0), json.loads(spec or "{}"),
                           owner or "")
                p.hdel(k.sweep(sid), "itags", "itext")
                p.hset(k.sweep(sid), "ftext", sweep_text(name or "", notes or ""))
                store._sweep_reindex(keys=reindex_keys(k, sid), args=[sid, ix.prefix, ""],
                                     client=p)
            p.execute()
    return len(ids)
