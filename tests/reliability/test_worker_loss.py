"""Issue 6.1 — a worker lost in the middle of a stage never costs a run.

Real redis-server, real uvicorn and real Celery worker processes (prefork, one child). A run is
caught in the middle of its pretrain stage and its worker's whole process group is signalled:

- SIGKILL (a crash, an OOM kill, a pulled plug): the other worker sees the heartbeat expire,
  takes the run over and re-queues it; the run resumes from its last epoch checkpoint within
  60 s, ends ``succeeded`` with every epoch of every stage in its event stream exactly once and
  a complete result. The dead worker's unacknowledged message comes back after the broker's
  visibility timeout (set low here) and is a harmless duplicate.
- SIGKILL while the pretrain is shared: the runs waiting for it are queued again with its owner
  (their own tasks were chained behind the dead worker's pretrain task).
- A shared pretrain that outlasts the visibility timeout: the copy of its message that the
  broker hands to the other worker is dropped while the first worker lives.
- SIGTERM (a deploy, a scale-down): the running stage stops at the next batch, its run goes
  back to ``queued`` with the message handed back to the broker, and the other worker resumes it.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.store import Store
from tests.reliability.helpers import TERMINAL, Probe, kill_group, worker_index
from tests.support.services import process_output, stop_process
from tests.support.stack import Stack, service_stack, start_worker, tiny_sweep
from tests.support.wait import wait_until

# Long enough a pretrain to be caught in the middle (tens of ms per epoch), short overall.
PRETRAIN, PRUNE, FINETUNE = 40, 2, 3
EXPECTED_EPOCHS = ({("pretrain", e) for e in range(1, PRETRAIN + 1)}
                   | {("prune", e) for e in range(1, PRUNE + 1)}
                   | {("finetune", e) for e in range(1, FINETUNE + 1)})
# Workers here: heartbeat every 0.5 s, lost after 3 s; unacknowledged broker messages are handed
# out again after 10 s (the smallest visibility timeout the settings allow) and the broker
# looks for them every second.
WORKER_ENV = {"TSCNC_HEARTBEAT_TTL": "3", "TSCNC_VISIBILITY_TIMEOUT": "10",
              "TSCNC_UNACKED_RESTORE_INTERVAL": "1"}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with service_stack(tmp_path, workers=0) as s:
        s.workers += [start_worker(s.redis_url, s.artifacts, f"test-{i}", WORKER_ENV)
                      for i in range(2)]
        s.wait_workers(2)
        yield s


def _long_run(stack: Stack) -> tuple[str, str]:
    spec = tiny_sweep(methods=["hydra"], sparsities=[0.5], dataset={"train_subset": 600},
                      training={"pretrain_epochs": PRETRAIN, "prune_epochs": PRUNE,
                                "finetune_epochs": FINETUNE})
    r = stack.api("POST", "/sweeps", json={"spec": spec})
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["run_ids"][0]


def _mid_pretrain(run: dict) -> bool:
    return (run["status"] == "running" and run["stage"] == "pretrain"
            and 3 <= (run["epoch"] or 0) <= PRETRAIN - 15)


def _check_complete(stack: Stack, probe: Probe, run_id: str, sparsity: float = 0.5
                    ) -> list[dict]:
    """Succeeded, every epoch exactly once, final sparsity and metrics present."""
    run = probe.run(run_id)
    assert run["status"] == "succeeded", run
    events = probe.events(run_id)
    epochs = probe.epochs(events)
    assert len(epochs) == len(set(epochs)), sorted(epochs)
    assert set(epochs) == EXPECTED_EPOCHS
    result = stack.api("GET", f"/runs/{run_id}/result").json()
    assert abs(result["sparsity_actual"] - sparsity) < 0.05
    assert 0 <= result["robust_accuracy"]["pgd"] <= result["clean_accuracy"] <= 1
    assert result["condition_number"]["median"] is not None
    assert Path(result["checkpoint"]).is_file()
    return events


def test_sigkill_mid_stage_resumes_on_the_other_worker_from_the_checkpoint(stack: Stack):
    probe = Probe(stack)
    _, run_id = _long_run(stack)
    run = probe.wait_run(run_id, _mid_pretrain, timeout=60, interval=0.05)
    victim = stack.workers.pop(worker_index(stack, run["worker"]))
    survivor_name = next(n for n in ("test-0", "test-1") if not run["worker"].startswith(n))
    kill_group(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    victim.wait(10)
    checkpoints = sorted((stack.artifacts).rglob("pretrain/*/epoch_*.pt"))
    assert checkpoints, "no pretrain checkpoint on disk when the worker died"
    saved_epoch = int(checkpoints[-1].stem.split("_")[1])

    resumed = probe.wait_run(run_id, lambda r: r["status"] == "running"
                             and (r["worker"] or "").startswith(survivor_name), timeout=60)
    assert time.monotonic() - killed_at < 60
    final = probe.wait_run(run_id, lambda r: r["status"] in ("succeeded", "failed"), timeout=120)
    assert final["status"] == "succeeded", final
    assert final["attempts"] == 1 and resumed["worker"] != run["worker"]
    events = _check_complete(stack, probe, run_id)

    # The stage restarted from the checkpoint the dead worker left, not from scratch.
    starts = [e for e in events if e["type"] == "stage_started" and e["stage"] == "pretrain"]
    assert starts[0]["resumed_from_epoch"] == 0
    assert starts[-1]["resumed_from_epoch"] >= saved_epoch >= 3
    assert "lost" in " ".join(e.get("message") or "" for e in events if e["type"] == "status")

    # The dead worker's unacknowledged message comes back after the visibility timeout: the
    # survivor takes it, finds the run finished and drops it (no second run, no new events).
    store = Store.from_url(stack.redis_url)
    n_events = len(events)
    wait_until(store.unacked_messages, 40, "the lost message to come back (none unacknowledged)",
               done=lambda n: n == 0, interval=0.5)
    survivor = stack.workers[0]
    # Received and done (ignored): the survivor's second pretrain task.
    wait_until(lambda: process_output(survivor), 10, "the survivor to take the lost message",
               done=lambda log: log.count("tscnc.pretrain[") >= 2, interval=0.2,
               show=lambda log: log[-3000:])
    assert probe.run(run_id)["status"] == "succeeded"
    assert len(probe.events(run_id)) == n_events
    store.close()


@pytest.mark.parametrize("max_attempts", [3, 1])
def test_sigkill_of_a_shared_pretrain_requeues_the_runs_waiting_for_it(tmp_path: Path,
                                                                        max_attempts: int):
    """Two runs share one pretrain: one owns it (running), the other waits (queued) with its
    complete task chained to the pretrain task. The owner's worker is killed: the survivor
    queues both again in one pretrain task and both succeed, every epoch once; with
    ``TSCNC_MAX_ATTEMPTS=1`` the owner fails as ``worker_lost`` and the waiting run is queued
    in a pretrain task of its own and succeeds. The dead worker's message comes back only
    after the broker's visibility timeout (its default hour here), so nothing else starts the
    waiting run: it used to stay queued that long."""
    env = {"TSCNC_HEARTBEAT_TTL": "3", "TSCNC_MAX_ATTEMPTS": str(max_attempts)}
    with service_stack(tmp_path, workers=0) as s:
        s.workers += [start_worker(s.redis_url, s.artifacts, f"test-{i}", env) for i in range(2)]
        s.wait_workers(2)
        probe = Probe(s)
        spec = tiny_sweep(methods=["hydra"], sparsities=[0.5, 0.7],
                          dataset={"train_subset": 600},
                          training={"pretrain_epochs": PRETRAIN, "prune_epochs": PRUNE,
                                    "finetune_epochs": FINETUNE})
        r = s.api("POST", "/sweeps", json={"spec": spec})
        assert r.status_code == 201, r.text
        sweep_id = r.json()["id"]
        runs = wait_until(lambda: s.api("GET", "/runs", params={"sweep": sweep_id}).json()["items"],
                          60, "a run in the middle of the shared pretrain",
                          done=lambda rs: any(_mid_pretrain(x) for x in rs), interval=0.05)
        owner = next(x for x in runs if _mid_pretrain(x))
        waiting = next(x for x in runs if x["id"] != owner["id"])
        assert waiting["status"] == "queued", waiting
        victim = s.workers.pop(worker_index(s, owner["worker"]))
        kill_group(victim, signal.SIGKILL)
        victim.wait(10)

        final = s.wait_runs(sweep_id, lambda rs: all(x["status"] in TERMINAL for x in rs),
                            timeout=180)
        by_id = {x["id"]: x for x in final}
        lost, waited = by_id[owner["id"]], by_id[waiting["id"]]
        assert waited["attempts"] == 0
        _check_complete(s, probe, waited["id"], waited["sparsity"])
        messages = [e.get("message") or "" for e in probe.events(waited["id"])
                    if e["type"] == "status"]
        assert any("shared pretrain was lost" in m and owner["key"] in m for m in messages), \
            messages
        if max_attempts == 1:
            assert (lost["status"], lost["category"]) == ("failed", "worker_lost"), lost
            return
        assert lost["attempts"] == 1
        _check_complete(s, probe, lost["id"], lost["sparsity"])
        starts = [e for e in probe.events(owner["id"])
                  if e["type"] == "stage_started" and e["stage"] == "pretrain"]
        assert starts[-1]["resumed_from_epoch"] >= 3


def test_sigterm_requeues_the_run_and_another_worker_finishes_it(stack: Stack):
    probe = Probe(stack)
    _, run_id = _long_run(stack)
    run = probe.wait_run(run_id, _mid_pretrain, timeout=60, interval=0.05)
    victim = stack.workers.pop(worker_index(stack, run["worker"]))
    kill_group(victim, signal.SIGTERM)
    # A graceful stop: the worker exits by itself (warm shutdown), promptly.
    assert victim.wait(30) == 0, process_output(victim)[-3000:]
    final = probe.wait_run(run_id, lambda r: r["status"] in ("succeeded", "failed"), timeout=120)
    assert final["status"] == "succeeded", final
    events = _check_complete(stack, probe, run_id)
    statuses = probe.statuses(events)
    # queued → running → queued (handed back) → running (elsewhere) → queued (pretrain done,
    # waiting for a worker to take its prune/finetune task) → running → succeeded
    assert statuses == ["queued", "running", "queued", "running", "queued", "running",
                        "succeeded"], statuses
    requeued = [e for e in events if e["type"] == "status" and e["status"] == "queued"][1]
    assert "SIGTERM" in requeued["message"]
    starts = [e for e in events if e["type"] == "stage_started" and e["stage"] == "pretrain"]
    assert starts[-1]["resumed_from_epoch"] >= 3
    assert final["attempts"] == 0           # a graceful stop is not a lost worker
    stop_process(victim)


def test_a_copy_of_a_shared_pretrain_message_is_dropped_while_its_worker_lives(stack: Stack):
    """A shared pretrain outlasts the visibility timeout: the broker hands its message to the
    other worker, which finds the group's lease held by the live worker and drops the copy.
    The waiting run stays queued for the one pretrain. (The copy used to claim the waiting run
    and train the same pretrain a second time beside the first, on the same checkpoints.)"""
    probe = Probe(stack)
    spec = tiny_sweep(methods=["hydra"], sparsities=[0.5, 0.7],
                      training={"pretrain_epochs": 500, "prune_epochs": 1, "finetune_epochs": 1})
    r = stack.api("POST", "/sweeps", json={"spec": spec})
    assert r.status_code == 201, r.text
    sweep_id = r.json()["id"]
    runs = wait_until(lambda: stack.api("GET", "/runs", params={"sweep": sweep_id}).json()["items"],
                      60, "the shared pretrain to train",
                      done=lambda rs: any(x["status"] == "running" and (x["epoch"] or 0) >= 1
                                          for x in rs), interval=0.05)
    owner = next(x for x in runs if x["status"] == "running")
    waiting = next(x for x in runs if x["id"] != owner["id"])
    survivor = stack.workers[1 - worker_index(stack, owner["worker"])]
    # Past the 10 s visibility timeout the other worker receives the pretrain message again.
    log = wait_until(lambda: process_output(survivor), 60,
                     "the other worker to get the message again and drop it",
                     done=lambda out: "tscnc.pretrain[" in out and "ignored" in out,
                     interval=0.2, show=lambda out: out[-3000:])
    assert "being trained by the live worker" in log, log[-3000:]
    now = {x["id"]: x for x in probe.s.api("GET", "/runs", params={"sweep": sweep_id})
           .json()["items"]}
    assert now[owner["id"]]["status"] == "running"
    assert now[owner["id"]]["worker"] == owner["worker"]
    assert now[waiting["id"]]["status"] == "queued", now[waiting["id"]]
    for rid in (owner["id"], waiting["id"]):
        starts = [e for e in probe.events(rid)
                  if e["type"] == "stage_started" and e["stage"] == "pretrain"]
        assert len(starts) == 1, starts
    assert stack.api("POST", f"/sweeps/{sweep_id}/cancel").status_code == 200
    final = stack.wait_runs(sweep_id, lambda rs: all(x["status"] in TERMINAL for x in rs),
                            timeout=60)
    assert {x["status"] for x in final} == {"cancelled"}, final


def test_sigterm_after_the_broker_handed_the_message_out_again_still_requeues(stack: Stack):
    """A stage that outlasts the visibility timeout: the broker hands its message to the other
    worker, which finds the run running on a live worker and drops it. A SIGTERM after that
    must still leave the run a message: the stopped stage is queued again in a fresh one, not
    by handing back a message the broker no longer holds (the run used to stay queued)."""
    probe = Probe(stack)
    # The whole digits training split, 500 epochs: far longer than the 10 s timeout.
    spec = tiny_sweep(methods=["hydra"], sparsities=[0.5],
                      training={"pretrain_epochs": 500, "prune_epochs": 1,
                                "finetune_epochs": 1})
    r = stack.api("POST", "/sweeps", json={"spec": spec})
    assert r.status_code == 201, r.text
    run_id = r.json()["run_ids"][0]
    run = probe.wait_run(run_id, lambda x: x["status"] == "running" and (x["epoch"] or 0) >= 1,
                         timeout=60, interval=0.05)
    victim = stack.workers.pop(worker_index(stack, run["worker"]))
    survivor = stack.workers[0]
    # Past the 10 s visibility timeout the survivor receives the pretrain message and drops it.
    wait_until(lambda: process_output(survivor), 60, "the survivor to get the message again",
               done=lambda log: "tscnc.pretrain[" in log and "ignored" in log,
               interval=0.2, show=lambda log: log[-3000:])
    assert probe.run(run_id)["worker"] == run["worker"]     # still running on the victim
    kill_group(victim, signal.SIGTERM)
    assert victim.wait(30) == 0, process_output(victim)[-3000:]
    resumed = probe.wait_run(run_id, lambda x: x["status"] == "running"
                             and x["worker"] != run["worker"], timeout=60)
    assert resumed["stage"] == "pretrain"
    starts = wait_until(
        lambda: [e for e in probe.events(run_id)
                 if e["type"] == "stage_started" and e["stage"] == "pretrain"],
        30, "the pretrain to start again on the survivor", done=lambda st: len(st) == 2)
    assert starts[-1]["resumed_from_epoch"] >= 1
    assert stack.api("POST", f"/runs/{run_id}/cancel").status_code == 200
    final = probe.wait_run(run_id, lambda x: x["status"] in TERMINAL, timeout=60)
    assert final["status"] == "cancelled", final
    stop_process(victim)
