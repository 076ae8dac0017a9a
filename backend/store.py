"""The data layer: every Redis key name and the event encoding live here (DESIGN §2.4, §4).

Torch-free; used by the API (:class:`Store` in the request thread pool, :class:`AsyncStore` for
the Server-Sent Event streams) and by the Celery workers (:class:`Store`).

Layout (prefix ``tscnc:``; ``{run}``/``{sweep}`` are uuid4 hex ids)::

    seq                          counter giving every sweep/run/token/dashboard a unique,
                                 increasing score (list order and pagination cursor)
    sweep:{sweep}                hash   id, name, preset, owner, owner_name, created, seq,
                                        spec (SweepSpec JSON), run_ids (JSON list), enqueued, idem
    sweep:{sweep}:runs           zset   run ids of the sweep (index "by sweep")
    sweep:{sweep}:status         hash   run id -> status (sweep summaries in one command)
    sweep:{sweep}:events         stream the events of all its runs (sweep SSE)
    sweeps                       zset   sweep ids (index "by time")
    idem:{owner}:{sha256(key)}   string sweep id for an Idempotency-Key (expires)
    run:{run}                    hash   see RUN_FIELDS
    run:{run}:events             stream append-only events, field data = event JSON
    run:{run}:epochs             set    "stage:epoch" already recorded (drops repeats)
    run:{run}:result             string RunResult JSON
    run:{run}:cancel             string "1" while a cancel is requested
    runs                         zset   all run ids (index "by time")
    runs:status:{status}         zset   index "by status"
    runs:method:{method}         zset   index "by method"
    token:{sha256(secret)}       hash   id, name, role, created, expires, revoked, seq
    tokens                       hash   token id -> sha256(secret)
    tokens:index                 zset   token ids by creation
    dashboard:{id}               hash   id, name, owner, sweep_ids, state, created, revoked, share
    dashboards                   zset   dashboard ids;  dashboards:owner:{owner}  per owner
    share:{sha256(token)}        string dashboard id
    worker:{name}                hash   name, device, queue, run, last_seen (expires: heartbeat)
    workers                      zset   worker names by last heartbeat

Every index uses the same score (the ``seq`` of the item), so cursors are exact (keyset
pagination) and filters combine by intersection. Celery's own keys (its queues are lists
named after the queue) are spelled here too, for the queue depths.

Hash values are strings; ``""`` means None. Events are :data:`tscnc.records.Event` JSON
(``event.model_dump_json()``); each stream entry has the fields ``run`` (run id), ``type`` and
``data``. Status changes, event appends with their derived run fields, and claims are Lua
scripts, so each is atomic and the sync and async clients share one implementation.

Example::

    >>> store = Store.from_url("redis://127.0.0.1:6379/0")          # doctest: +SKIP
    >>> sweep, created = store.create_sweep(preset("digits-quick"), owner="tok1")  # doctest: +SKIP
    >>> store.set_status(sweep.run_ids[0], RunStatus.running, worker="w1", device="cpu")  # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
import json
import secrets
import statistics
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import redis
import redis.asyncio as aredis
from pydantic import BaseModel, ConfigDict, Field
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from backend import store_index, store_retention
from tscnc.records import (
    TERMINAL_STATUSES,
    EpochEvent,
    EvaluationEvent,
    Event,
    FailureCategory,
    ProgressEvent,
    RunResult,
    RunStatus,
    Stage,
    StageFinished,
    StageStarted,
    StatusEvent,
    parse_event,
)
from tscnc.spec import Method, ParamValue, RunSpec, SweepSpec

# ---- keys ----------------------------------------------------------------------------------

# Celery's Redis transport: a queue is a list named after it, plus one list per extra
# priority step (kombu's default steps 0, 3, 6, 9, separator "\x06\x16").
_CELERY_PRIORITY_STEPS = (3, 6, 9)
_CELERY_PRIORITY_SEP = "\x06\x16"
CELERY_QUEUES = ("gpu", "cpu")


class IdempotencyConflict(Exception):
    """An Idempotency-Key already names a sweep with another spec or preset (HTTP 409)."""

    def __init__(self, sweep_id: str) -> None:
        super().__init__(sweep_id)
        self.sweep_id = sweep_id


class Keys:
    """Every Redis key name of the service (the only place they are spelled)."""

    def __init__(self, prefix: str = "tscnc") -> None:
        self.p = prefix

    @property
    def seq(self) -> str:
        return f"{self.p}:seq"

    def sweep(self, sweep_id: str) -> str:
        return f"{self.p}:sweep:{sweep_id}"

    def sweep_runs(self, sweep_id: str) -> str:
        return f"{self.p}:sweep:{sweep_id}:runs"

    def sweep_status(self, sweep_id: str) -> str:
        return f"{self.p}:sweep:{sweep_id}:status"

    def sweep_stream(self, sweep_id: str) -> str:
        return f"{self.p}:sweep:{sweep_id}:events"

    @property
    def sweeps(self) -> str:
        return f"{self.p}:sweeps"

    def idempotency(self, owner: str, key: str) -> str:
        return f"{self.p}:idem:{owner}:{_sha256(key)}"

    def run(self, run_id: str) -> str:
        return f"{self.p}:run:{run_id}"

    def run_stream(self, run_id: str) -> str:
        return f"{self.p}:run:{run_id}:events"

    def run_epochs(self, run_id: str) -> str:
        return f"{self.p}:run:{run_id}:epochs"

    def run_result(self, run_id: str) -> str:
        return f"{self.p}:run:{run_id}:result"

    def run_cancel(self, run_id: str) -> str:
        return f"{self.p}:run:{run_id}:cancel"

    @property
    def runs(self) -> str:
        return f"{self.p}:runs"

    def runs_by_status(self, status: RunStatus | str) -> str:
        return f"{self.p}:runs:status:{RunStatus(status).value}"

    def runs_by_method(self, method: Method | str) -> str:
        return f"{self.p}:runs:method:{Method(method).value}"

    def token(self, secret_hash: str) -> str:
        return f"{self.p}:token:{secret_hash}"

    @property
    def tokens(self) -> str:
        return f"{self.p}:tokens"

    @property
    def tokens_index(self) -> str:
        return f"{self.p}:tokens:index"

    def dashboard(self, dashboard_id: str) -> str:
        return f"{self.p}:dashboard:{dashboard_id}"

    @property
    def dashboards(self) -> str:
        return f"{self.p}:dashboards"

    def dashboards_by_owner(self, owner: str) -> str:
        return f"{self.p}:dashboards:owner:{owner}"

    def share(self, token_hash: str) -> str:
        return f"{self.p}:share:{token_hash}"

    @property
    def worker_prefix(self) -> str:
        return f"{self.p}:worker:"

    def worker(self, name: str) -> str:
        return f"{self.worker_prefix}{name}"

    @property
    def workers(self) -> str:
        return f"{self.p}:workers"

    def tmp(self) -> str:
        return f"{self.p}:tmp:{uuid.uuid4().hex}"

    # Celery's Redis transport: messages delivered but not yet acknowledged (hash by delivery
    # tag; handed out again after the visibility timeout).
    CELERY_UNACKED = "unacked"

    @staticmethod
    def celery_queue(name: str) -> list[str]:
        """The lists holding a Celery queue's waiting messages (one per priority step)."""
        return [name] + [f"{name}{_CELERY_PRIORITY_SEP}{p}" for p in _CELERY_PRIORITY_STEPS]


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def hash_secret(secret: str) -> str:
    """sha256 hex of a token: what is stored instead of the token."""
    return _sha256(secret)


