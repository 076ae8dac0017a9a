"""Stage tasks: thin glue from a queued message to a ``tscnc.pipeline`` call (DESIGN §2, §5).

Each task claims its runs, pipes pipeline events into the runs' streams as they happen, checks
the runs' cancel flags between batches, and records the outcome. Tasks are idempotent: a task
delivered again (after a crash or a re-queue) skips runs that already ended and resumes stages
from their last checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis.exceptions
from celery import signals
from celery.exceptions import Ignore, Reject

from backend.store import RunRecord, Store
from tscnc.dataroots import readable_datasets
from tscnc.errors import Cancelled, TSCNCError, as_out_of_memory
from tscnc.queues import Queue
from tscnc.records import TERMINAL_STATUSES, Event, RunStatus
from tscnc.spec import SweepSpec
from worker.celery_app import TASK_COMPLETE, TASK_PRETRAIN, app
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)


class _RejectWithoutTraceback(logging.Filter):
    """A stage stopped on SIGTERM and queued again (``Reject``, see :func:`_requeue`) is a
    routine stop, not an error: Celery logs every Reject with a traceback, which a Ctrl-C of
    ``tscnc up`` printed to the terminal. Keep the log line, drop the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], Reject):
            record.exc_info, record.exc_text = None, None
        return True


logging.getLogger("celery.app.trace").addFilter(_RejectWithoutTraceback())

_state: dict[str, Any] = {"run": None}
_CANCEL_POLL_S = 0.2
# Set by SIGTERM while a task runs: the stage stops between batches and is re-queued.
_stopping = threading.Event()


def settings() -> WorkerSettings:
    return WorkerSettings()


def store() -> Store:
    if "store" not in _state:
        s = settings()
        _state["store"] = Store.from_url(s.redis_url,
                                         retention_keep_logs=s.retention_keep_logs)
    return _state["store"]  # type: ignore[no-any-return]


# Redis unreachable (restarting, failing over, loading its AOF): worth waiting for.
_STORE_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
_STORE_RETRY_MAX_S = 5.0


class DurableStore:
    """The store as a running stage uses it: a call that fails because Redis is unreachable is
    retried (0.2 s, doubling to 5 s) until Redis answers again, so an outage pauses the run
    instead of failing it. Without this a write that failed mid-stage ended the task with the
    run left ``running`` on a live worker, where nothing would ever pick it up again.

    Gives up only once the worker is asked to stop (SIGTERM): the run is then left ``running``
    on this worker, whose heartbeat stops with it, and another worker re-queues it from its last
    checkpoint when Redis is back. Retried writes are safe: status changes are checked
    transitions and a repeated epoch event is dropped by the store.
    """

    def __init__(self, st: Store) -> None:
        self._st = st

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._st, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            delay, warned = 0.2, False
            while True:
                try:
                    result = attr(*args, **kwargs)
                except _STORE_DOWN as e:
                    if _stopping.is_set():
                        raise
                    if not warned:
                        log.warning("Redis unavailable (%s: %s); %s waits for it",
                                    type(e).__name__, e, name)
                        warned = True
                    time.sleep(delay)
                    delay = min(2 * delay, _STORE_RETRY_MAX_S)
                    continue
                if warned:
                    log.warning("Redis is back; %s went through", name)
                return result

        return call


def task_store() -> Any:
    """The store for task code (a :class:`DurableStore` over :func:`store`)."""
    return DurableStore(store())


_incarnation: dict[int, str] = {}


def worker_name() -> str:
    """This worker process's identity in heartbeats and run claims: the Celery node name plus
    an id drawn when the process starts (``test-0@host#1a2b3c4d``). A worker restarted under
    the same node name (a container keeps its hostname; a pool process is replaced) is then not
    mistaken for the one that died: the dead one's heartbeat expires and its runs are re-queued.
    With the bare name the newcomer's heartbeat kept them "alive", running nowhere, forever."""
    base = os.environ.get("TSCNC_WORKER_NAME") or f"worker-{os.getpid()}"
    return f"{base}#{_incarnation.setdefault(os.getpid(), uuid.uuid4().hex[:8])}"


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.current_device()} {torch.cuda.get_device_name()}"
    return "cpu"


