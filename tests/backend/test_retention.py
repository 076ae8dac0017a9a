"""Retention of finished runs' event streams (backend/store/retention.py, `tscnc
compact-events`): what the charts and the run page read stays, with its ids; progress events
and log lines beyond the last N per run go; memory goes down; running runs are untouched."""

from __future__ import annotations

import json

from backend.store import Store
from backend.store.retention import memory_usage
from tscnc.records import EpochEvent, LogEvent, ProgressEvent, RunStatus, Stage
from tscnc.spec import Method, SweepSpec, TrainingSpec


def _epoch(rid: str, e: int) -> EpochEvent:
    return EpochEvent(run=rid, stage=Stage.pretrain, epoch=e, epochs=5, loss=1.0 / e,
                      clean_accuracy=0.5, robust_accuracy=0.2, lr=0.1, sparsity=0.0,
                      condition_numbers={"fc1": 3.0})


def _fill(store: Store, rid: str) -> None:
    store.claim(rid, "w", "cpu")
    for e in range(1, 6):
        store.record_event(rid, _epoch(rid, e))
        for b in range(20):
            store.record_event(rid, ProgressEvent(run=rid, stage=Stage.pretrain, epoch=e,
                                                  batch=b, batches=20, progress=0.1))
            store.record_event(rid, LogEvent(run=rid, message=f"line {e}-{b} " + "x" * 200))


def test_compaction_keeps_what_the_charts_need(store: Store) -> None:
    spec = SweepSpec(methods=[Method.dense, Method.lwm], sparsities=[0.5], seeds=[0],
                     training=TrainingSpec(pretrain_epochs=5, prune_epochs=1, finetune_epochs=1))
    sweep, _ = store.create_sweep(spec, owner="o")
    done, running = sweep.run_ids
    for rid in (done, running):
        _fill(store, rid)
    store.set_status(done, RunStatus.succeeded)
    before = store.events(done, limit=10_000)
    running_before = store.events(running, limit=10_000)
    sweep_before = store.sweep_events(sweep.id, limit=10_000)
    mem_before = memory_usage(store, [done])

    streams, dropped = store.compact_events(keep_logs=3)
    after = store.events(done, limit=10_000)
    # Independent expectation: every entry but progress and all but the last 3 log lines.
    logs = [e.id for e in before if e.type == "log"]
    want = [e for e in before if e.type != "progress" and (e.type != "log" or e.id in logs[-3:])]
    assert [(e.id, e.type, e.data) for e in after] == [(e.id, e.type, e.data) for e in want]
    assert {e.type for e in after} == {"status", "epoch", "log"}
    assert [json.loads(e.data)["epoch"] for e in after if e.type == "epoch"] == [1, 2, 3, 4, 5]
    assert streams == 1 and dropped == len(before) - len(want)       # the sweep is still running
    assert store.events(running, limit=10_000) == running_before
    assert store.sweep_events(sweep.id, limit=10_000) == sweep_before
    assert memory_usage(store, [done])["bytes_per_run"] < mem_before["bytes_per_run"] / 2
    # Resuming after an id that was dropped gives the kept entries after it.
    gone = next(e.id for e in before if e.type == "progress")
    resumed = store.events(done, after=gone, limit=10_000)
    assert resumed == [e for e in after if tuple(map(int, e.id.split("-"))) >
                       tuple(map(int, gone.split("-")))]

    # Once every run of the sweep has finished, the sweep's stream is compacted too; again
    # compacting changes nothing.
    store.set_status(running, RunStatus.failed, category="error", message="x")
    streams, dropped = store.compact_events(keep_logs=3)
    assert streams == 2 and dropped > 0
    sw = store.sweep_events(sweep.id, limit=10_000)
    for rid in (done, running):
        mine = [e for e in sw if e.run_id == rid]
        assert sum(e.type == "log" for e in mine) == 3 and not any(e.type == "progress"
                                                                    for e in mine)
        assert sum(e.type == "epoch" for e in mine) == 5
    assert store.compact_events(keep_logs=3) == (0, 0)


def test_automatic_retention_compacts_each_run_as_it_finishes(redis_url: str) -> None:
    """With ``retention_keep_logs`` (TSCNC_RETENTION_KEEP_LOGS) a run's stream is compacted by
    its final transition, the sweep's once its last run has finished; without it nothing is."""
    from backend.app import create_app
    from backend.settings import Settings
    from worker.settings import WorkerSettings

    spec = SweepSpec(methods=[Method.dense, Method.lwm, Method.tsc], sparsities=[0.5], seeds=[0],
                     training=TrainingSpec(pretrain_epochs=5, prune_epochs=1, finetune_epochs=1))
    plain = Store.from_url(redis_url)
    auto = Store.from_url(redis_url, retention_keep_logs=2)
    try:
        plain.r.flushdb()
        sweep, _ = plain.create_sweep(spec, owner="o")
        first, second, third = sweep.run_ids
        for rid in sweep.run_ids:
            _fill(plain, rid)
        plain.set_status(first, RunStatus.succeeded)               # policy off: all kept
        assert sum(e.type == "progress" for e in plain.events(first, limit=10_000)) == 100

        before = auto.events(second, limit=10_000)
        assert auto.set_status(second, RunStatus.failed, category="error", message="x")
        after = auto.events(second, limit=10_000)
        logs = [e.id for e in before if e.type == "log"]
        want = [e for e in before if e.type != "progress" and (e.type != "log" or e.id in logs[-2:])]
        assert [(e.id, e.data) for e in after[:-1]] == [(e.id, e.data) for e in want]
        assert after[-1].type == "status" and json.loads(after[-1].data)["status"] == "failed"
        sweep_events = auto.sweep_events(sweep.id, limit=10_000)
        assert any(e.type == "progress" for e in sweep_events)     # the third still runs

        assert auto.set_status(third, RunStatus.cancelled)          # the last one: the sweep too
        sw = auto.sweep_events(sweep.id, limit=10_000)
        assert not any(e.type == "progress" for e in sw)
        for rid in sweep.run_ids:
            mine = [e for e in sw if e.run_id == rid]
            assert sum(e.type == "log" for e in mine) == 2
            assert sum(e.type == "epoch" for e in mine) == 5
        # Only the first run was left: its 100 progress events and 98 of its 100 log lines.
        assert auto.compact_events(keep_logs=2) == (1, 100 + 98)
    finally:
        plain.close()
        auto.close()

    # The API and the workers read the policy from TSCNC_RETENTION_KEEP_LOGS.
    assert Settings(redis_url=redis_url).retention_keep_logs is None
    app = create_app(Settings(redis_url=redis_url, retention_keep_logs=7))
    assert app.state.store.retention_keep_logs == 7
    app.state.store.close()
    assert WorkerSettings(TSCNC_RETENTION_KEEP_LOGS="7").retention_keep_logs == 7
