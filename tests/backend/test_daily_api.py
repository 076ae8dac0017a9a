"""The API side of the dashboard as a daily tool (issue 13): truthful sweep states, attempts,
datasets, notes and tags, filters, over the real app and a real redis-server."""

from __future__ import annotations

from typing import Any

from backend.store import Store
from tests.backend.test_backend_api import h, submit
from tscnc.records import RunStatus


def _finish(store: Store, run_id: str, status: RunStatus) -> None:
    store.set_status(run_id, RunStatus.running, worker="w", device="cpu")
    store.set_status(run_id, status, category="error" if status == RunStatus.failed else None)


def test_sweep_state_is_told_from_its_runs(client: Any, store: Store, tokens: Any) -> None:
    sweep = submit(client, tokens.alice).json()          # 5 runs
    ids = sweep["run_ids"]

    def state() -> tuple[str, str]:
        s = client.get(f"/api/v1/sweeps/{sweep['id']}", headers=h(tokens.viewer)).json()
        listed = client.get("/api/v1/sweeps", headers=h(tokens.viewer)).json()["items"][0]
        assert (listed["status"], listed["summary"]) == (s["status"], s["summary"])
        return s["status"], s["summary"]

    assert state() == ("queued", "queued · 5 queued")
    store.set_status(ids[0], RunStatus.running, worker="w", device="cpu")
    assert state() == ("running", "running · 4 queued · 1 running")
    for rid in ids[:4]:
        _finish(store, rid, RunStatus.succeeded)
    assert state() == ("running", "running · 1 queued · 4 succeeded")
    store.set_status(ids[4], RunStatus.cancelled)
    # Not "cancelled": most of it succeeded.
    assert state() == ("finished", "finished · 4 succeeded · 1 cancelled")

    other = submit(client, tokens.alice, key="second").json()
    for rid in other["run_ids"]:
        _finish(store, rid, RunStatus.succeeded)
    s = client.get(f"/api/v1/sweeps/{other['id']}", headers=h(tokens.viewer)).json()
    assert (s["status"], s["summary"]) == ("succeeded", "succeeded · 5 succeeded")


def test_retry_counts_an_attempt(client: Any, store: Store, tokens: Any, recorder: Any) -> None:
    rid = submit(client, tokens.alice).json()["run_ids"][0]
    _finish(store, rid, RunStatus.failed)
    for n in (1, 2):
        r = client.post(f"/api/v1/runs/{rid}/retry", headers=h(tokens.alice))
        assert r.status_code == 200 and r.json()["attempts"] == n, r.text
        _finish(store, rid, RunStatus.failed)


def test_results_only_once_evaluated_monitor_values_apart(client: Any, store: Store,
                                                         tokens: Any) -> None:
    from tests.backend.test_backend_api import make_result
    from tscnc.records import EpochEvent, Stage

    sweep = submit(client, tokens.alice).json()
    rid = sweep["run_ids"][-1]
    store.set_status(rid, RunStatus.running, worker="w", device="cpu")
    store.record_event(rid, EpochEvent(run=rid, stage=Stage.pretrain, epoch=1, epochs=4, loss=1.0,
                                       clean_accuracy=0.8, robust_accuracy=0.4,
                                       condition_numbers={"fc1": 3.0, "fc2": 5.0}, sparsity=0.0,
                                       lr=0.1, time=1.0))
    run = client.get(f"/api/v1/runs/{rid}", headers=h(tokens.viewer)).json()
    assert [run[k] for k in ("clean_accuracy", "robust_accuracy", "kappa_median",
                             "sparsity_actual")] == [None] * 4
    assert run["monitor"] == {"stage": "pretrain", "epoch": 1, "clean_accuracy": 0.8,
                              "robust_accuracy": 0.4, "kappa_median": 4.0, "sparsity": 0.0}
    listed = client.get("/api/v1/runs", params={"sweep": sweep["id"], "sort": "clean_accuracy"},
                        headers=h(tokens.viewer)).json()["items"]
    assert all(x["clean_accuracy"] is None for x in listed)
    store.put_result(rid, make_result(rid))
    run = client.get(f"/api/v1/runs/{rid}", headers=h(tokens.viewer)).json()
    assert (run["clean_accuracy"], run["robust_accuracy"], run["sparsity_actual"]) == (0.9, 0.4,
                                                                                       0.9)
