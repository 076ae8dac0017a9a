"""Run states tell the truth (issue 13 items 1, 2, 4), through a real worker, Redis and API.

``running`` means a worker executes the run now: with one worker at most one run is running;
a run waiting for its shared pretrain or for a worker is ``queued``, and cancelling it ends it
at once, with nothing in its log after the final status.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.support.stack import Stack, service_stack, tiny_sweep

TERMINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with service_stack(tmp_path_factory.mktemp("states")) as s:
        yield s


def _events(stack: Stack, run_id: str) -> list[dict]:
    page = stack.api("GET", f"/runs/{run_id}/events", params={"limit": 1000},
                     headers={"Accept": "application/json"}).json()
    return [x["event"] for x in page["items"]]


def test_one_worker_runs_one_run_at_a_time(stack: Stack) -> None:
    # Pretrain epochs enough to be watched also when the worker is warm (an earlier test of
    # this module has run): a cold worker's first run hid how short the runs are.
    spec = tiny_sweep(methods=["hydra", "tscnc"], sparsities=[0.5, 0.9], seeds=[0, 1],
                      training={"pretrain_epochs": 20})
    r = stack.api("POST", "/sweeps", json={"spec": spec})
    assert r.status_code == 201, r.text
    sweep = r.json()
    most, seen_running, samples = [0], set(), [0]
    stop = threading.Event()

    def watch() -> None:  # the queue page's counts and the runs list, sampled while it works
        while not stop.is_set():
            q = stack.api("GET", "/queue").json()
            runs = stack.api("GET", "/runs", params={"sweep": sweep["id"]}).json()["items"]
            running = [x for x in runs if x["status"] == "running"]
            most[0] = max(most[0], q["runs"].get("running", 0), len(running))
            seen_running.update(x["key"] for x in running)
            samples[0] += 1
            stop.wait(0.05)  # the sampling interval: sample while the runs are worked on

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        done = stack.wait_runs(sweep["id"], lambda rs: all(x["status"] in TERMINAL for x in rs))
    finally:
        stop.set()
        t.join(10)
    assert {x["status"] for x in done} == {"succeeded"}, [(x["key"], x["message"]) for x in done]
    assert samples[0] > 20
    assert most[0] == 1, f"{most[0]} runs were running at once on one worker"
    assert len(seen_running) >= 4          # each run was seen running at some time

    # A run that shared another run's pretrain: its log says it waited, then ran its own part.
    for x in done:
        statuses = [(e["status"], e.get("message") or "") for e in _events(stack, x["id"])
                    if e["type"] == "status"]
        assert statuses[-1][0] == "succeeded"
        assert any("waiting" in m for s, m in statuses if s == "queued"), statuses


def test_cancel_a_waiting_run_at_once_and_log_agrees(stack: Stack) -> None:
    spec = tiny_sweep(methods=["hydra"], sparsities=[0.5, 0.9], dataset={"train_subset": 1000},
                      training={"pretrain_epochs": 12, "prune_epochs": 1, "finetune_epochs": 1})
    sweep = stack.api("POST", "/sweeps", json={"spec": spec}).json()
    runs = stack.wait_runs(sweep["id"], lambda rs: any(
        x["status"] == "running" and (x.get("epoch") or 0) >= 1 for x in rs))
    waiting = next(x for x in runs if x["status"] == "queued")
    r = stack.api("POST", f"/runs/{waiting['id']}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled", r.json()       # at once, not "cancel requested"

    done = stack.wait_runs(sweep["id"], lambda rs: all(x["status"] in TERMINAL for x in rs))
    by_id = {x["id"]: x for x in done}
    assert by_id[waiting["id"]]["status"] == "cancelled"
    other = next(x for x in done if x["id"] != waiting["id"])
    assert other["status"] == "succeeded", other
    events = _events(stack, waiting["id"])
    assert events[-1]["type"] == "status" and events[-1]["status"] == "cancelled", events[-3:]
    assert sum(e["type"] == "status" and e["status"] in TERMINAL for e in events) == 1


def test_retry_counts_an_attempt(stack: Stack) -> None:
    spec = tiny_sweep(methods=["hydra"], sparsities=[0.5], dataset={"train_subset": 1000},
                      training={"pretrain_epochs": 30, "prune_epochs": 1, "finetune_epochs": 1})
    sweep = stack.api("POST", "/sweeps", json={"spec": spec}).json()
    run = stack.wait_runs(sweep["id"], lambda rs: rs[0]["status"] == "running")[0]
    assert run["attempts"] == 0
    assert stack.api("POST", f"/runs/{run['id']}/cancel").status_code == 200
    stack.wait_runs(sweep["id"], lambda rs: rs[0]["status"] == "cancelled", timeout=30)
    r = stack.api("POST", f"/runs/{run['id']}/retry")
    assert r.status_code == 200 and r.json()["attempts"] == 1, r.text
    assert stack.api("POST", f"/runs/{run['id']}/cancel").status_code == 200
    stack.wait_runs(sweep["id"], lambda rs: rs[0]["status"] == "cancelled", timeout=30)
