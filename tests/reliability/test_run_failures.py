"""Issue 6.3 — divergence, resource and input faults end a run with the right category, leave
its siblings alone, and only a lost worker is retried automatically (a bounded number of times).

Real redis-server, real uvicorn and real Celery workers; the faults are real too:

- NaN: a TSC weight of 1000 at learning rate 10 makes the loss of the TSC runs NaN within a few
  batches (the pipeline's finiteness check), while dense and hydra (another pretrain group) train
  to a poor but finite model. (λ_tsc = 1000 alone used to be enough only through the TRADES
  softmax-underflow bug fixed in issue 10; the loss stays finite at the default learning rate);
- out of memory: the worker's pool process gets an address-space limit (``RLIMIT_AS``, set with
  ``prlimit`` once it has warmed up) 1 GiB above what it uses, and the sweep asks for a CNN whose
  activations need more: the allocation really fails (nothing large is ever touched);
- missing dataset: MNIST from a directory that does not exist.
"""

from __future__ import annotations

import resource
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.helpers import Probe, kill_group, worker_index
from tests.support.services import process_output
from tests.support.stack import Stack, service_stack, start_worker, tiny_sweep
from tests.support.wait import wait_until

TERMINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with service_stack(tmp_path_factory.mktemp("failures"), workers=1) as s:
        yield s


def _submit(s: Stack, spec: dict[str, Any]) -> dict[str, Any]:
    r = s.api("POST", "/sweeps", json={"spec": spec})
    assert r.status_code == 201, r.text
    return r.json()


def _finish(s: Stack, sweep: dict[str, Any]) -> dict[str, dict[str, Any]]:
    runs = s.wait_runs(sweep["id"], lambda rs: all(r["status"] in TERMINAL for r in rs),
                       timeout=120)
    return {r["key"]: r for r in runs}


def _not_retried(stack: Stack, runs: list[dict[str, Any]]) -> None:
    """Failed runs stay failed: no attempt counted, nothing after ``failed``, even after the
    workers' heartbeat TTL has passed (a lost-run sweep has had its chance)."""
    probe = Probe(stack)
    # The point of the check: let the heartbeat TTL (4 s) pass, after which a lost-run sweep
    # would have re-queued a run it took for lost; there is no event to wait for instead.
    time.sleep(4.5)
    for r in runs:
        now = probe.run(r["id"])
        assert now["status"] == "failed" and now["attempts"] == 0, now
        assert probe.statuses(probe.events(r["id"]))[-1] == "failed"


def _pool_child(worker: Any) -> int:
    """The pid of a prefork worker's only pool process."""
    children = wait_until(
        lambda: Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split(), 10,
        f"the pool process of worker {worker.pid}")
    return int(children[0])


