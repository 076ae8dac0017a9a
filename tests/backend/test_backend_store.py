"""The data layer against a real redis-server: sweeps/runs, events, statuses, indexes,
pagination, claims and heartbeats, results, deletion, tokens and share links."""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

from backend.store import Keys, Store, hash_secret
from tests.support.wait import wait_until
from tscnc.records import (
    ConditionSummary,
    EpochEvent,
    LogEvent,
    ProgressEvent,
    RunResult,
    RunStatus,
    Stage,
    StageStarted,
    parse_event,
)
from tscnc.spec import Method, SweepSpec, TrainingSpec

ROOT = Path(__file__).resolve().parents[2]


def small_spec(**kw) -> SweepSpec:
    base = dict(methods=[Method.dense, Method.lwm, Method.tscnc], sparsities=[0.5, 0.9],
                seeds=[0], training=TrainingSpec(pretrain_epochs=4, prune_epochs=2,
                                                 finetune_epochs=2))
    base.update(kw)
    return SweepSpec(**base)


def epoch(run: str, stage: Stage, e: int, n: int = 4, kappas=None) -> EpochEvent:
    return EpochEvent(run=run, stage=stage, epoch=e, epochs=n, loss=1.0 / e, clean_accuracy=0.8,
                      robust_accuracy=0.4, lr=0.1, sparsity=0.0,
                      condition_numbers=kappas or {"fc1": 2.0, "fc2": 4.0, "fc3": 10.0})


def result(run_id: str, kappa_max: float = math.inf) -> RunResult:
    return RunResult(run=run_id, method=Method.tscnc, sparsity=0.9, sparsity_actual=0.9012,
                     sparsity_per_layer={"fc1": 0.9}, seed=0, clean_accuracy=0.91,
                     robust_accuracy={"fgsm": 0.6, "pgd": 0.5},
                     condition_number=ConditionSummary(median=12.0, max=kappa_max,
                                                       per_layer={"fc1": 12.0}),
                     lipschitz_upper=42.0, security_curve=[(0.0, 0.91), (0.1, 0.5)], flags=[],
                     attacks=[], checkpoint="ck.pt", spec={}, versions={}, wall_time=3.0)


def test_create_sweep_makes_queued_runs_with_indexes(store: Store) -> None:
    spec = small_spec()
    sweep, created = store.create_sweep(spec, owner="tok-a", owner_name="alice",
                                        preset="digits-quick")
    assert created and len(sweep.run_ids) == len(spec.runs()) == 5
    assert sweep.sweep_spec() == spec and sweep.owner == "tok-a" and sweep.preset == "digits-quick"
    runs = store.sweep_runs(sweep.id)
    assert [r.key for r in runs] == [r.key for r in spec.runs()]
    for r in runs:
        assert r.status == RunStatus.queued and r.sweep_id == sweep.id and r.owner == "tok-a"
        assert r.total_epochs == spec.total_epochs(r.method)
        assert re.fullmatch(r"[0-9a-f]{32}", r.id)
        # The stream starts with the queued status.
        [first] = store.events(r.id)
        assert parse_event(first.data).status == RunStatus.queued
    assert store.status_counts()[RunStatus.queued] == 5
    assert store.list_runs(method=Method.lwm)[1] == 2
    assert store.list_sweeps()[1] == 1


def test_idempotency_key_returns_the_same_sweep_per_owner(store: Store) -> None:
    a, c1 = store.create_sweep(small_spec(), "tok-a", "key-1")
    b, c2 = store.create_sweep(small_spec(), "tok-a", "key-1")
    c, c3 = store.create_sweep(small_spec(), "tok-b", "key-1")   # another owner: own key space
    assert (c1, c2, c3) == (True, False, True)
    assert a.id == b.id != c.id
    assert store.list_sweeps()[1] == 2
    assert store.list_runs()[1] == 10


