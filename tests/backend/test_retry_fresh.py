"""POST /runs/{id}/retry with {"fresh": true}: the retry is queued as a fresh one (real Redis,
the app's recorder dispatcher); the worker side is in tests/worker/test_fresh_retry.py."""

from __future__ import annotations

from typing import Any

from backend.store import Store
from tests.backend.test_backend_api import h, submit
from tscnc.records import RunStatus


def _failed_run(client: Any, store: Store, tokens: Any) -> tuple[str, str]:
    sweep = submit(client, tokens.alice).json()
    rid = sweep["run_ids"][0]
    store.set_status(rid, RunStatus.running)
    store.set_status(rid, RunStatus.failed, category="error", message="boom")
    return sweep["id"], rid


def test_retry_with_fresh_queues_a_fresh_retry(client, store: Store, tokens, recorder) -> None:
    sweep_id, rid = _failed_run(client, store, tokens)
    r = client.post(f"/api/v1/runs/{rid}/retry", json={"fresh": True}, headers=h(tokens.alice))
    assert r.status_code == 200 and r.json()["status"] == "queued"
    assert recorder.enqueued[-1] == (sweep_id, [rid]) and recorder.fresh == [(sweep_id, [rid])]


def test_retry_without_body_or_fresh_false_resumes(client, store: Store, tokens,
                                                   recorder) -> None:
    for body in (None, {"fresh": False}, {}):
        sweep_id, rid = _failed_run(client, store, tokens)
        r = client.post(f"/api/v1/runs/{rid}/retry", json=body, headers=h(tokens.alice))
        assert r.status_code == 200, r.text
        assert recorder.enqueued[-1] == (sweep_id, [rid])
    assert recorder.fresh == []


def test_retry_body_is_validated_naming_the_field(client, store: Store, tokens,
                                                  recorder) -> None:
    _, rid = _failed_run(client, store, tokens)
    for body in ({"fresh": "maybe"}, {"fresh": True, "other": 1}):
        r = client.post(f"/api/v1/runs/{rid}/retry", json=body, headers=h(tokens.alice))
        assert r.status_code == 422, r.text
        assert "fresh" in r.text or "other" in r.text
    assert store.get_run(rid).status == RunStatus.failed