def _vm_size(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize")


def test_nan_loss_fails_diverged_and_siblings_succeed(stack: Stack):
    sweep = _submit(stack, tiny_sweep(methods=["dense", "hydra", "tsc"], sparsities=[0.5, 0.9],
                                      constraints={"lambda_tsc": 1000.0},
                                      training={"lr": 10.0}))
    runs = _finish(stack, sweep)
    failed = [runs["tsc-s0.5-seed0"], runs["tsc-s0.9-seed0"]]
    for r in failed:
        assert (r["status"], r["category"]) == ("failed", "diverged"), r
        assert "nan" in r["message"].lower() and "learning rate" in r["message"]
    for key in ("dense-s0-seed0", "hydra-s0.5-seed0", "hydra-s0.9-seed0"):
        assert runs[key]["status"] == "succeeded", runs[key]
        assert runs[key]["clean_accuracy"] is not None
    _not_retried(stack, failed)


def test_out_of_memory_fails_out_of_memory_and_the_worker_carries_on(stack: Stack):
    # Warm the pool process up (imports, data, a little training), then cap its address space.
    warm = _finish(stack, _submit(stack, tiny_sweep(methods=["dense"], sparsities=[0.5])))
    assert {r["status"] for r in warm.values()} == {"succeeded"}
    child = _pool_child(stack.workers[0])
    limit = _vm_size(child) + 2**30
    _, hard = resource.prlimit(child, resource.RLIMIT_AS)
    resource.prlimit(child, resource.RLIMIT_AS, (limit, hard))       # the soft limit only
    try:
        # 1257 digits in one batch through 1024-channel 8×8 convolutions: ~380 MB per
        # activation, several GB for a training step with its attack.
        big = _submit(stack, tiny_sweep(methods=["dense", "hydra"], sparsities=[0.5],
                                        model={"name": "cnn", "width": 1024},
                                        dataset={"train_subset": None},
                                        training={"batch_size": 4096}))
        runs = _finish(stack, big)
        for r in runs.values():
            assert (r["status"], r["category"]) == ("failed", "out_of_memory"), r
            assert "batch_size" in r["message"], r["message"]
        _not_retried(stack, list(runs.values()))
        # The same worker process is fine afterwards.
        assert _pool_child(stack.workers[0]) == child
        after = _finish(stack, _submit(stack, tiny_sweep(methods=["hydra"], sparsities=[0.5])))
        assert {r["status"] for r in after.values()} == {"succeeded"}
    finally:
        resource.prlimit(child, resource.RLIMIT_AS, (hard, hard))


def test_missing_dataset_fails_invalid_input_before_any_training(stack: Stack, tmp_path: Path):
    probe = Probe(stack)
    missing = "no-such-data"            # inside the stack's data root (TSCNC_DATA_ROOTS)
    sweep = _submit(stack, tiny_sweep(dataset={"name": "mnist", "data_dir": missing,
                                               "train_subset": 100},
                                      methods=["dense", "tscnc"], sparsities=[0.5]))
    t0 = time.monotonic()
    runs = _finish(stack, sweep)
    assert time.monotonic() - t0 < 30, "a missing dataset should fail at once"
    for r in runs.values():
        assert (r["status"], r["category"]) == ("failed", "invalid_input"), r
        assert f"data_dir {missing!r}" in r["message"] and "MNIST" in r["message"], r["message"]
        assert "tscnc data download mnist" in r["message"], r["message"]
        events = probe.events(r["id"])
        assert {e["type"] for e in events} == {"status"}, events   # no stage, no epoch
        assert probe.statuses(events) == ["queued", "running", "failed"]
    _not_retried(stack, list(runs.values()))


def test_worker_lost_is_retried_a_bounded_number_of_times(tmp_path: Path):
    """TSCNC_MAX_ATTEMPTS=2: the first lost worker costs a re-queue, the second fails the run
    as ``worker_lost`` (it is not re-queued forever)."""
    env = {"TSCNC_HEARTBEAT_TTL": "3", "TSCNC_MAX_ATTEMPTS": "2"}
    with service_stack(tmp_path, workers=0) as s:
        s.workers += [start_worker(s.redis_url, s.artifacts, f"test-{i}", env) for i in range(3)]
        s.wait_workers(3)
        probe = Probe(s)
        sweep = _submit(s, tiny_sweep(methods=["hydra"], sparsities=[0.5],
                                      dataset={"train_subset": 600},
                                      training={"pretrain_epochs": 200}))
        rid = sweep["run_ids"][0]

        def kill_its_worker() -> str:
            run = probe.wait_run(rid, lambda r: r["status"] == "running" and r["worker"]
                                 and (r["epoch"] or 0) >= 1, timeout=60, interval=0.05)
            victim = s.workers[worker_index(s, run["worker"])]
            kill_group(victim, signal.SIGKILL)
            victim.wait(10)
            return str(run["worker"])

        first = kill_its_worker()
        requeued = probe.wait_run(rid, lambda r: r["attempts"] == 1, timeout=60)
        assert requeued["status"] in ("queued", "running")
        second = kill_its_worker()
        assert second.split("#")[0] != first.split("#")[0]
        s.workers = [w for w in s.workers if w.poll() is None]
        assert len(s.workers) == 1
        final = probe.wait_run(rid, lambda r: r["status"] in TERMINAL, timeout=60)
        assert (final["status"], final["category"]) == ("failed", "worker_lost"), final
        assert "2 attempts" in final["message"]
        statuses = probe.statuses(probe.events(rid))
        assert statuses == ["queued", "running", "queued", "running", "failed"], statuses
        time.sleep(4)  # past the heartbeat TTL (3 s): the lost-run sweep leaves a failed run alone
        assert probe.run(rid)["status"] == "failed"
        for w in s.workers:
            assert w.poll() is None, process_output(w)[-2000:]