def test_record_event_derives_fields_and_drops_repeated_epochs(store: Store) -> None:
    sweep, _ = store.create_sweep(small_spec(), "tok")
    rid = store.sweep_runs(sweep.id)[-1].id                    # tscnc-s0.9: 4 + 2 + 2 epochs
    assert store.record_event(rid, StageStarted(run=rid, stage=Stage.pretrain, epochs=4))
    first = store.record_event(rid, epoch(rid, Stage.pretrain, 1))
    again = store.record_event(rid, epoch(rid, Stage.pretrain, 1))   # a resumed stage re-emits
    assert first and again is None
    assert store.epoch_keys(rid) == {("pretrain", 1)}
    run = store.get_run(rid)
    assert run.stage == Stage.pretrain and run.epoch == 1
    assert run.progress == 1 / 8 and run.monitor_kappa_median == 4.0
    assert run.monitor_clean_accuracy == 0.8 and run.monitor_epoch == 1
    assert run.clean_accuracy is None and run.kappa_median is None   # results only once evaluated
    store.record_event(rid, ProgressEvent(run=rid, stage=Stage.finetune, epoch=2, batch=5,
                                          batches=10, progress=0.75))
    assert store.get_run(rid).progress == (6 + 1.5) / 8       # finetune starts after 6 epochs
    # Infinite κ survives the round trip.
    store.record_event(rid, epoch(rid, Stage.finetune, 1, 2, {"a": math.inf, "b": math.inf}))
    assert store.get_run(rid).monitor_kappa_median == math.inf
    # The event's run is the run id; both streams got every event.
    evs = [parse_event(e.data) for e in store.events(rid)]
    assert [e.type for e in evs] == ["status", "stage_started", "epoch", "progress", "epoch"]
    assert all(e.run == rid for e in evs)
    sweep_types = [e.type for e in store.sweep_events(sweep.id) if e.run_id == rid]
    assert sweep_types == [e.type for e in evs]
    assert store.record_event("nope", LogEvent(run="nope", message="x")) is None


def test_status_transitions_are_checked_and_indexed(store: Store) -> None:
    sweep, _ = store.create_sweep(small_spec(), "tok")
    rid = sweep.run_ids[0]
    assert not store.set_status(rid, RunStatus.succeeded)     # queued -> succeeded: refused
    assert store.set_status(rid, RunStatus.running, worker="w1", device="cpu")
    run = store.get_run(rid)
    assert (run.status, run.worker, run.device) == (RunStatus.running, "w1", "cpu")
    assert run.started is not None
    assert store.list_runs(status=RunStatus.running)[0][0].id == rid
    assert store.set_status(rid, RunStatus.failed, category="diverged", message="loss nan")
    run = store.get_run(rid)
    assert run.status == RunStatus.failed and run.category.value == "diverged"
    assert run.finished is not None and run.message == "loss nan"
    assert store.list_runs(status=RunStatus.running)[1] == 0
    assert store.list_runs(status=RunStatus.failed)[1] == 1
    assert not store.set_status(rid, RunStatus.running)       # terminal: only retry leaves it
    store.request_cancel(rid)
    assert store.retry_run(rid) and not store.cancel_requested(rid)
    run = store.get_run(rid)
    assert run.status == RunStatus.queued and run.category is None and run.finished is None
    statuses = [parse_event(e.data).status for e in store.events(rid)]
    assert statuses == ["queued", "running", "failed", "queued"]
    assert store.sweep_statuses(sweep.id)[rid] == RunStatus.queued
    assert not store.retry_run(rid)                            # queued: nothing to retry
    assert store.set_status(rid, RunStatus.cancelled, expect={RunStatus.queued})


def test_failed_without_category_records_error(store: Store) -> None:
    sweep, _ = store.create_sweep(small_spec(), "tok")
    rid = sweep.run_ids[0]
    assert store.set_status(rid, RunStatus.failed, message="boom")
    assert store.get_run(rid).category.value == "error"


def test_claim_release_lost_runs_and_take_over(store: Store) -> None:
    sweep, _ = store.create_sweep(small_spec(), "tok")
    rid = sweep.run_ids[1]
    store.heartbeat("w1", "cpu", rid, ttl=30, queue="cpu")
    assert store.claim(rid, "w1", "cpu")
    assert not store.claim(rid, "w2", "cpu")                   # w1 is alive
    assert store.claim(rid, "w1", "cpu")                       # re-claim by itself: no new event
    assert [parse_event(e.data).status for e in store.events(rid)] == ["queued", "running"]
    assert store.release(rid) and store.get_run(rid).worker is None
    assert store.lost_runs(set()) == []                        # released: nobody to lose
    assert store.claim(rid, "w2", "cpu")                       # next stage, another worker
    assert [r.id for r in store.lost_runs({"w1"})] == [rid]    # w2 is not among the alive
    store.heartbeat("w2", "cuda:0", rid, ttl=30)
    assert not store.take_over(rid, "w3")                      # w2 still beats
    store.r.delete(store.k.worker("w2"))                       # w2's heartbeat expired
    store.heartbeat("w3", "cpu", None, ttl=30)
    assert store.take_over(rid, "w3")
    assert not store.take_over(rid, "w4")                      # only one live worker wins
    assert store.incr_attempts(rid) == 1
    assert store.set_status(rid, RunStatus.queued, message="worker lost; re-queued")
    assert store.get_run(rid).worker is None and store.get_run(rid).attempts == 1


