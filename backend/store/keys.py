"""Every Redis key name of the service (DESIGN §2.4: the only place they are spelled).

Layout (prefix ``tscnc:``; ``{run}``/``{sweep}`` are uuid4 hex ids)::

    index:version                string the layout of the list indexes the data was indexed
                                 with (:data:`backend.store.runs.INDEX_VERSION`)
    index:rebuilding             string lock held while one API process rebuilds them
    seq                          counter giving every sweep/run/token/dashboard a unique,
                                 increasing score (list order and pagination cursor)
    sweep:{sweep}                hash   id, name, preset, owner, owner_name, created, seq,
                                        spec (SweepSpec JSON), run_ids (JSON list), enqueued, idem
    sweep:{sweep}:runs           zset   run ids of the sweep (index "by sweep")
    sweep:{sweep}:status         hash   run id -> status (the sweep's status set is kept from it)
    sweep:{sweep}:counts         hash   status -> runs in it (sweep summaries, kept on write)
    sweep:{sweep}:running        set    ids of its running runs (their progress: summaries)
    sweep:{sweep}:pretrains      hash   pretrain key -> the worker whose pretrain task trains it
                                        (a lease: a copy of the task's message leaves it alone)
    sweep:{sweep}:events         stream the events of all its runs (sweep SSE)
    sweeps                       zset   sweep ids (index "by time")
    idem:{owner}:{sha256(key)}   string sweep id for an Idempotency-Key (expires)
    run:{run}                    hash   the fields of :class:`backend.store.records.RunRecord`
    run:{run}:events             stream append-only events, field data = event JSON
    run:{run}:epochs             set    "stage:epoch" already recorded (drops repeats)
    run:{run}:result             string RunResult JSON
    run:{run}:cancel             string "1" while a cancel is requested
    runs                         zset   all run ids (index "by time")
    runs:status:{status}         zset   index "by status"
    runs:method:{method}         zset   index "by method"
    runs:...                     zsets  the list indexes of :mod:`backend.store.index` (and the
                                        word index of :mod:`backend.store.textindex`)
    sweeps:...                   zsets  the sweeps list's, :mod:`backend.store.sweepindex`
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
"""

from __future__ import annotations

import hashlib
import uuid

from tscnc.queues import Queue
from tscnc.records import RunStatus
from tscnc.spec import Method

# Celery's Redis transport: a queue is a list named after it, plus one list per extra
# priority step (kombu's default steps 0, 3, 6, 9, separator "\x06\x16").
CELERY_PRIORITY_STEPS = (3, 6, 9)
_CELERY_PRIORITY_SEP = "\x06\x16"
CELERY_QUEUES = tuple(q.value for q in Queue)


class Keys:
    """Every Redis key name of the service: fixed keys are attributes, per-item keys
    methods."""

    # Celery's Redis transport: messages delivered but not yet acknowledged (hash by delivery
    # tag; handed out again after the visibility timeout).
    CELERY_UNACKED = "unacked"

    def __init__(self, prefix: str = "tscnc") -> None:
        self.p = p = prefix
        self.seq = f"{p}:seq"
        self.index_version = f"{p}:index:version"
        self.index_rebuilding = f"{p}:index:rebuilding"
        self.sweeps = f"{p}:sweeps"
        self.runs = f"{p}:runs"
        self.tokens = f"{p}:tokens"
        self.tokens_index = f"{p}:tokens:index"
        self.dashboards = f"{p}:dashboards"
        self.worker_prefix = f"{p}:worker:"
        self.workers = f"{p}:workers"

    def sweep(self, sweep_id: str, part: str = "") -> str:
        """The sweep's hash, or with ``part`` one of its other keys (``runs``, ``status``,
        ``counts``, ``running``, ``pretrains``, ``events``)."""
        return f"{self.p}:sweep:{sweep_id}" + (f":{part}" if part else "")

    def sweep_runs(self, sweep_id: str) -> str:
        return self.sweep(sweep_id, "runs")

    def sweep_status(self, sweep_id: str) -> str:
        return self.sweep(sweep_id, "status")

    def sweep_counts(self, sweep_id: str) -> str:
        return self.sweep(sweep_id, "counts")

    def sweep_running(self, sweep_id: str) -> str:
        return self.sweep(sweep_id, "running")

    def sweep_pretrains(self, sweep_id: str) -> str:
        return self.sweep(sweep_id, "pretrains")

    def sweep_stream(self, sweep_id: str) -> str:
        return self.sweep(sweep_id, "events")

    def idempotency(self, owner: str, key: str) -> str:
        return f"{self.p}:idem:{owner}:{sha256(key)}"

    def run(self, run_id: str, part: str = "") -> str:
        """The run's hash, or with ``part`` one of its other keys (``events``, ``epochs``,
        ``result``, ``cancel``)."""
        return f"{self.p}:run:{run_id}" + (f":{part}" if part else "")

    def run_stream(self, run_id: str) -> str:
        return self.run(run_id, "events")

    def run_epochs(self, run_id: str) -> str:
        return self.run(run_id, "epochs")

    def run_result(self, run_id: str) -> str:
        return self.run(run_id, "result")

    def run_cancel(self, run_id: str) -> str:
        return self.run(run_id, "cancel")

    def runs_by_status(self, status: RunStatus | str) -> str:
        return f"{self.runs}:status:{RunStatus(status).value}"

    def runs_by_method(self, method: Method | str) -> str:
        return f"{self.runs}:method:{Method(method).value}"

    def token(self, secret_hash: str) -> str:
        return f"{self.p}:token:{secret_hash}"

    def dashboard(self, dashboard_id: str) -> str:
        return f"{self.p}:dashboard:{dashboard_id}"

    def dashboards_by_owner(self, owner: str) -> str:
        return f"{self.dashboards}:owner:{owner}"

    def share(self, token_hash: str) -> str:
        return f"{self.p}:share:{token_hash}"

    def worker(self, name: str) -> str:
        return f"{self.worker_prefix}{name}"

    def tmp(self) -> str:
        return f"{self.p}:tmp:{uuid.uuid4().hex}"

    @staticmethod
    def celery_queue(name: str) -> list[str]:
        """The lists holding a Celery queue's waiting messages (one per priority step)."""
        return [name] + [f"{name}{_CELERY_PRIORITY_SEP}{p}" for p in CELERY_PRIORITY_STEPS]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def hash_secret(secret: str) -> str:
    """sha256 hex of a token: what is stored instead of the token."""
    return sha256(secret)