# ---- encoding ------------------------------------------------------------------------------

def encode_event(event: Event) -> str:
    """The stored form of an event (JSON; infinities as "Infinity")."""
    return event.model_dump_json()


def decode_event(data: str | bytes) -> Event:
    return parse_event(data)


def _enc(v: Any) -> str:
    """Hash value encoding: None -> "", bool -> "1"/"0", float -> repr, else str."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return repr(v)
    if hasattr(v, "value"):          # enums
        return str(v.value)
    return str(v)


def _opt(v: str | None) -> str | None:
    return v if v else None


def _opt_float(v: str | None) -> float | None:
    return float(v) if v else None


def _opt_int(v: str | None) -> int | None:
    return int(v) if v else None


def _median(values: Iterable[float]) -> float | None:
    vals = list(values)
    return float(statistics.median(vals)) if vals else None


class StreamEntry(NamedTuple):
    """One stream entry: id (the SSE id), run id, event type and event JSON."""

    id: str
    run_id: str
    type: str
    data: str


_MAX_STREAM_ID = f"{2**64 - 1}-{2**64 - 1}"


def _entries(raw: Sequence[Any]) -> list[StreamEntry]:
    return [StreamEntry(eid, f.get("run", ""), f.get("type", ""), f.get("data", "{}"))
            for eid, f in raw]


# ---- records -------------------------------------------------------------------------------

class _Rec(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RunRecord(_Rec):
    id: str
    sweep_id: str
    key: str
    sweep_name: str = ""
    dataset: str = ""
    model: str = ""
    method: Method
    sparsity: float
    seed: int
    params: dict[str, ParamValue] = Field(default_factory=dict)   # grid values by spec path
    status: RunStatus
    stage: Stage | None = None
    epoch: int | None = None
    progress: float = 0.0
    total_epochs: int = 0
    offsets: dict[str, int] = Field(default_factory=dict)
    category: FailureCategory | None = None
    message: str | None = None
    created: float
    started: float | None = None
    finished: float | None = None
    worker: str | None = None
    device: str | None = None
    attempts: int = 0
    task_id: str | None = None
    owner: str = ""
    seq: int = 0
    clean_accuracy: float | None = None
    robust_accuracy: float | None = None
    kappa_median: float | None = None
    sparsity_actual: float | None = None
    # The training monitor's latest epoch (progress, not results).
    monitor_stage: Stage | None = None
    monitor_epoch: int | None = None
    monitor_clean_accuracy: float | None = None
    monitor_robust_accuracy: float | None = None
    monitor_kappa_median: float | None = None
    monitor_sparsity: float | None = None
    checkpoint: str | None = None
    has_result: bool = False
    cancel_requested: bool = False
    notes: str = ""
    tags: list[str] = Field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def run_spec(self) -> RunSpec:
        """The run as :class:`tscnc.spec.RunSpec` (what the pipeline and grouping take)."""
        return RunSpec(method=self.method, sparsity=self.sparsity, seed=self.seed,
                       params=self.params)


def _decode_run(h: Mapping[str, str], cancel: bool = False) -> RunRecord | None:
    if not h or not h.get("id") or not h.get("sweep_id"):
        return None
    return RunRecord(
        id=h["id"], sweep_id=h["sweep_id"], key=h.get("key", ""),
        sweep_name=h.get("sweep_name", ""), dataset=h.get("dataset", ""),
        model=h.get("model", ""), method=Method(h["method"]),
        sparsity=float(h["sparsity"]), seed=int(h["seed"]),
        params=json.loads(h.get("params") or "{}"), status=RunStatus(h["status"]),
        stage=Stage(h["stage"]) if h.get("stage") else None, epoch=_opt_int(h.get("epoch")),
        progress=min(1.0, max(0.0, float(h.get("progress") or 0))),
        total_epochs=int(h.get("total_epochs") or 0),
        offsets=json.loads(h.get("offsets") or "{}"),
        category=FailureCategory(h["category"]) if h.get("category") else None,
        message=_opt(h.get("message")), created=float(h.get("created") or 0),
        started=_opt_float(h.get("started")), finished=_opt_float(h.get("finished")),
        worker=_opt(h.get("worker")), device=_opt(h.get("device")),
        attempts=int(h.get("attempts") or 0), task_id=_opt(h.get("task_id")),
        owner=h.get("owner", ""), seq=int(h.get("seq") or 0),
        clean_accuracy=_opt_float(h.get("clean_accuracy")),
        robust_accuracy=_opt_float(h.get("robust_accuracy")),
        kappa_median=_opt_float(h.get("kappa_median")),
        sparsity_actual=_opt_float(h.get("sparsity_actual")),
        monitor_stage=Stage(h["monitor_stage"]) if h.get("monitor_stage") else None,
        monitor_epoch=_opt_int(h.get("monitor_epoch")),
        monitor_clean_accuracy=_opt_float(h.get("monitor_clean_accuracy")),
        monitor_robust_accuracy=_opt_float(h.get("monitor_robust_accuracy")),
        monitor_kappa_median=_opt_float(h.get("monitor_kappa_median")),
        monitor_sparsity=_opt_float(h.get("monitor_sparsity")),
        checkpoint=_opt(h.get("checkpoint")), has_result=h.get("has_result") == "1",
        cancel_requested=cancel, notes=h.get("notes", ""), tags=json.loads(h.get("tags") or "[]"),
    )


class SweepRecord(_Rec):
    id: str
    name: str
    preset: str | None = None
    owner: str
    owner_name: str = ""
    created: float
    seq: int = 0
    spec: dict[str, Any]
    run_ids: list[str]
    enqueued: bool = False
    notes: str = ""
    tags: list[str] = Field(default_factory=list)

    def sweep_spec(self) -> SweepSpec:
        return SweepSpec.model_validate(self.spec)


def _decode_sweep(h: Mapping[str, str]) -> SweepRecord | None:
    if not h or not h.get("id"):
        return None
    return SweepRecord(
        id=h["id"], name=h.get("name", ""), preset=_opt(h.get("preset")), owner=h.get("owner", ""),
        owner_name=h.get("owner_name", ""), created=float(h.get("created") or 0),
        seq=int(h.get("seq") or 0), spec=json.loads(h.get("spec") or "{}"),
        run_ids=json.loads(h.get("run_ids") or "[]"), enqueued=h.get("enqueued") == "1",
        notes=h.get("notes", ""), tags=json.loads(h.get("tags") or "[]"),
    )


class SweepSummary(_Rec):
    """Counts of runs per status and mean progress of a sweep."""

    counts: dict[RunStatus, int]
    progress: float


class TokenRecord(_Rec):
    id: str
    name: str
    role: str
    created: float
    expires: float | None = None
    revoked: bool = False
    seq: int = 0

    def valid(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return not self.revoked and (self.expires is None or self.expires > now)


def _decode_token(h: Mapping[str, str]) -> TokenRecord | None:
    if not h or not h.get("id"):
        return None
    return TokenRecord(id=h["id"], name=h.get("name", ""), role=h.get("role", "viewer"),
                       created=float(h.get("created") or 0), expires=_opt_float(h.get("expires")),
                       revoked=h.get("revoked") == "1", seq=int(h.get("seq") or 0))


class DashboardRecord(_Rec):
    id: str
    name: str
    owner: str
    sweep_ids: list[str]
    state: dict[str, Any]
    created: float
    revoked: bool = False
    seq: int = 0
    allow_checkpoints: bool = False
    state_error: str | None = None      # why the stored state could not be read (state is {})


def _decode_dashboard(h: Mapping[str, str]) -> DashboardRecord | None:
    """Decode a stored dashboard; never raises, whatever the hash holds (a damaged field is
    replaced by its default, a damaged state is reported in ``state_error``)."""
    if not h or not h.get("id"):
        return None

    def loads(field: str, default: Any, kind: type) -> tuple[Any, bool]:
        try:
            value = json.loads(h.get(field) or json.dumps(default))
        except (ValueError, RecursionError):
            return default, False
        return (value, True) if isinstance(value, kind) else (default, False)

    def number(field: str, kind: Callable[[str], Any]) -> Any:
        try:
            return kind(h.get(field) or "0")
        except (ValueError, OverflowError):
            return kind("0")

    state, ok = loads("state", {}, dict)
    sweep_ids, _ = loads("sweep_ids", [], list)
    return DashboardRecord(id=str(h["id"]), name=str(h.get("name", "")),
                           owner=str(h.get("owner", "")),
                           sweep_ids=[x for x in sweep_ids if isinstance(x, str)], state=state,
                           created=number("created", float), revoked=h.get("revoked") == "1",
                           seq=number("seq", int), allow_checkpoints=h.get("checkpoints") == "1",
                           state_error=None if ok else "the stored state is not a JSON object")


class WorkerRecord(_Rec):
    name: str
    device: str
    queue: str | None = None
    run: str | None = None
    last_seen: float
    # Memory the worker's device offers (RAM of a CPU worker, GPU memory of a GPU worker), bytes.
    memory_bytes: int | None = None
    # Datasets it can read: [{"name", "data_dir"}] (data_dir None: a data root itself).
    datasets: list[dict[str, str | None]] | None = None


# Run fields a listing can be ordered by (besides creation time); the ALPHA ones sort as text.
RUN_SORT_FIELDS = frozenset({"sparsity", "seed", "progress", "clean_accuracy", "robust_accuracy",
                             "kappa_median", "sparsity_actual", "key", "method", "status"})
RUN_SORT_ALPHA = frozenset({"key", "method", "status"})


class Page(NamedTuple):
    """A page of ids (newest first unless asked otherwise); ``next`` is the cursor or None."""

    ids: list[str]
    total: int
    next: str | None


# ---- Lua scripts (atomic, shared by the sync and async clients) ----------------------------

# Append an event to a run's stream and its sweep's stream and set the run fields it implies.
# KEYS: run hash, run stream, sweep stream, epochs set
# ARGV: run id, event type, event json, dedupe member ('' = none), fields json {str: str},
#       index prefix (store_index: the run's list indexes follow its fields)
_APPEND = store_index.LUA_REINDEX + """
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
#       then one index per status in the order of ARGV[9]
# ARGV: 1 run id, 2 new status, 3 allowed current statuses (space separated; '' = any),
#       4 event json, 5 fields json, 6 flags ('c' clear cancel flag, 'w' refuse when running on
#       another live worker, 's' no event when the status does not change),
#       7 this worker's name, 8 worker key prefix, 9 status names (space separated),
#       10 index prefix
# Returns {1 applied | 0 refused, current status, stream id or ''}
_TRANSITION = store_index.LUA_REINDEX + """
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
redis.call('HSET', KEYS[4], ARGV[1], new)
local id = redis.call('XADD', KEYS[2], '*', 'run', ARGV[1], 'type', 'status', 'data', ARGV[4])
redis.call('XADD', KEYS[3], '*', 'run', ARGV[1], 'type', 'status', 'data', ARGV[4])
return {1, cur, id}
"""

