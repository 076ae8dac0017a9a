"""The Lua scripts of the store: each status change, event append with its derived run fields,
field update and claim is one script, so it is atomic and the sync and async clients share one
implementation. Every script that writes a run hash re-indexes the run in the same script
(:data:`backend.store.index.LUA_REINDEX`)."""

from __future__ import annotations

from backend.store.index import LUA_REINDEX
from backend.store.sweepindex import LUA_SWEEP_STATUS
from tscnc.records import RunStatus

# Append an event to a run's stream and its sweep's stream and set the run fields it implies.
# KEYS: run hash, run stream, sweep stream, epochs set
# ARGV: run id, event type, event json, dedupe member ('' = none), fields json {str: str},
#       index prefix (backend.store.index: the run's list indexes follow its fields)
APPEND = LUA_REINDEX + """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then return false end
if ARGV[4] ~= '' and redis.call('SADD', KEYS[4], ARGV[4]) == 0 then return false end
local id = redis.call('XADD', KEYS[2], '*', 'run', ARGV[1], 'type', ARGV[2], 'data', ARGV[3])
redis.call('XADD', KEYS[3], '*', 'run', ARGV[1], 'type', ARGV[2], 'data', ARGV[3])
for k, v in pairs(cjson.decode(ARGV[5])) do redis.call('HSET', KEYS[1], k, v) end
tscnc_reindex(KEYS[1], ARGV[1], ARGV[6])
return id
"""

# Change a run's status if allowed, maintaining the indexes, and append the status event.
# KEYS: run hash, run stream, sweep stream, sweep status hash, cancel flag,
#       then one index per status in the order of ARGV[9], then the sweep's counts hash and
#       running set
# ARGV: 1 run id, 2 new status, 3 allowed current statuses (space separated; '' = any),
#       4 event json, 5 fields json, 6 flags ('c' clear cancel flag, 'w' refuse when running on
#       another live worker, 's' no event when the status does not change),
#       7 this worker's name, 8 worker key prefix, 9 status names (space separated),
#       10 index prefix, 11 sweep hash, 12 sweep id, 13 sweep index prefix (the sweep's status
#       set follows its runs': backend.store.sweepindex)
# Returns {1 applied | 0 refused, current status, stream id or ''}
TRANSITION = LUA_REINDEX + LUA_SWEEP_STATUS + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, '', ''} end
local cur = redis.call('HGET', KEYS[1], 'status') or ''
local new = ARGV[2]
if ARGV[3] ~= '' then
  local ok = false
  for s in string.gmatch(ARGV[3], '%S+') do if s == cur then ok = true end end
  if not ok then return {0, cur, ''} end
end
local flags = ARGV[6]
if string.find(flags, 'w', 1, true) and cur == 'running' then
  local w = redis.call('HGET', KEYS[1], 'worker') or ''
  if w ~= '' and w ~= ARGV[7] and redis.call('EXISTS', ARGV[8] .. w) == 1 then
    return {0, cur, ''}
  end
end
for k, v in pairs(cjson.decode(ARGV[5])) do redis.call('HSET', KEYS[1], k, v) end
tscnc_reindex(KEYS[1], ARGV[1], ARGV[10])
if string.find(flags, 'c', 1, true) then redis.call('DEL', KEYS[5]) end
if string.find(flags, 's', 1, true) and cur == new then return {1, cur, ''} end
local seq = redis.call('HGET', KEYS[1], 'seq') or '0'
local i = 6
for s in string.gmatch(ARGV[9], '%S+') do
  if s == new then redis.call('ZADD', KEYS[i], seq, ARGV[1])
  else redis.call('ZREM', KEYS[i], ARGV[1]) end
  i = i + 1
