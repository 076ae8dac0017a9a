"""A pretrain message delivered twice: the second delivery must not touch the group's runs.

Messages are acknowledged late, so the broker hands a pretrain message out again when its
worker dies (or is stopped) before acknowledging it, possibly after the pretrain already
finished. Real redis-server, real uvicorn and a real Celery worker process: the sweep's pretrain
message is copied byte for byte in the broker's queue (what the broker itself does when it
restores an unacknowledged message), once before the worker starts, so the copy arrives between
the pretrain and the group's prune/finetune tasks, and once more after the sweep finished.
Neither copy may add a queued/running pair to a run's history nor change a stored result.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.store import Store
from tests.reliability.helpers import Probe
from tests.support.services import process_output
from tests.support.stack import Stack, service_stack, start_worker, tiny_sweep
from tests.support.wait import wait_until

TERMINAL = {"succeeded", "failed", "cancelled"}
# One pretrain group: dense and hydra train the same pretrain (plain AT).
SPEC = tiny_sweep(methods=["dense", "hydra"], sparsities=[0.5],
                  training={"pretrain_epochs": 1, "prune_epochs": 1, "finetune_epochs": 1})
# The group's first run owns the pretrain; the other waits for it. Each is queued again once the
# pretrain is done, until its own prune/finetune/evaluate task claims it.
OWNER_STATUSES = ["queued", "running", "queued", "running", "succeeded"]
WAITER_STATUSES = ["queued", "queued", "queued", "running", "succeeded"]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with service_stack(tmp_path, workers=0) as s:
        yield s


def _pending(store: Store, queue: str = "cpu") -> list[str]:
    """The raw messages waiting in ``queue``, oldest last (the broker pops from the right)."""
    return [m for key in store.k.celery_queue(queue) for m in store.r.lrange(key, 0, -1)]


def _push_copy(store: Store, message: str, queue: str = "cpu") -> None:
    store.r.lpush(store.k.celery_queue(queue)[0], message)


def _pretrains_received(stack: Stack) -> int:
    return process_output(stack.workers[0]).count("Task tscnc.pretrain[") // 2  # received, done


def _idle(stack: Stack, store: Store) -> None:
    """Wait until the broker holds no message, waiting or delivered."""
    wait_until(lambda: (sum(store.queue_depths().values()), store.unacked_messages()), 60,
               "the worker to drain the queue", done=lambda n: n == (0, 0), interval=0.2,
               check=stack.workers_alive, show=lambda n: f"{n}\n{stack.worker_logs()}")


def _history(stack: Stack, probe: Probe, run_ids: list[str]) -> dict[str, Any]:
    return {r: {"statuses": probe.statuses(probe.events(r)),
                "result": stack.api("GET", f"/runs/{r}/result").json()} for r in run_ids}


def test_a_duplicate_pretrain_message_leaves_the_runs_alone(stack: Stack) -> None:
    store = Store.from_url(stack.redis_url)
    probe = Probe(stack)
    r = stack.api("POST", "/sweeps", json={"spec": SPEC})
    assert r.status_code == 201, r.text
    sweep_id, run_ids = r.json()["id"], r.json()["run_ids"]
    (message,) = _pending(store)       # no worker yet: the sweep's one pretrain message waits
    assert "tscnc.pretrain" in message
    _push_copy(store, message)          # delivered after the original, before the completes

    stack.workers.append(start_worker(stack.redis_url, stack.artifacts, "test-0",
                                      {"TSCNC_DATA_ROOTS": str(stack.data_root)}))
    stack.wait_workers(1)
    runs = stack.wait_runs(sweep_id, lambda rs: all(x["status"] in TERMINAL for x in rs), 120)
    assert [x["status"] for x in runs] == ["succeeded", "succeeded"], runs
    _idle(stack, store)
    assert _pretrains_received(stack) == 2, stack.worker_logs()
    done = _history(stack, probe, run_ids)
    assert [done[r]["statuses"] for r in run_ids] == [OWNER_STATUSES, WAITER_STATUSES], done
    for r in run_ids:
        assert done[r]["result"]["run"] == r, done[r]

    _push_copy(store, message)          # the same message once more, after the sweep finished
    wait_until(lambda: _pretrains_received(stack), 60, "the worker to take the copy",
               done=lambda n: n == 3, check=stack.workers_alive,
               show=lambda n: f"{n}\n{stack.worker_logs()}")
    _idle(stack, store)
    assert _history(stack, probe, run_ids) == done
    assert [x["status"] for x in stack.wait_runs(sweep_id, bool)] == ["succeeded", "succeeded"]
    store.close()