# Set fields of a run (and optionally a string key) only if the run still exists.
# KEYS: run hash, [string key]; ARGV: fields json, string value, incr field, index prefix
# (Store._update pads the optional ones)
_UPDATE = store_index.LUA_REINDEX + """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
for k, v in pairs(cjson.decode(ARGV[1])) do redis.call('HSET', KEYS[1], k, v) end
tscnc_reindex(KEYS[1], redis.call('HGET', KEYS[1], 'id'), ARGV[4])
if KEYS[2] then redis.call('SET', KEYS[2], ARGV[2]) end
if ARGV[3] and ARGV[3] ~= '' then return redis.call('HINCRBY', KEYS[1], ARGV[3], 1) end
return 1
"""

# Mark a running run whose worker stopped beating as taken over by ARGV[1].
# KEYS: run hash; ARGV: new worker name, worker key prefix
_TAKE_OVER = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
local w = redis.call('HGET', KEYS[1], 'worker') or ''
if w == '' or w == ARGV[1] or redis.call('EXISTS', ARGV[2] .. w) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'worker', ARGV[1])
return 1
"""

_STATUS_ORDER = tuple(RunStatus)

# Which current statuses a status may be set from, unless the caller says otherwise.
ALLOWED_FROM: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.queued: frozenset({RunStatus.running, RunStatus.failed, RunStatus.cancelled}),
    RunStatus.running: frozenset({RunStatus.queued, RunStatus.running}),
    RunStatus.succeeded: frozenset({RunStatus.running}),
    RunStatus.failed: frozenset({RunStatus.queued, RunStatus.running}),
    RunStatus.cancelled: frozenset({RunStatus.queued, RunStatus.running}),
}


def stage_offsets(spec: SweepSpec, method: Method) -> dict[str, int]:
    """Epochs of a run done before each stage starts (for the run's progress)."""
    total = spec.total_epochs(method)
    t = spec.training
    finetune_start = total - t.finetune_epochs if method != Method.dense else total
    return {Stage.pretrain.value: 0, Stage.prune.value: t.pretrain_epochs,
            Stage.finetune.value: finetune_start, Stage.evaluate.value: total}


def derived_fields(event: Event, run: RunRecord) -> dict[str, Any]:
    """Run fields an event implies (stage, epoch, progress, latest metrics, checkpoint)."""
    total = run.total_epochs

    def frac(stage: Stage, done: float) -> float:
        if total <= 0:
            return 0.0
        return min(1.0, max(0.0, (run.offsets.get(stage.value, 0) + done) / total))

    f: dict[str, Any] = {}
    if isinstance(event, StageStarted):
        f.update(stage=event.stage, epoch=event.resumed_from_epoch,
                 progress=frac(event.stage, event.resumed_from_epoch))
    elif isinstance(event, EpochEvent):
        # Monitor values go to their own fields: the result columns (and sorting by them)
        # hold evaluated numbers only.
        f.update(stage=event.stage, epoch=event.epoch, progress=frac(event.stage, event.epoch),
                 monitor_stage=event.stage, monitor_epoch=event.epoch,
                 monitor_clean_accuracy=event.clean_accuracy,
                 monitor_robust_accuracy=event.robust_accuracy,
                 monitor_kappa_median=_median(event.condition_numbers.values()),
                 monitor_sparsity=event.sparsity)
    elif isinstance(event, ProgressEvent):
        done = event.epoch - 1 + (event.batch / event.batches if event.batches else 0.0)
        f.update(stage=event.stage, epoch=event.epoch - 1, progress=frac(event.stage, done))
    elif isinstance(event, EvaluationEvent):
        ev = event.evaluation
        f.update(stage=Stage.evaluate, clean_accuracy=ev.clean_accuracy)
        if ev.attacks:
            f["robust_accuracy"] = min(a.accuracy for a in ev.attacks)
        if ev.spectra:
            f["kappa_median"] = _median(s.condition_number for s in ev.spectra)
    elif isinstance(event, StageFinished) and event.checkpoint:
        f["checkpoint"] = event.checkpoint
    return f


def _fields_json(fields: Mapping[str, Any]) -> str:
    return json.dumps({k: _enc(v) for k, v in fields.items()})


def _redis_kwargs(timeout: float, retries: int) -> dict[str, Any]:
    return dict(decode_responses=True, socket_timeout=timeout,
                socket_connect_timeout=min(timeout, 2.0),
                retry=Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), retries),
                health_check_interval=30)