def test_a_pretrain_lease_is_kept_by_a_live_worker_and_lost_with_it(store: Store) -> None:
    sweep, _ = store.create_sweep(small_spec(), "tok")
    other, _ = store.create_sweep(small_spec(), "tok")
    key = store.get_run(sweep.run_ids[0]).run_spec().pretrain_key
    store.heartbeat("w1", "cpu", None, ttl=30)
    store.heartbeat("w2", "cpu", None, ttl=30)
    assert store.hold_pretrain(sweep.id, key, "w1") is None        # taken
    assert store.hold_pretrain(sweep.id, key, "w1") is None        # its holder again: kept
    assert store.hold_pretrain(sweep.id, key, "w2") == "w1"        # w1 is alive
    assert store.hold_pretrain(sweep.id, "another-group", "w2") is None   # per group
    assert store.hold_pretrain(other.id, key, "w2") is None        # per sweep
    store.release_pretrain(sweep.id, key, "w2")                    # not w2's: nothing given
    assert store.hold_pretrain(sweep.id, key, "w2") == "w1"
    store.release_pretrain(sweep.id, key, "w1")
    assert store.hold_pretrain(sweep.id, key, "w2") is None        # given back: free
    store.r.delete(store.k.worker("w2"))                           # w2's heartbeat expired
    assert store.hold_pretrain(sweep.id, key, "w1") is None        # a dead holder lost it
    assert store.delete_sweep(sweep.id)
    assert not store.r.exists(store.k.sweep_pretrains(sweep.id))   # deleted with the sweep
    assert store.hold_pretrain(sweep.id, key, "w1") is None        # a deleted sweep's ...
    assert not store.r.exists(store.k.sweep_pretrains(sweep.id))   # ... is never written


def test_claim_refuses_cancelled_and_finished_runs(store: Store) -> None:
    sweep, _ = store.create_sweep(small_spec(), "tok")
    rid = sweep.run_ids[0]
    assert store.set_status(rid, RunStatus.cancelled, expect={RunStatus.queued})
    assert not store.claim(rid, "w1", "cpu")


def test_heartbeats_expire(store: Store) -> None:
    store.heartbeat("w-short", "cpu", None, ttl=1, queue="cpu")
    store.heartbeat("w-long", "cuda:0 H100", "r1", ttl=30, queue="gpu")
    assert [w.name for w in store.workers()] == ["w-long", "w-short"]
    [w] = wait_until(store.workers, 2, "the 1 s heartbeat to expire", done=lambda ws: len(ws) == 1)
    assert (w.name, w.device, w.run, w.queue) == ("w-long", "cuda:0 H100", "r1", "gpu")


def test_cursor_pagination_walks_every_run_once(store: Store) -> None:
    for i in range(3):
        store.create_sweep(small_spec(seeds=[i]), "tok")
    seen, cursor, pages = [], None, 0
    while True:
        runs, total, cursor = store.list_runs(limit=4, cursor=cursor)
        seen += [r.id for r in runs]
        pages += 1
        if cursor is None:
            break
    assert total == 15 and len(seen) == len(set(seen)) == 15 and pages == 4
    created = [r.created for r in store.get_runs(seen)]
    assert created == sorted(created, reverse=True)
    # Filters combine (intersection), and pagination holds under them.
    sweep = store.list_sweeps(limit=1)[0][0]
    store.set_status(sweep.run_ids[2], RunStatus.running)
    runs, total, nxt = store.list_runs(sweep_id=sweep.id, method=Method.tscnc,
                                       status=RunStatus.queued, limit=1)
    assert total == 2 and len(runs) == 1 and nxt is not None
    more, _, last = store.list_runs(sweep_id=sweep.id, method=Method.tscnc,
                                    status=RunStatus.queued, limit=1, cursor=nxt)
    assert last is None and {runs[0].id, more[0].id} == {
        r.id for r in store.sweep_runs(sweep.id) if r.method == Method.tscnc}
    assert not store.r.keys(f"{store.k.p}:tmp:*")                 # temporary keys removed
    asc, _, _ = store.list_runs(sweep_id=sweep.id, desc=False, limit=50)
    assert [r.id for r in asc] == sweep.run_ids


def test_results_and_cancel_flags(store: Store) -> None:
    sweep, _ = store.create_sweep(small_spec(), "tok")
    rid = sweep.run_ids[-1]
    assert store.get_result(rid) is None and not store.cancel_requested(rid)
    assert store.put_result(rid, result(rid))
    got = store.get_result(rid)
    assert got == result(rid) and got.condition_number.max == math.inf
    run = store.get_run(rid)
    assert run.has_result and run.robust_accuracy == 0.5 and run.kappa_median == 12.0
    assert run.checkpoint == "ck.pt" and run.sparsity_actual == 0.9012
    store.request_cancel(rid)
    assert store.cancel_requested(rid) and store.get_run(rid).cancel_requested
    assert not store.put_result("missing", result("missing"))