def device_memory_bytes(s: WorkerSettings) -> int:
    """Memory a run may use on this worker: ``TSCNC_WORKER_MEMORY_GIB`` if set, else the
    current GPU's total memory, else physical RAM capped by the cgroup's ``memory.max``."""
    import torch

    if s.memory_gib:
        return int(s.memory_gib * 2**30)
    if torch.cuda.is_available():
        return int(torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory)
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            ram = min(ram, int(limit))
    except OSError:
        pass
    return int(ram)


def _device() -> Any:
    from tscnc.pipeline import resolve_device

    return resolve_device("auto")


# ---- process start-up: name, torch threads, heartbeat + lost-worker watch -------------

@signals.celeryd_init.connect
def _remember_name(sender: str | None = None, **_: Any) -> None:
    # Runs in the parent before the pool forks; children inherit the name.
    if sender:
        os.environ["TSCNC_WORKER_NAME"] = sender


@signals.worker_process_init.connect
def _child_init(**_: Any) -> None:
    _start_background()


@signals.worker_init.connect
def _solo_init(sender: Any = None, **_: Any) -> None:
    # The solo pool runs tasks in this process: start the background thread here.
    pool = getattr(getattr(sender, "pool_cls", None), "__name__", "")
    if "solo" in str(pool).lower() or "Solo" in str(getattr(sender, "pool_cls", "")):
        _start_background()


def _start_background() -> None:
    import torch

    s = settings()
    threads = s.torch_threads or max(1, os.cpu_count() or 1)
    torch.set_num_threads(threads)
    if _state.get("bg"):
        return
    t = threading.Thread(target=_background, name="tscnc-heartbeat", daemon=True)
    _state["bg"] = t
    t.start()


_DATASETS_EVERY_S = 60.0


def _background() -> None:
    s = settings()
    auto = Queue.gpu if device_name() != "cpu" else Queue.cpu
    queue = s.queue if s.queue != "auto" else auto.value
    dev = device_name()
    memory = device_memory_bytes(s)
    healthy_since: float | None = None
    datasets: list[dict[str, str | None]] | None = None
    datasets_at = 0.0
    while True:
        if time.monotonic() - datasets_at >= _DATASETS_EVERY_S:  # a dataset added is seen
            try:
                datasets = readable_datasets()
            except Exception:
                log.warning("could not list the readable datasets", exc_info=True)
            datasets_at = time.monotonic()
        try:
            st = store()
            st.heartbeat(worker_name(), dev, _state["run"], ttl=int(s.heartbeat_ttl),
                         queue=queue, memory_bytes=memory, datasets=datasets)
            now = time.monotonic()
            healthy_since = now if healthy_since is None else healthy_since
            # After a Redis outage longer than the TTL every worker's heartbeat has expired at
            # once: judge other workers only after they have had a full TTL to beat again, or a
            # live worker's running run would be re-queued and trained twice.
            if now - healthy_since >= s.heartbeat_ttl:
                requeue_lost_runs(st, s)
        except Exception:  # Redis restarting: keep beating, never kill the worker
            healthy_since = None
            log.warning("heartbeat failed", exc_info=True)
        time.sleep(s.heartbeat_interval)