end
local counts, running = KEYS[#KEYS - 1], KEYS[#KEYS]
tscnc_sweep_run(KEYS[4], counts, running, ARGV[1], new)
tscnc_sweep_status(counts, ARGV[11], ARGV[12], ARGV[13])
local id = redis.call('XADD', KEYS[2], '*', 'run', ARGV[1], 'type', 'status', 'data', ARGV[4])
redis.call('XADD', KEYS[3], '*', 'run', ARGV[1], 'type', 'status', 'data', ARGV[4])
return {1, cur, id}
"""

# Set fields of a run (and optionally a string key) only if the run still exists.
# KEYS: run hash, [string key]; ARGV: fields json, string value, incr field, index prefix
# (Store._update pads the optional ones)
UPDATE = LUA_REINDEX + """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
for k, v in pairs(cjson.decode(ARGV[1])) do redis.call('HSET', KEYS[1], k, v) end
tscnc_reindex(KEYS[1], redis.call('HGET', KEYS[1], 'id'), ARGV[4])
if KEYS[2] then redis.call('SET', KEYS[2], ARGV[2]) end
if ARGV[3] and ARGV[3] ~= '' then return redis.call('HINCRBY', KEYS[1], ARGV[3], 1) end
return 1
"""

# Take the lease of a sweep's pretrain for worker ARGV[2], unless another worker holds it and
# is alive (its heartbeat key exists) or the sweep is gone.
# KEYS: the sweep's pretrains hash, the sweep hash; ARGV: pretrain key, worker, worker key prefix
# Returns the live holder, or '' when the lease is taken (or the sweep is gone: false)
HOLD_PRETRAIN = """
if redis.call('EXISTS', KEYS[2]) == 0 then return false end
local h = redis.call('HGET', KEYS[1], ARGV[1])
if h and h ~= ARGV[2] and redis.call('EXISTS', ARGV[3] .. h) == 1 then return h end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return ''
"""

# Give the lease back if ARGV[2] holds it. KEYS: the sweep's pretrains hash; ARGV: pretrain
# key, worker
RELEASE_PRETRAIN = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
"""

# Mark a running run whose worker stopped beating as taken over by ARGV[1].
# KEYS: run hash; ARGV: new worker name, worker key prefix
TAKE_OVER = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
local w = redis.call('HGET', KEYS[1], 'worker') or ''
if w == '' or w == ARGV[1] or redis.call('EXISTS', ARGV[2] .. w) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'worker', ARGV[1])
return 1
"""

STATUS_ORDER = tuple(RunStatus)

# Which current statuses a status may be set from, unless the caller says otherwise.
ALLOWED_FROM: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.queued: frozenset({RunStatus.running, RunStatus.failed, RunStatus.cancelled}),
    RunStatus.running: frozenset({RunStatus.queued, RunStatus.running}),
    RunStatus.succeeded: frozenset({RunStatus.running}),
    RunStatus.failed: frozenset({RunStatus.queued, RunStatus.running}),
    RunStatus.cancelled: frozenset({RunStatus.queued, RunStatus.running}),
}

# The summary of each sweep, read in Redis from what the transition script keeps (a sweep may
# hold thousands of runs: neither their statuses nor a walk over them is needed): per sweep,
# the number of runs in each status of ARGV[2] and the sum of the running runs' progress (as a
# string).
# KEYS: per sweep its counts hash (status -> runs) and running set; ARGV: 1 run key prefix
#       ('tscnc:run:'), 2 status names (space separated)
SUMMARIES = """
local names = {}
for s in string.gmatch(ARGV[2], '%S+') do names[#names + 1] = s end
local out = {}
for i = 1, #KEYS, 2 do
  local counts, running = {}, 0
  local h = redis.call('HGETALL', KEYS[i])
  for j = 1, #h, 2 do counts[h[j]] = tonumber(h[j + 1]) end
  for _, rid in ipairs(redis.call('SMEMBERS', KEYS[i + 1])) do
    running = running + (tonumber(redis.call('HGET', ARGV[1] .. rid, 'progress')) or 0)
  end
  local row = {}
  for k, s in ipairs(names) do row[k] = counts[s] or 0 end
  row[#names + 1] = tostring(running)
  out[#out + 1] = row
end
return out
"""

# Read runs: each run hash (flat field/value list, empty when missing) and its cancel flag.
# KEYS: run hash, cancel flag, run hash, cancel flag, ... ; returns {hash, 0|1, hash, 0|1, ...}
# One call instead of a pipeline of two commands per run: redis-py's per-command cost was most
# of a runs-list page's store time (docs/benchmarks.md).
GET_RUNS = """
local out = {}
for i = 1, #KEYS, 2 do
  out[i] = redis.call('HGETALL', KEYS[i])
  out[i + 1] = redis.call('EXISTS', KEYS[i + 1])
end
return out
"""