# ---- the store -----------------------------------------------------------------------------

class Store:
    """Synchronous data layer (redis-py). Thread-safe: one connection pool per instance."""

    def __init__(self, client: redis.Redis, keys: Keys | None = None) -> None:
        # decode_responses=True: every reply is str (redis-py's stubs say bytes | str).
        self.r: Any = client
        self.k = keys or Keys()
        self._append = client.register_script(_APPEND)
        self._transition = client.register_script(_TRANSITION)
        self._update_script = client.register_script(_UPDATE)
        self._reindex = client.register_script(store_index.REINDEX_SCRIPT)
        self._compact = client.register_script(store_retention.COMPACT_SCRIPT)
        self._text = client.register_script(store_index.TEXT_SCRIPT)
        self.ix = store_index.IndexKeys(self.k.runs)
        self._take_over = client.register_script(_TAKE_OVER)
        self._static: dict[str, RunRecord] = {}     # immutable run fields, per process

    def _update(self, keys: Sequence[str], args: Sequence[str]) -> Any:
        """Run the field-update script (optional arguments padded; the index prefix last)."""
        return self._update_script(keys=keys,
                                   args=[*args, *[""] * (3 - len(args)), self.ix.prefix])

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 5.0, retries: int = 10) -> Store:
        """Connect lazily to ``url``. The worker keeps the default retries (rides out a Redis
        restart); the API uses few retries and a short timeout so requests fail fast (503)."""
        return cls(redis.Redis.from_url(url, **_redis_kwargs(timeout, retries)))

    def close(self) -> None:
        self.r.close()

    def ping(self) -> bool:
        return bool(self.r.ping())

    # ---- sweeps and runs: creation -----------------------------------------------------

    def create_sweep(self, spec: SweepSpec, owner: str, idempotency_key: str | None = None, *,
                     owner_name: str = "", preset: str | None = None,
                     idempotency_ttl: int = 86400) -> tuple[SweepRecord, bool]:
        """Store a sweep and one queued run per ``spec.runs()``.

        With ``idempotency_key`` the same (owner, key) returns the first sweep and False, if
        that sweep has the same spec and preset; otherwise :class:`IdempotencyConflict`.
        Creation is one MULTI transaction (WATCH on the key makes concurrent retries safe).
        """
        k = self.k
        idem = k.idempotency(owner, idempotency_key) if idempotency_key else None
        runs = spec.runs()
        specs = [spec.for_run(rs) for rs in runs]   # each run's grid values applied
        spec_json = spec.model_dump_json()
        with self.r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    if idem:
                        pipe.watch(idem)
                        existing = pipe.get(idem)
                        if existing:
                            found = self.get_sweep(existing)
                            if found is not None:
                                pipe.reset()
                                if found.spec != json.loads(spec_json) or found.preset != preset:
                                    raise IdempotencyConflict(found.id)
                                return found, False
                    last = int(self.r.incrby(k.seq, len(runs) + 1))
                    seq0 = last - len(runs)
                    now = time.time()
                    sweep_id = uuid.uuid4().hex
                    run_ids = [uuid.uuid4().hex for _ in runs]
                    pipe.multi()
                    pipe.hset(k.sweep(sweep_id), mapping={
                        "id": sweep_id, "name": spec.name, "preset": _enc(preset),
                        "owner": owner, "owner_name": owner_name, "created": _enc(now),
                        "seq": str(seq0), "spec": spec_json, "run_ids": json.dumps(run_ids),
                        "enqueued": "0", "idem": idem or ""})
                    pipe.zadd(k.sweeps, {sweep_id: seq0})
                    for i, (rid, rs) in enumerate(zip(run_ids, runs, strict=True)):
                        seq = seq0 + 1 + i
                        pipe.hset(k.run(rid), mapping={
                            "id": rid, "sweep_id": sweep_id, "key": rs.key,
                            "sweep_name": spec.name, "dataset": spec.dataset.name.value,
                            "model": spec.model.name.value,
                            "method": rs.method.value, "sparsity": _enc(rs.sparsity),
                            "seed": str(rs.seed), "params": json.dumps(rs.params),
                            "status": RunStatus.queued.value, "stage": "",
                            "epoch": "", "progress": "0",
                            "total_epochs": str(specs[i].total_epochs(rs.method)),
                            "offsets": json.dumps(stage_offsets(specs[i], rs.method)),
                            "category": "", "message": "", "created": _enc(now), "started": "",
                            "finished": "", "worker": "", "device": "", "attempts": "0",
                            "task_id": "", "owner": owner, "seq": str(seq), "checkpoint": "",
                            "has_result": "0"})
                        pipe.zadd(k.runs, {rid: seq})
                        pipe.zadd(k.runs_by_status(RunStatus.queued), {rid: seq})
                        pipe.zadd(k.runs_by_method(rs.method), {rid: seq})
                        pipe.zadd(k.sweep_runs(sweep_id), {rid: seq})
                        pipe.hset(k.sweep_status(sweep_id), rid, RunStatus.queued.value)
                        self._reindex(keys=[k.run(rid)], args=[rid, self.ix.prefix, ""],
                                      client=pipe)
                        data = encode_event(StatusEvent(run=rid, status=RunStatus.queued,
                                                        time=now))
                        fields = {"run": rid, "type": "status", "data": data}
                        pipe.xadd(k.run_stream(rid), fields)
                        pipe.xadd(k.sweep_stream(sweep_id), fields)
                    if idem:
                        pipe.set(idem, sweep_id, ex=idempotency_ttl)
                    pipe.execute()
                    break
                except redis.WatchError:
                    continue
        sweep = self.get_sweep(sweep_id)
        assert sweep is not None
        return sweep, True

    def mark_enqueued(self, sweep_id: str) -> None:
        if self.r.exists(self.k.sweep(sweep_id)):
            self.r.hset(self.k.sweep(sweep_id), "enqueued", "1")

    # ---- reads -----------------------------------------------------------------------------

    def get_sweep(self, sweep_id: str) -> SweepRecord | None:
        return _decode_sweep(self.r.hgetall(self.k.sweep(sweep_id)))

    def get_run(self, run_id: str) -> RunRecord | None:
        with self.r.pipeline(transaction=False) as p:
            p.hgetall(self.k.run(run_id))
            p.exists(self.k.run_cancel(run_id))
            h, cancel = p.execute()
        return _decode_run(h, bool(cancel))

    def get_runs(self, run_ids: Sequence[str]) -> list[RunRecord]:
        """Runs in the given order (missing ones skipped)."""
        if not run_ids:
            return []
        with self.r.pipeline(transaction=False) as p:
            for rid in run_ids:
                p.hgetall(self.k.run(rid))
                p.exists(self.k.run_cancel(rid))
            res = p.execute()
        out = []
        for i in range(0, len(res), 2):
            rec = _decode_run(res[i], bool(res[i + 1]))
            if rec is not None:
                out.append(rec)
        return out

    def get_sweeps(self, sweep_ids: Sequence[str]) -> list[SweepRecord]:
        if not sweep_ids:
            return []
        with self.r.pipeline(transaction=False) as p:
            for sid in sweep_ids:
                p.hgetall(self.k.sweep(sid))
            res = p.execute()
        return [s for s in (_decode_sweep(h) for h in res) if s is not None]

    def sweep_runs(self, sweep_id: str) -> list[RunRecord]:
        """A sweep's runs in spec order."""
        return self.get_runs(self.r.zrange(self.k.sweep_runs(sweep_id), 0, -1))

    def sweep_summaries(self, sweep_ids: Sequence[str]) -> dict[str, SweepSummary]:
        """Per sweep: runs per status and mean progress (finished runs count as 1)."""
        if not sweep_ids:
            return {}
        with self.r.pipeline(transaction=False) as p:
            for sid in sweep_ids:
                p.hgetall(self.k.sweep_status(sid))
            statuses = p.execute()
        with self.r.pipeline(transaction=False) as p:
            for st in statuses:
                for rid, s in st.items():
                    if s == RunStatus.running.value:
                        p.hget(self.k.run(rid), "progress")
            prog = iter(p.execute())
        out = {}
        for sid, st in zip(sweep_ids, statuses, strict=True):
            counts = {s: 0 for s in RunStatus}
            total = 0.0
            for s in st.values():
                counts[RunStatus(s)] += 1
                if s == RunStatus.running.value:
                    total += float(next(prog) or 0)
                elif RunStatus(s) in TERMINAL_STATUSES:
                    total += 1.0
            out[sid] = SweepSummary(counts=counts, progress=min(1.0, total / len(st)) if st else 0.0)
        return out

    def sweep_statuses(self, sweep_id: str) -> dict[str, RunStatus]:
        return {r: RunStatus(s) for r, s in self.r.hgetall(self.k.sweep_status(sweep_id)).items()}

    def status_counts(self) -> dict[RunStatus, int]:
        with self.r.pipeline(transaction=False) as p:
            for s in RunStatus:
                p.zcard(self.k.runs_by_status(s))
            return dict(zip(RunStatus, (int(n) for n in p.execute()), strict=True))

    def _page(self, keys: list[str], limit: int, cursor: str | None, desc: bool) -> Page:
        """Keyset pagination over the intersection of index zsets (scores are unique seqs)."""
        if cursor is not None:
            c = int(cursor)
            lo, hi = ("-inf", f"({c}") if desc else (f"({c}", "+inf")
        else:
            lo, hi = "-inf", "+inf"
        with self.r.pipeline(transaction=True) as p:
            if len(keys) == 1:
                key = keys[0]
            else:
                key = self.k.tmp()
                p.zinterstore(key, keys, aggregate="MAX")
            if desc:
                p.zrevrangebyscore(key, hi, lo, start=0, num=limit + 1, withscores=True)
            else:
                p.zrangebyscore(key, lo, hi, start=0, num=limit + 1, withscores=True)
            p.zcard(key)
            if len(keys) > 1:
                p.delete(key)
            res = p.execute()
        off = 1 if len(keys) > 1 else 0
        rows, total = res[off], int(res[off + 1])
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = str(int(rows[-1][1])) if more and rows else None
        return Page([m for m, _ in rows], total, nxt)

    def list_runs(self, *, sweep_id: str | None = None, status: RunStatus | None = None,
                  method: Method | None = None, limit: int = 50, cursor: str | None = None,
                  desc: bool = True, sort: str | None = None,
                  where: store_index.IndexFilter | None = None, text: str | None = None,
                  text_limit: int = 50, text_cursor: str | None = None
                  ) -> tuple[list[RunRecord], int, str | None]:
        """Runs matching all the given filters (``where``: dataset, model, owner, tag, dates,
        metric range), newest first, or ordered by ``sort`` (one of :data:`RUN_SORT_FIELDS`),
        answered from the list indexes (:mod:`backend.store_index`); returns
        (runs, total, next).

        ``text``: free text over key, sweep name and notes, checked over the first ``limit``
        candidates only (a bounded scan); the matches are paged by ``text_limit`` from the
        offset ``text_cursor``."""
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

        page = store_index.query_ids(self.r, self.ix, self.k.tmp, keys, where, sort, desc, limit,
                                     cursor, self.k.runs, by_key)
        if text is not None:   # bounded scan of the candidates' names and notes only
            ids = self._text_matches(page.ids, text)
            start = int(text_cursor or 0)
            end = start + text_limit
            return (self.get_runs(ids[start:end]), len(ids),
                    str(end) if end < len(ids) else None)
        return self.get_runs(page.ids), page.total, page.next

    def _text_matches(self, ids: Sequence[str], text: str) -> list[str]:
        """The ids (in order) whose key, sweep name or notes contain ``text`` (casefolded).

        An ASCII ``text`` is matched inside Redis (:data:`store_index.TEXT_SCRIPT`) for runs
        whose fields are ASCII (where lower-casing is casefolding); the other runs, and any
        non-ASCII text, are checked here with :meth:`str.casefold`."""
        q = text.casefold()
        keep: set[str] = set()
        check: Sequence[str] = ids
        if ids and text.isascii():
            sure, check = self._text(keys=[], args=[self.k.run(""), q, *ids])
            keep.update(sure)
        if check:
            with self.r.pipeline(transaction=False) as p:
                for rid in check:
                    p.hmget(self.k.run(rid), "key", "sweep_name", "notes")
                rows = p.execute()
            keep.update(rid for rid, row in zip(check, rows, strict=True)
                        if q in "\n".join(x or "" for x in row).casefold())
        return [rid for rid in ids if rid in keep]

    def compact_events(self, keep_logs: int = 100) -> tuple[int, int]:
        """Apply the retention policy to the streams of finished runs and sweeps
        (:mod:`backend.store_retention`); returns (streams compacted, entries dropped)."""
        return store_retention.compact_finished(self, keep_logs)

    def reindex(self) -> int:
        """Rebuild every runs-list index from the run hashes (``tscnc reindex``); returns the
        number of runs."""
        return store_index.rebuild(self.r, self.ix, self.k.run, self.k.runs,
                                   self.k.runs_by_status, self.k.runs_by_method, self._reindex)

    def list_sweeps(self, *, limit: int = 50, cursor: str | None = None,
                    desc: bool = True) -> tuple[list[SweepRecord], int, str | None]:
        page = self._page([self.k.sweeps], limit, cursor, desc)
        return self.get_sweeps(page.ids), page.total, page.next

    # ---- events ----------------------------------------------------------------------------

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

    def record_event(self, run_id: str, event: Event) -> str | None:
        """Append ``event`` to the run's stream and its sweep's stream, atomically with the run
        fields it implies (stage, epoch, progress, latest metrics). Returns the run stream id,
        or None when dropped: an epoch event whose (stage, epoch) is already recorded (a
        resumed stage never shows an epoch twice), an unknown/deleted run, or a run that has
        ended (nothing follows its final status, e.g. a shared pretrain still going on for
        the rest of its group after this run was cancelled). A StatusEvent
        goes through :meth:`set_status`. ``event.run`` is set to ``run_id``.
        """
        if isinstance(event, StatusEvent):
            ok, sid = self._set_status(run_id, event.status, category=event.category,
                                       message=event.message)
            return sid or None
        if event.run != run_id:
            event = event.model_copy(update={"run": run_id})
        run = self._run_static(run_id)
        if run is None:
            return None
        dedupe = f"{event.stage.value}:{event.epoch}" if isinstance(event, EpochEvent) else ""
        k = self.k
        res = self._append(
            keys=[k.run(run_id), k.run_stream(run_id), k.sweep_stream(run.sweep_id),
                  k.run_epochs(run_id)],
            args=[run_id, event.type, encode_event(event), dedupe,
                  _fields_json(derived_fields(event, run)), self.ix.prefix])
        return res or None

    def epoch_keys(self, run_id: str) -> set[tuple[str, int]]:
        """(stage, epoch) pairs already recorded for the run."""
        out = set()
        for m in self.r.smembers(self.k.run_epochs(run_id)):
            stage, _, epoch = m.partition(":")
            out.add((stage, int(epoch)))
        return out

    def _range(self, stream: str, after: str | None, limit: int) -> list[StreamEntry]:
        if after == _MAX_STREAM_ID:
            return []                      # nothing can follow the largest id
        lo = f"({after}" if after else "-"
        return _entries(self.r.xrange(stream, lo, "+", count=limit))

    def events(self, run_id: str, after: str | None = None, limit: int = 100) -> list[StreamEntry]:
        """Past events of a run, oldest first, strictly after stream id ``after``."""
        return self._range(self.k.run_stream(run_id), after, limit)

    def sweep_events(self, sweep_id: str, after: str | None = None,
                     limit: int = 100) -> list[StreamEntry]:
        return self._range(self.k.sweep_stream(sweep_id), after, limit)

    # ---- status ----------------------------------------------------------------------------

    def _transition_call(self, run_id: str, status: RunStatus, allowed: Iterable[RunStatus] | None,
                         event: StatusEvent, fields: Mapping[str, Any], flags: str = "",
                         me: str = "") -> tuple[bool, str, str]:
        run = self._run_static(run_id)
        if run is None:
            return False, "", ""
        k = self.k
        allowed_s = "" if allowed is None else " ".join(sorted(RunStatus(s).value for s in allowed))
        ok, cur, sid = self._transition(
            keys=[k.run(run_id), k.run_stream(run_id), k.sweep_stream(run.sweep_id),
                  k.sweep_status(run.sweep_id), k.run_cancel(run_id),
                  *[k.runs_by_status(s) for s in _STATUS_ORDER]],
            args=[run_id, status.value, allowed_s, encode_event(event), _fields_json(fields),
                  flags, me, k.worker_prefix, " ".join(s.value for s in _STATUS_ORDER),
                  self.ix.prefix])
        return bool(ok), cur, sid

    def _set_status(self, run_id: str, status: RunStatus | str, *,
                    category: FailureCategory | str | None = None, message: str | None = None,
                    worker: str | None = None, device: str | None = None,
                    expect: Iterable[RunStatus] | None = None, force: bool = False,
                    clear_cancel: bool = False) -> tuple[bool, str]:
        status = RunStatus(status)
        cat = FailureCategory(category) if category else None
        if status == RunStatus.failed and cat is None:
            cat = FailureCategory.error
        now = time.time()
        fields: dict[str, Any] = {"status": status, "message": message, "category": cat}
        if status == RunStatus.running:
            fields.update(started=now, finished=None)
            if worker is not None:
                fields["worker"] = worker
            if device is not None:
                fields["device"] = device
        elif status == RunStatus.queued:
            fields.update(finished=None, worker=None, device=None)
        else:
            fields["finished"] = now
            if status == RunStatus.succeeded:
                fields["progress"] = 1.0
        allowed = None if force else (expect if expect is not None else ALLOWED_FROM[status])
        ev = StatusEvent(run=run_id, status=status, category=cat, message=message, time=now)
        ok, _, sid = self._transition_call(run_id, status, allowed, ev, fields,
                                           "c" if clear_cancel else "")
        return ok, sid

    def set_status(self, run_id: str, status: RunStatus | str, *,
                   category: FailureCategory | str | None = None, message: str | None = None,
                   worker: str | None = None, device: str | None = None,
                   expect: Iterable[RunStatus] | None = None, force: bool = False) -> bool:
        """Change a run's status, maintain the status index and append a StatusEvent to its
        streams, atomically. Returns False (and changes nothing) when the run is unknown or
        the change is not allowed from its current status (:data:`ALLOWED_FROM`, or ``expect``
        when given; ``force`` skips the check). ``failed`` without a category records
        ``error``. ``running`` sets ``started``, ``worker``, ``device``; terminal statuses set
        ``finished``; ``queued`` clears the worker.
        """
        ok, _ = self._set_status(run_id, status, category=category, message=message,
                                 worker=worker, device=device, expect=expect, force=force)
        return ok

    def claim(self, run_id: str, worker: str, device: str) -> bool:
        """Mark a run running on ``worker`` unless it has ended or runs on another live worker
        (whose heartbeat has not expired). A StatusEvent is appended only when the status
        changes (queued → running); re-claiming a running run just updates worker/device."""
        now = time.time()
        run = self._run_static(run_id)
        if run is None:
            return False
        ev = StatusEvent(run=run_id, status=RunStatus.running, time=now)
        fields: dict[str, Any] = {"status": RunStatus.running, "worker": worker,
                                  "device": device, "finished": None, "category": None,
                                  "message": None}
        cur = self.r.hget(self.k.run(run_id), "status")
        if cur != RunStatus.running.value:
            fields["started"] = now
        ok, _, _ = self._transition_call(run_id, RunStatus.running,
                                         {RunStatus.queued, RunStatus.running}, ev, fields,
                                         "ws", worker)
        return ok

    def release(self, run_id: str) -> bool:
        """Forget the worker of a running run (between stages, so the next stage's task can
        claim it on any worker). The run stays running."""
        return bool(self._update(keys=[self.k.run(run_id)], args=[_fields_json({"worker": None})]))

    def lost_runs(self, alive: Iterable[str]) -> list[RunRecord]:
        """Running runs whose worker is set but not among ``alive`` (worker names)."""
        alive = set(alive)
        ids = self.r.zrange(self.k.runs_by_status(RunStatus.running), 0, -1)
        if not ids:
            return []
        with self.r.pipeline(transaction=False) as p:
            for rid in ids:
                p.hget(self.k.run(rid), "worker")
            workers = p.execute()
        lost = [rid for rid, w in zip(ids, workers, strict=True) if w and w not in alive]
        return [r for r in self.get_runs(lost) if r.status == RunStatus.running]

    def take_over(self, run_id: str, worker: str) -> bool:
        """Atomically take a running run whose worker's heartbeat expired (only one live
        worker wins); the caller then re-queues or fails it."""
        return bool(self._take_over(keys=[self.k.run(run_id)], args=[worker, self.k.worker_prefix]))

    def retry_run(self, run_id: str) -> bool:
        """failed/cancelled → queued, clearing the cancel flag and counting one more attempt
        (events are kept)."""
        ok, _ = self._set_status(run_id, RunStatus.queued, message="retried",
                                 expect={RunStatus.failed, RunStatus.cancelled},
                                 clear_cancel=True)
        if ok:
            self._update(keys=[self.k.run(run_id)],
                         args=[_fields_json({"progress": 0.0, "stage": None, "epoch": None})])
            self.incr_attempts(run_id)
        return ok

    # ---- small run updates -------------------------------------------------------------

    def set_task_id(self, run_id: str, task_id: str) -> bool:
        return bool(self._update(keys=[self.k.run(run_id)],
                                 args=[_fields_json({"task_id": task_id})]))

    def incr_attempts(self, run_id: str) -> int:
        """Add one to the run's attempts; returns the new count (0 if the run is unknown)."""
        res = self._update(keys=[self.k.run(run_id)], args=["{}", "", "attempts"])
        return int(res or 0)

    def put_result(self, run_id: str, result: RunResult) -> bool:
        """Store the final result and copy its headline numbers onto the run."""
        robust = min(result.robust_accuracy.values()) if result.robust_accuracy else None
        fields = {"has_result": True, "clean_accuracy": result.clean_accuracy,
                  "robust_accuracy": robust, "kappa_median": result.condition_number.median,
                  "sparsity_actual": result.sparsity_actual, "checkpoint": result.checkpoint}
        return bool(self._update(keys=[self.k.run(run_id), self.k.run_result(run_id)],
                                 args=[_fields_json(fields), result.model_dump_json()]))

    def get_result(self, run_id: str) -> RunResult | None:
        raw = self.r.get(self.k.run_result(run_id))
        return RunResult.model_validate_json(raw) if raw else None

    def get_results(self, run_ids: Sequence[str]) -> dict[str, RunResult]:
        if not run_ids:
            return {}
        raws = self.r.mget([self.k.run_result(r) for r in run_ids])
        return {r: RunResult.model_validate_json(x) for r, x in zip(run_ids, raws, strict=True)
                if x}

    def annotate(self, kind: str, item_id: str, *, notes: str | None = None,
                 tags: Sequence[str] | None = None) -> bool:
        """Set the notes and/or the tags (None: unchanged) of a ``kind`` ("sweep" or "run");
        False when it does not exist."""
        fields: dict[str, Any] = {}
        if notes is not None:
            fields["notes"] = notes
        if tags is not None:
            fields["tags"] = json.dumps(list(tags))
        key = self.k.sweep(item_id) if kind == "sweep" else self.k.run(item_id)
        return bool(self._update(keys=[key], args=[_fields_json(fields)]))

    def request_cancel(self, run_id: str, ttl: int = 7 * 86400) -> None:
        self.r.set(self.k.run_cancel(run_id), "1", ex=ttl)

    def cancel_requested(self, run_id: str) -> bool:
        return bool(self.r.exists(self.k.run_cancel(run_id)))

    # ---- deletion ----------------------------------------------------------------------

    def delete_sweep(self, sweep_id: str) -> bool:
        """Remove a sweep with its runs, events and results (cancel flags are kept until they
        expire so a worker still running one of its runs stops)."""
        sweep = self.get_sweep(sweep_id)
        if sweep is None:
            return False
        runs = self.get_runs(sweep.run_ids)
        k = self.k
        idem = self.r.hget(k.sweep(sweep_id), "idem")
        with self.r.pipeline(transaction=True) as p:
            for run in runs:
                self._reindex(keys=[k.run(run.id)], args=[run.id, self.ix.prefix, "d"], client=p)
                p.delete(k.run(run.id), k.run_stream(run.id), k.run_epochs(run.id),
                         k.run_result(run.id))
                p.zrem(k.runs, run.id)
                p.zrem(k.runs_by_method(run.method), run.id)
                for s in RunStatus:
                    p.zrem(k.runs_by_status(s), run.id)
                self._static.pop(run.id, None)
            p.delete(k.sweep(sweep_id), k.sweep_runs(sweep_id), k.sweep_status(sweep_id),
                     k.sweep_stream(sweep_id))
            if idem:
                p.delete(idem)
            p.zrem(k.sweeps, sweep_id)
            p.execute()
        return True

    # ---- workers and queues --------------------------------------------------------------

    def heartbeat(self, worker: str, device: str, run_id: str | None, ttl: int,
                  queue: str | None = None, memory_bytes: int | None = None,
                  datasets: Sequence[Mapping[str, str | None]] | None = None) -> None:
        """Record that ``worker`` is alive (expires after ``ttl`` seconds), what memory its
        device offers (admission of new sweeps compares their estimate with it) and which
        datasets it can read (``[{"name": "mnist", "data_dir": None}, ...]``; None: not told)."""
        now = time.time()
        key = self.k.worker(worker)
        with self.r.pipeline(transaction=True) as p:
            p.hset(key, mapping={"name": worker, "device": device, "queue": _enc(queue),
                                 "run": _enc(run_id), "last_seen": _enc(now),
                                 "memory": _enc(memory_bytes),
                                 "datasets": "" if datasets is None else json.dumps(
                                     [dict(d) for d in datasets])})
            p.expire(key, max(1, int(ttl)))
            p.zadd(self.k.workers, {worker: now})
            p.execute()

    def workers(self) -> list[WorkerRecord]:
        """Workers whose heartbeat has not expired (expired ones are dropped from the index)."""
        names = self.r.zrange(self.k.workers, 0, -1)
        if not names:
            return []
        with self.r.pipeline(transaction=False) as p:
            for n in names:
                p.hgetall(self.k.worker(n))
            hs = p.execute()
        out, gone = [], []
        for n, h in zip(names, hs, strict=True):
            if not h:
                gone.append(n)
                continue
            out.append(WorkerRecord(name=h.get("name", n), device=h.get("device", ""),
                                    queue=_opt(h.get("queue")), run=_opt(h.get("run")),
                                    last_seen=float(h.get("last_seen") or 0),
                                    memory_bytes=int(h["memory"]) if h.get("memory") else None,
                                    datasets=json.loads(h["datasets"]) if h.get("datasets")
                                    else None))
        if gone:
            self.r.zrem(self.k.workers, *gone)
        return sorted(out, key=lambda w: w.name)

    def queue_depths(self, queues: Iterable[str] = CELERY_QUEUES) -> dict[str, int]:
        """Messages waiting in each Celery queue (all priority lists)."""
        queues = list(queues)
        with self.r.pipeline(transaction=False) as p:
            for q in queues:
                for key in self.k.celery_queue(q):
                    p.llen(key)
            res = p.execute()
        n = 1 + len(_CELERY_PRIORITY_STEPS)
        return {q: int(sum(res[i * n:(i + 1) * n])) for i, q in enumerate(queues)}

    def unacked_messages(self) -> int:
        """Celery messages delivered to a worker and not yet acknowledged (running stages, or
        messages of a worker that died, waiting for the visibility timeout)."""
        return int(self.r.hlen(self.k.CELERY_UNACKED))

    # ---- tokens --------------------------------------------------------------------------

    def create_token(self, name: str, role: str, *, expires: float | None = None,
                     secret: str | None = None) -> tuple[TokenRecord, str]:
        """Create an API token; returns (record, secret). Only sha256(secret) is stored.
        Passing an existing ``secret`` returns its record unchanged (idempotent bootstrap)."""
        secret = secret or "tscnc_" + secrets.token_urlsafe(32)
        h = hash_secret(secret)
        existing = self.token_for_secret(secret)
        if existing is not None:
            return existing, secret
        seq = int(self.r.incr(self.k.seq))
        tid = uuid.uuid4().hex[:16]
        now = time.time()
        with self.r.pipeline(transaction=True) as p:
            p.hset(self.k.token(h), mapping={"id": tid, "name": name, "role": role,
                                             "created": _enc(now), "expires": _enc(expires),
                                             "revoked": "0", "seq": str(seq)})
            p.hset(self.k.tokens, tid, h)
            p.zadd(self.k.tokens_index, {tid: seq})
            p.execute()
        rec = _decode_token(self.r.hgetall(self.k.token(h)))
        assert rec is not None
        return rec, secret

    def token_for_secret(self, secret: str) -> TokenRecord | None:
        """The token record for a presented secret (None if unknown; check ``valid()``)."""
        return _decode_token(self.r.hgetall(self.k.token(hash_secret(secret))))

    def get_token(self, token_id: str) -> TokenRecord | None:
        h = self.r.hget(self.k.tokens, token_id)
        return _decode_token(self.r.hgetall(self.k.token(h))) if h else None

    def list_tokens(self, *, limit: int = 50, cursor: str | None = None
                    ) -> tuple[list[TokenRecord], int, str | None]:
        page = self._page([self.k.tokens_index], limit, cursor, True)
        if not page.ids:
            return [], page.total, page.next
        hashes = self.r.hmget(self.k.tokens, page.ids)
        with self.r.pipeline(transaction=False) as p:
            for h in hashes:
                p.hgetall(self.k.token(h or "-"))
            recs = [_decode_token(x) for x in p.execute()]
        return [r for r in recs if r is not None], page.total, page.next

    def revoke_token(self, token_id: str) -> bool:
        h = self.r.hget(self.k.tokens, token_id)
        if not h:
            return False
        self.r.hset(self.k.token(h), "revoked", "1")
        return True

    def has_tokens(self) -> bool:
        return bool(self.r.hlen(self.k.tokens))

    # ---- dashboards ----------------------------------------------------------------------

    def create_dashboard(self, name: str, owner: str, sweep_ids: Sequence[str],
                         state: Mapping[str, Any], *,
                         allow_checkpoints: bool = False) -> tuple[DashboardRecord, str]:
        """Create a shared dashboard; returns (record, share token). The share token has 256
        random bits; only its sha256 is stored. ``allow_checkpoints``: the link may download
        the checkpoints of its runs."""
        share = "tscncs_" + secrets.token_urlsafe(32)
        seq = int(self.r.incr(self.k.seq))
        did = uuid.uuid4().hex
        k = self.k
        with self.r.pipeline(transaction=True) as p:
            p.hset(k.dashboard(did), mapping={
                "id": did, "name": name, "owner": owner, "sweep_ids": json.dumps(list(sweep_ids)),
                "state": json.dumps(state), "created": _enc(time.time()), "revoked": "0",
                "seq": str(seq), "share": hash_secret(share),
                "checkpoints": "1" if allow_checkpoints else "0"})
            p.set(k.share(hash_secret(share)), did)
            p.zadd(k.dashboards, {did: seq})
            p.zadd(k.dashboards_by_owner(owner), {did: seq})
            p.execute()
        rec = self.get_dashboard(did)
        assert rec is not None
        return rec, share

    def get_dashboard(self, dashboard_id: str) -> DashboardRecord | None:
        return _decode_dashboard(self.r.hgetall(self.k.dashboard(dashboard_id)))

    def dashboard_for_share(self, share_token: str) -> DashboardRecord | None:
        """The dashboard a share token opens (None if unknown or revoked)."""
        did = self.r.get(self.k.share(hash_secret(share_token)))
        rec = self.get_dashboard(did) if did else None
        return rec if rec is not None and not rec.revoked else None

    def list_dashboards(self, *, owner: str | None = None, limit: int = 50,
                        cursor: str | None = None) -> tuple[list[DashboardRecord], int, str | None]:
        key = self.k.dashboards_by_owner(owner) if owner is not None else self.k.dashboards
        page = self._page([key], limit, cursor, True)
        with self.r.pipeline(transaction=False) as p:
            for did in page.ids:
                p.hgetall(self.k.dashboard(did))
            recs = [_decode_dashboard(h) for h in p.execute()] if page.ids else []
        return [r for r in recs if r is not None], page.total, page.next

    def revoke_dashboard(self, dashboard_id: str) -> bool:
        """Revoke the share link and remove the dashboard from the lists."""
        rec = self.get_dashboard(dashboard_id)
        if rec is None:
            return False
        k = self.k
        share = self.r.hget(k.dashboard(dashboard_id), "share")
        with self.r.pipeline(transaction=True) as p:
            p.hset(k.dashboard(dashboard_id), "revoked", "1")
            if share:
                p.delete(k.share(share))
            p.zrem(k.dashboards, dashboard_id)
            p.zrem(k.dashboards_by_owner(rec.owner), dashboard_id)
            p.execute()
        return True