def requeue_lost_runs(st: Store, s: WorkerSettings) -> list[str]:
    """Re-queue running runs whose worker stopped beating; fail them after max attempts.

    A lost run that owned a shared pretrain still going on is queued again together with the
    runs waiting for that pretrain (one pretrain task chained to their complete tasks): their
    complete tasks hung on the lost task, whose message the broker hands out again only after
    its visibility timeout (an hour by default), or never when a copy was already taken and
    dropped."""
    from worker.dispatch import enqueue_runs

    alive = {w.name for w in st.workers()}
    moved = []
    for run in st.lost_runs(alive):
        if not st.take_over(run.id, worker_name()):
            continue  # another live worker got there first
        waiting = _waiting_for_pretrain(st, run, Path(s.artifacts_dir) / run.sweep_id)
        for w in waiting:
            _wait(st, w, f"the worker {run.worker} of its shared pretrain was lost; "
                         f"re-queued with {run.key}")
        if run.attempts + 1 >= s.max_attempts:
            st.set_status(run.id, RunStatus.failed, category="worker_lost",
                          message=f"worker {run.worker} was lost {run.attempts + 1} times; "
                                  f"giving up after {s.max_attempts} attempts")
            if waiting:
                enqueue_runs(run.sweep_id, waiting, store=st, grouped=True)
            continue
        st.incr_attempts(run.id)
        st.set_status(run.id, RunStatus.queued,
                      message=f"worker {run.worker} lost; re-queued from the last checkpoint")
        enqueue_runs(run.sweep_id, [run.id, *waiting], store=st, grouped=bool(waiting))
        moved.append(run.id)
    return moved


def _waiting_for_pretrain(st: Store, run: RunRecord, artifacts: Path) -> list[str]:
    """The queued runs of ``run``'s sweep that share its pretrain, while that pretrain is not
    done (none once it is: their complete tasks were queued when it finished)."""
    sweep = st.get_sweep(run.sweep_id)
    if sweep is None or _pretrained(run, artifacts):
        return []
    queued = [r for r in st.get_runs([i for i in sweep.run_ids if i != run.id])
              if r.status == RunStatus.queued]
    groups = sweep.sweep_spec().pretrain_groups([run.run_spec(), *(r.run_spec() for r in queued)])
    mine = {spec.key for spec in next(g for g in groups.values() if g[0].key == run.key)}
    return [r.id for r in queued if r.key in mine]


# ---- helpers ------------------------------------------------------------------------

def _spec(st: Store, sweep_id: str) -> SweepSpec:
    sweep = st.get_sweep(sweep_id)
    if sweep is None:
        raise Ignore()  # the sweep was deleted while its tasks were queued
    return sweep.sweep_spec()


def _startable(st: Store, run_id: str) -> bool:
    """True unless ``run_id`` ended; a run whose cancel was asked for is cancelled now."""
    run = st.get_run(run_id)
    if run is None or RunStatus(run.status) in TERMINAL_STATUSES:
        return False
    if st.cancel_requested(run_id):
        st.set_status(run_id, RunStatus.cancelled, message="cancelled before it started")
        return False
    return True


def _claim(st: Store, run_id: str) -> bool:
    """Mark ``run_id`` running on this worker unless it ended or runs on a live worker."""
    return _startable(st, run_id) and bool(st.claim(run_id, worker_name(), device_name()))


def _wait(st: Store, run_id: str, message: str) -> None:
    """Say why a queued run waits (a status event on its log; it stays ``queued``)."""
    st.set_status(run_id, RunStatus.queued, message=message, expect={RunStatus.queued})


def _throttled(check: Callable[[], bool]) -> Callable[[], bool]:
    last = [0.0, False]

    def f() -> bool:
        now = time.monotonic()
        if now - last[0] >= _CANCEL_POLL_S:
            last[0], last[1] = now, check()
        return bool(last[1])

    return f


@contextlib.contextmanager
def _graceful_stop() -> Iterator[None]:
    """While a task runs, SIGTERM asks it to stop at the next batch instead of killing it.

    Installed per task because the pool resets signal handlers after process start-up.
    """
    _stopping.clear()
    try:
        previous = signal.signal(signal.SIGTERM, lambda *_: _stopping.set())
    except ValueError:  # not the main thread (e.g. threads pool): no graceful stop
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _requeue(st: Store, sweep_id: str, run_ids: list[str], *, grouped: bool) -> None:
    """Queue the stopped stage again in a fresh message; the runs wait, queued, for the next
    worker.

    Not ``Reject(requeue=True)``: when a stage outlasts the broker's visibility timeout, the
    broker has already handed its message to another worker, which found the run running here
    and dropped it; the requeue then has nothing to put back and the run would wait forever. A
    copy still in the queue alongside the new message is harmless (whichever comes second finds
    the run claimed, or its pretrain done)."""
    from worker.dispatch import enqueue_runs

    for r in run_ids:
        st.set_status(r, RunStatus.queued,
                      message="worker stopped (SIGTERM); re-queued, resumes from its last "
                              "checkpoint")
    enqueue_runs(sweep_id, run_ids, store=st, grouped=grouped)
    raise Reject("worker stopping; its stage is queued again", requeue=False)


