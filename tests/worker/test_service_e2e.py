"""The job service end to end: real redis-server, real Celery worker process, real uvicorn."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.store import Store
from tests.support.sse import SSEReader
from tests.support.stack import Stack, service_stack, tiny_sweep
from tscnc.records import parse_event

TERMINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with service_stack(tmp_path_factory.mktemp("e2e")) as s:
        yield s


def _submit(stack: Stack, spec: dict, key: str | None = None) -> dict:
    headers = {"Idempotency-Key": key} if key else {}
    r = stack.api("POST", "/sweeps", json={"spec": spec}, headers=headers)
    assert r.status_code in (200, 201), r.text
    return r.json()


def test_sweep_runs_to_succeeded_with_live_events(stack: Stack) -> None:
    spec = tiny_sweep()
    sweep = _submit(stack, spec, key="e2e-once")
    again = _submit(stack, spec, key="e2e-once")
    assert again["id"] == sweep["id"]
    listed = stack.api("GET", "/sweeps").json()
    assert [s["id"] for s in listed["items"]].count(sweep["id"]) == 1

    runs = stack.api("GET", "/runs", params={"sweep": sweep["id"]}).json()["items"]
    hydra = next(r for r in runs if r["key"] == "hydra-s0.9-seed0")
    received: list[dict] = []
    delays: list[float] = []
    with SSEReader(f"{stack.base}/api/v1/runs/{hydra['id']}/events", headers=stack.headers,
                   timeout=240) as reader:
        while True:
            msg = reader.get(timeout=240)
            ev = SSEReader.event(msg)
            if ev["type"] == "epoch":
                delays.append(time.time() - ev["time"])
            received.append(msg)
            if ev["type"] == "status" and ev["status"] in TERMINAL:
                break
    statuses = [SSEReader.event(m)["status"] for m in received if m["event"] == "status"]
    epochs = [m for m in received if m["event"] == "epoch"]
    # Its own stages' epochs arrived while it ran (after "running"); the pretrain it shares
    # with its group ran under another run, while this one waited, queued (issue 13 item 1).
    own = next(m for m in epochs if SSEReader.event(m)["stage"] != "pretrain")
    assert any(SSEReader.event(m).get("status") == "running"
               for m in received[:received.index(own)])
    assert statuses[-1] == "succeeded"
    assert max(delays) < 1.0, delays
    keys = [(SSEReader.event(m)["stage"], SSEReader.event(m)["epoch"]) for m in epochs]
    assert sorted(keys) == sorted({("pretrain", 1), ("pretrain", 2), ("prune", 1),
                                   ("finetune", 1), ("finetune", 2)})

    # Reconnect from the middle: exactly the events after that id, in order.
    cut = len(received) // 2
    with SSEReader(f"{stack.base}/api/v1/runs/{hydra['id']}/events", headers={
            **stack.headers, "Last-Event-ID": received[cut]["id"]}) as reader:
        rest = [reader.get(timeout=10) for _ in range(len(received) - cut - 1)]
        assert reader.closed.wait(10)
    assert [m["id"] for m in rest] == [m["id"] for m in received[cut + 1:]]

    done = stack.wait_runs(sweep["id"], lambda rs: all(r["status"] in TERMINAL for r in rs))
    assert {r["status"] for r in done} == {"succeeded"}, [(r["key"], r["message"]) for r in done]
    assert len(done) == 5  # dense + hydra×2 + tscnc×2

    store = Store.from_url(stack.redis_url)
    for r in done:
        result = store.get_result(r["id"])
        assert result is not None and result.run == r["id"]
        assert 0 <= result.robust_accuracy["pgd"] <= result.clean_accuracy <= 1
        assert Path(result.checkpoint).is_file()
        stream_epochs = [(ev.stage, ev.epoch) for e in store.events(r["id"], limit=1000)
                         if e.type == "epoch" and (ev := parse_event(e.data))]
        assert len(stream_epochs) == len(set(stream_epochs)) > 0
    csv = stack.api("GET", f"/sweeps/{sweep['id']}/results", params={"format": "csv"}).text
    assert len(csv.strip().splitlines()) == 1 + len(done)


def test_cancel_running_run_then_retry(stack: Stack) -> None:
    spec = tiny_sweep(methods=["hydra"], sparsities=[0.5],
                      dataset={"train_subset": 1000},
                      training={"pretrain_epochs": 40, "prune_epochs": 1, "finetune_epochs": 1})
    sweep = _submit(stack, spec)
    run = stack.wait_runs(sweep["id"], lambda rs: rs[0]["status"] == "running"
                          and (rs[0].get("epoch") or 0) >= 2)[0]
    r = stack.api("POST", f"/runs/{run['id']}/cancel")
    assert r.status_code == 200, r.text
    t0 = time.monotonic()
    run = stack.wait_runs(sweep["id"], lambda rs: rs[0]["status"] in TERMINAL, timeout=10)[0]
    assert run["status"] == "cancelled", run
    assert time.monotonic() - t0 < 5
    kept = list((stack.artifacts / sweep["id"]).rglob("epoch_*.pt"))
    assert kept, "the last checkpoint was not kept"

    r = stack.api("POST", f"/runs/{run['id']}/retry")
    assert r.status_code == 200, r.text
    run = stack.wait_runs(sweep["id"], lambda rs: rs[0]["status"] in TERMINAL)[0]
    assert run["status"] == "succeeded", run
    page = stack.api("GET", f"/runs/{run['id']}/events", params={"limit": 1000},
                     headers={"Accept": "application/json"}).json()
    events = [x["event"] for x in page["items"]]
    epochs = [(e["stage"], e["epoch"]) for e in events if e["type"] == "epoch"]
    assert len(epochs) == len(set(epochs))
    assert {e for s, e in epochs if s == "pretrain"} == set(range(1, 41))
    starts = [e for e in events if e["type"] == "stage_started" and e["stage"] == "pretrain"]
    assert starts[-1]["resumed_from_epoch"] >= 2  # resumed from its checkpoint