class AsyncStore:
    """Asynchronous reads for the Server-Sent Event streams (redis.asyncio)."""

    def __init__(self, client: aredis.Redis, keys: Keys | None = None) -> None:
        self.r: Any = client
        self.k = keys or Keys()

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 30.0, retries: int = 1,
                 max_connections: int = 10_000) -> AsyncStore:
        """``timeout`` must exceed the longest blocking read (the SSE keep-alive interval).
        Each stream followed live holds a connection in a blocking read, so the pool is
        sized for streams (redis-py's own default is 100 connections)."""
        return cls(aredis.Redis.from_url(url, max_connections=max_connections,
                                         **_redis_kwargs(timeout, retries)))

    async def close(self) -> None:
        await self.r.aclose()

    async def ping(self) -> bool:
        return bool(await self.r.ping())

    async def run_status(self, run_id: str) -> RunStatus | None:
        s = await self.r.hget(self.k.run(run_id), "status")
        return RunStatus(s) if s else None

    async def run_state(self, run_id: str) -> tuple[RunStatus, str] | None:
        """(status, sweep id) of a run, None if unknown."""
        st, sweep = await self.r.hmget(self.k.run(run_id), ["status", "sweep_id"])
        return (RunStatus(st), sweep) if st and sweep else None

    async def sweep_statuses(self, sweep_id: str) -> dict[str, RunStatus] | None:
        """Run id → status of a sweep's runs (None if the sweep does not exist)."""
        async with self.r.pipeline(transaction=False) as p:
            p.exists(self.k.sweep(sweep_id))
            p.hgetall(self.k.sweep_status(sweep_id))
            exists, st = await p.execute()
        if not exists:
            return None
        return {r: RunStatus(s) for r, s in st.items()}

    async def read(self, stream: str, after: str, *, block_ms: int | None,
                   count: int = 500) -> list[StreamEntry]:
        """Entries of ``stream`` after id ``after`` ("0-0" = from the start), waiting up to
        ``block_ms`` for new ones (None = do not wait)."""
        res = await self.r.xread({stream: after}, count=count, block=block_ms)
        if not res:
            return []
        if isinstance(res, dict):                       # RESP3
            return _entries(next(iter(res.values()))[0])
        return _entries(res[0][1])

    async def last_id(self, stream: str) -> str:
        """Id of the newest entry of ``stream`` ("0-0" when empty or missing)."""
        res = await self.r.xrevrange(stream, "+", "-", count=1)
        return str(res[0][0]) if res else "0-0"

    def run_stream(self, run_id: str) -> str:
        return self.k.run_stream(run_id)

    def sweep_stream(self, sweep_id: str) -> str:
        return self.k.sweep_stream(sweep_id)