def _pretrained(run: RunRecord, artifacts: Path) -> bool:
    """True when the pretrained weights of ``run``'s group exist (the stage finished; a crash
    mid-stage leaves epoch checkpoints only, and the stage resumes from them)."""
    from tscnc.pipeline import FINAL_NAME, pretrain_dir

    return (pretrain_dir(artifacts, run.run_spec()) / FINAL_NAME).exists()


def _fail(st: Store, run_id: str, err: BaseException) -> None:
    # A failed allocation raised as MemoryError or a plain RuntimeError (the CPU allocator's)
    # is an out-of-memory failure too, not an ``error``.
    known = err if isinstance(err, TSCNCError) else as_out_of_memory(err)
    if known is not None:
        st.set_status(run_id, RunStatus.failed, category=known.category.value,
                      message=known.message)
    else:
        log.exception("run %s failed", run_id)
        st.set_status(run_id, RunStatus.failed, category="error",
                      message=f"{type(err).__name__}: {err}")


# ---- tasks --------------------------------------------------------------------------

@app.task(name=TASK_PRETRAIN, bind=True)
def pretrain_task(self: Any, sweep_id: str, run_ids: list[str]) -> None:
    """Shared pretrain of a group; events go to every live run of the group.

    ``running`` means a worker executes the run now: the pretrain runs under one run of the
    group (its owner, claimed), the others stay ``queued`` with the message that they wait for
    it (their logs get the shared pretrain's events). When it is done every run of the group
    is ``queued`` again until a worker takes its own prune/finetune/evaluate task.

    A message delivered again after the pretrain finished (acknowledged late, it comes back
    when its worker died or stopped before acknowledging it) returns at once without claiming
    or touching a run: claiming would put a run waiting for its prune/finetune task back to
    ``running`` and then ``queued``, an extra pair in its history. Returning normally lets the
    chain go on, so the group's complete tasks are queued even when the first delivery died
    before queuing them (a run already claimed or ended skips its duplicate).

    While it trains, the task holds the group's lease (:meth:`Store.hold_pretrain`): a copy
    of its message, handed out again when the pretrain outlasts the broker's visibility
    timeout, finds the lease held by a live worker and is dropped, instead of claiming a
    waiting run and training the same pretrain a second time beside the first (on the same
    checkpoints). A holder that died has lost the lease."""
    st = task_store()
    artifacts = Path(settings().artifacts_dir) / sweep_id
    runs = st.get_runs(run_ids)
    if not runs:
        raise Ignore()             # the sweep was deleted while its tasks were queued
    if _pretrained(runs[0], artifacts):
        log.info("pretrain of %s already done (a duplicate delivery); runs left as they are",
                 run_ids)
        return
    key = runs[0].run_spec().pretrain_key
    holder = st.hold_pretrain(sweep_id, key, worker_name())
    if holder is not None:
        log.info("pretrain of %s is being trained by the live worker %s; this copy of its "
                 "message is dropped", run_ids, holder)
        raise Ignore()
    try:
        _pretrain_group(st, sweep_id, run_ids, artifacts, key)
    finally:
        st.release_pretrain(sweep_id, key, worker_name())


