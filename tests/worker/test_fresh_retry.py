"""A retried run whose checkpoints another tscnc build wrote: resumed with a warning event, or
trained again with {"fresh": true} (real redis-server, Celery worker and uvicorn)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import tscnc
from backend.store import Store
from tests.support.stack import Stack, service_stack, tiny_sweep
from tscnc.client import Client
from tscnc.records import RunStatus

TERMINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with service_stack(tmp_path_factory.mktemp("fresh")) as s:
        yield s


def _events_since(stack: Stack, run_id: str, skip: int) -> list[dict[str, Any]]:
    page = stack.api("GET", f"/runs/{run_id}/events", params={"limit": 1000},
                     headers={"Accept": "application/json"}).json()
    return [x["event"] for x in page["items"]][skip:]


def _retry(stack: Stack, sweep_id: str, run_id: str, body: dict | None) -> list[dict[str, Any]]:
    before = len(_events_since(stack, run_id, 0))
    # A finished run made retryable (as if its evaluation had failed): only retries of failed or
    # cancelled runs exist, and the point here is what a retry does with its checkpoints.
    ok, _ = Store.from_url(stack.redis_url)._set_status(
        run_id, RunStatus.failed, category="error", message="made to fail by the test",
        expect={RunStatus.succeeded})
    assert ok
    if body is None:
        r = stack.api("POST", f"/runs/{run_id}/retry")
        assert r.status_code == 200, r.text
    else:      # through the Python client, as a user would
        assert Client(stack.base, stack.token).retry(run_id, **body).status == "queued"
    run = stack.wait_runs(sweep_id, lambda rs: rs[0]["status"] in TERMINAL)[0]
    assert run["status"] == "succeeded", run
    return _events_since(stack, run_id, before)


def _stamp_old(path: Path) -> None:
    payload = torch.load(path, weights_only=True)
    payload["code"] = {"tscnc": "0.0.1"}
    torch.save(payload, path)


def test_retry_warns_about_another_build_and_fresh_trains_again(stack: Stack) -> None:
    spec = tiny_sweep(methods=["hydra"], sparsities=[0.5],
                      training={"pretrain_epochs": 1, "prune_epochs": 1, "finetune_epochs": 1})
    r = stack.api("POST", "/sweeps", json={"spec": spec})
    assert r.status_code == 201, r.text
    sweep = r.json()
    run = stack.wait_runs(sweep["id"], lambda rs: rs[0]["status"] in TERMINAL)[0]
    assert run["status"] == "succeeded", run
    (prune,) = (stack.artifacts / sweep["id"]).rglob("prune/epoch_0001.pt")

    _stamp_old(prune)
    events = _retry(stack, sweep["id"], run["id"], None)
    warnings = [e["message"] for e in events if e["type"] == "log" and e["level"] == "warning"]
    assert any("tscnc 0.0.1" in m and "fresh" in m for m in warnings), warnings
    starts = {e["stage"]: e["resumed_from_epoch"] for e in events
              if e["type"] == "stage_started" and e["stage"] in ("prune", "finetune")}
    assert starts == {"prune": 1, "finetune": 1}             # resumed, not trained again
    assert torch.load(prune, weights_only=True)["code"] == {"tscnc": "0.0.1"}

    events = _retry(stack, sweep["id"], run["id"], {"fresh": True})
    warnings = [e["message"] for e in events if e["type"] == "log" and e["level"] == "warning"]
    assert any("starting over" in m for m in warnings), warnings
    # Epoch events of an epoch already streamed are dropped by the store; the stage starts say it.
    starts = {e["stage"]: e["resumed_from_epoch"] for e in events
              if e["type"] == "stage_started" and e["stage"] in ("prune", "finetune")}
    assert starts == {"prune": 0, "finetune": 0}
    # Rewritten by the worker process, this build (its git reading may differ from this
    # process's when a commit happened in between).
    assert torch.load(prune, weights_only=True)["code"]["tscnc"] == tscnc.__version__