def test_delete_sweep_removes_everything_but_other_sweeps(store: Store) -> None:
    keep, _ = store.create_sweep(small_spec(), "tok", "k-keep")
    gone, _ = store.create_sweep(small_spec(seeds=[7]), "tok", "k-gone")
    rid = gone.run_ids[0]
    store.record_event(rid, epoch(rid, Stage.pretrain, 1))
    store.put_result(rid, result(rid))
    before = set(store.r.keys("*"))
    assert store.delete_sweep(gone.id) and not store.delete_sweep(gone.id)
    after = set(store.r.keys("*"))
    assert not any(gone.id in k or any(r in k for r in gone.run_ids) for k in after)
    assert store.get_run(rid) is None and store.list_runs()[1] == len(keep.run_ids)
    assert all(k in after for k in before if keep.id in k)
    # Late writes of a worker still running a deleted run change nothing.
    assert store.record_event(rid, epoch(rid, Stage.pretrain, 2)) is None
    assert not store.set_status(rid, RunStatus.succeeded) and not store.set_task_id(rid, "t")
    assert store.get_run(rid) is None
    # The idempotency key is freed with it.
    again, created = store.create_sweep(small_spec(seeds=[7]), "tok", "k-gone")
    assert created and again.id != gone.id


def test_tokens_are_stored_hashed(store: Store) -> None:
    rec, secret = store.create_token("alice", "member", expires=time.time() + 60)
    assert len(secret) >= 40 and store.token_for_secret(secret).id == rec.id
    assert store.token_for_secret(secret + "x") is None
    dump = " ".join(f"{k} {store.r.dump(k)!r}" for k in store.r.keys("*"))
    assert secret not in dump and hash_secret(secret) in dump
    assert store.revoke_token(rec.id)
    assert [t.revoked for t in store.list_tokens()[0] if t.id == rec.id] == [True]
    assert not store.token_for_secret(secret).valid()
    expired, s2 = store.create_token("old", "viewer", expires=time.time() - 1)
    assert not store.token_for_secret(s2).valid()
    again, s3 = store.create_token("bootstrap", "admin", secret="x" * 32)
    assert store.create_token("bootstrap", "admin", secret="x" * 32)[0].id == again.id


def test_share_tokens_are_long_hashed_and_revocable(store: Store) -> None:
    sweep, _ = store.create_sweep(small_spec(), "tok")
    dash, share = store.create_dashboard("mine", "tok", [sweep.id], {"x": 1})
    assert len(share.removeprefix("tscncs_")) >= 43                    # 256 random bits
    assert share not in " ".join(map(str, (store.r.dump(k) for k in store.r.keys("*"))))
    assert store.dashboard_for_share(share).id == dash.id
    assert store.list_dashboards(owner="tok")[1] == 1
    assert store.revoke_dashboard(dash.id)
    assert store.dashboard_for_share(share) is None and store.list_dashboards()[1] == 0


def test_queue_depths_read_celery_lists(store: Store) -> None:
    store.r.lpush(Keys.celery_queue("cpu")[0], "m1", "m2")
    store.r.lpush(Keys.celery_queue("cpu")[2], "m3")            # a priority list
    assert store.queue_depths() == {"gpu": 0, "cpu": 3}


def test_only_the_data_layer_spells_redis_keys() -> None:
    """DESIGN §2.4: no other module spells a key (``"tscnc:`` / ``f"{prefix}:``)."""
    offenders = []
    for pkg in ("backend", "worker", "tscnc"):
        for py in (ROOT / pkg).rglob("*.py"):
            if py.parent == ROOT / "backend" / "store":   # the data layer
                continue
            text = py.read_text()
            if re.search(r"""["']tscnc:[a-z]""", text) or ".hset(" in text or ".xadd(" in text:
                offenders.append(str(py.relative_to(ROOT)))
    assert offenders == []


def test_concurrent_retries_with_one_idempotency_key_make_one_sweep(store: Store,
                                                                   redis_url: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    stores = [Store.from_url(redis_url) for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        out = list(pool.map(lambda s: s.create_sweep(small_spec(), "tok", "same-key"), stores))
    assert len({s.id for s, _ in out}) == 1 and sum(created for _, created in out) == 1
    assert store.list_sweeps()[1] == 1 and store.list_runs()[1] == 5
    for s in stores:
        s.close()