def _pretrain_group(st: Store, sweep_id: str, run_ids: list[str], artifacts: Path,
                    key: str) -> None:
    """The body of :func:`pretrain_task`, holding the group's lease ``key``."""
    from tscnc import pipeline

    live: list[str] = []
    owner: list[str] = []          # the run the pretrain runs under (one, or none yet)

    def take_owner() -> None:
        for r in list(live):
            if st.claim(r, worker_name(), device_name()):
                owner[:] = [r]
                others = st.get_run(r)
                for w in live:
                    if w != r:
                        _wait(st, w, f"waiting for its shared pretrain (running under "
                                     f"{others.key if others else r})")
                return
            live.remove(r)         # runs on another live worker: not this task's
        owner.clear()

    for r in run_ids:
        run = st.get_run(r)
        if not _startable(st, r) or run is None:
            continue
        # Queued runs wait for this pretrain; a running one is another (live or lost)
        # worker's, except when this message is redelivered after this group's owner died.
        if run.status == RunStatus.queued or not live:
            live.append(r)
    take_owner()
    if not live:
        raise Ignore()
    spec = _spec(st, sweep_id)
    first = st.get_run(live[0]).run_spec()
    _state["run"] = owner[0] if owner else None

    def emit(ev: Event) -> None:
        if ev.run in live:
            st.record_event(ev.run, ev)   # dropped by the store once the run has ended

    def should_cancel() -> bool:
        if _stopping.is_set():
            return True
        # One run of the group cancelled: confirm it and drop it; stop when none is left.
        # (A queued one was already cancelled by the API; the owner is confirmed here.)
        for r in list(live):
            if st.cancel_requested(r):
                live.remove(r)
                st.set_status(r, RunStatus.cancelled, message="cancelled during its pretrain")
                if owner and owner[0] == r:
                    take_owner()
                    _state["run"] = owner[0] if owner else None
        return not live

    try:
        with _graceful_stop():
            pipeline.pretrain(spec, first, live, artifacts, emit=emit,
                              should_cancel=_throttled(should_cancel), device=_device())
    except Cancelled:
        if _stopping.is_set():
            # Given back before the new message exists, or the worker that takes it would
            # find this (still live) worker holding the lease and drop it.
            st.release_pretrain(sweep_id, key, worker_name())
            _requeue(st, sweep_id, live, grouped=True)
        raise Ignore() from None
    except (TSCNCError, MemoryError, Exception) as e:  # noqa: B014 — every run of the group
        for r in live:
            _fail(st, r, e)
        raise Ignore() from None
    finally:
        _state["run"] = None
    # Each run now waits for a worker to take its own (chained) task, which claims it again.
    for r in live:
        st.set_status(r, RunStatus.queued, expect={RunStatus.queued, RunStatus.running},
                      message="pretrain done; waiting for a worker")


@app.task(name=TASK_COMPLETE, bind=True)
def complete_task(self: Any, sweep_id: str, run_id: str, fresh: bool = False) -> None:
    """Prune + finetune + evaluate one run (evaluate only for dense); ``fresh``: start over
    where a checkpoint is stale (a retry with ``{"fresh": true}``)."""
    from tscnc import pipeline

    st = task_store()
    if not _claim(st, run_id):
        return
    spec = _spec(st, sweep_id)
    run = st.get_run(run_id).run_spec()
    artifacts = Path(settings().artifacts_dir) / sweep_id
    _state["run"] = run_id
    try:
        with _graceful_stop():
            result = pipeline.complete_run(
                spec, run, run_id, artifacts, emit=lambda ev: st.record_event(run_id, ev),
                should_cancel=_throttled(
                    lambda: _stopping.is_set() or st.cancel_requested(run_id)),
                device=_device(), fresh=fresh)
    except Cancelled as e:
        if _stopping.is_set() and not st.cancel_requested(run_id):
            _requeue(st, sweep_id, [run_id], grouped=False)
        st.set_status(run_id, RunStatus.cancelled, message=e.message)
        return
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt | SystemExit):
            raise  # warm shutdown: the message is not acked and goes back to the queue
        _fail(st, run_id, e)
        return
    finally:
        _state["run"] = None
    st.put_result(run_id, result)
    st.set_status(run_id, RunStatus.succeeded)
