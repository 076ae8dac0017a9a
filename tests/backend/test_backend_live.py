"""The real app in a uvicorn subprocess over HTTP: Server-Sent Events (live delivery, latency,
resumption with Last-Event-ID, end of stream), 503 while Redis is down and recovery after, and
the torch-free import of the app."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from backend.store import Store
from tests.support.apps import BOOTSTRAP_TOKEN as BOOTSTRAP
from tests.support.services import start_redis, start_uvicorn, stop_process
from tests.support.sse import SSEReader
from tests.support.wait import wait_until
from tscnc.records import EpochEvent, LogEvent, RunStatus, Stage
from tscnc.spec import Method, SweepSpec, TrainingSpec

ROOT = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": f"Bearer {BOOTSTRAP}"}


def make_sweep(store: Store) -> tuple[str, list[str]]:
    spec = SweepSpec(methods=[Method.dense, Method.tscnc], sparsities=[0.9], seeds=[0],
                     training=TrainingSpec(pretrain_epochs=3, prune_epochs=1, finetune_epochs=1))
    sweep, _ = store.create_sweep(spec, "owner")
    return sweep.id, sweep.run_ids


def epoch(run: str, e: int) -> EpochEvent:
    return EpochEvent(run=run, stage=Stage.pretrain, epoch=e, epochs=3, loss=1.0,
                      clean_accuracy=0.5, robust_accuracy=0.2, lr=0.1, sparsity=0.0,
                      condition_numbers={"fc1": 3.0})


def test_sse_delivers_live_events_fast_and_resumes_exactly(live: str, store: Store):
    sweep_id, (rid, _) = make_sweep(store)
    url = f"{live}/api/v1/runs/{rid}/events"
    with SSEReader(url, headers=AUTH) as reader:
        assert reader.status == 200
        first = reader.get()                                    # history: the queued status
        assert first["event"] == "status" and SSEReader.event(first)["status"] == "queued"
        store.set_status(rid, RunStatus.running, worker="w", device="cpu")
        assert SSEReader.event(reader.get())["status"] == "running"
        delays = []
        for e in (1, 2):
            t0 = time.monotonic()
            sid = store.record_event(rid, epoch(rid, e))
            msg = reader.get(timeout=5)
            delays.append(msg["at"] - t0)
            assert msg["id"] == sid and msg["event"] == "epoch"
            ev = SSEReader.event(msg)
            assert (ev["epoch"], ev["run"], ev["stage"]) == (e, rid, "pretrain")
        assert max(delays) < 1.0, delays                       # generous bound (DESIGN §4)
        last_seen = msg["id"]
    # While disconnected, three more events; reconnecting gets exactly those.
    missed = [store.record_event(rid, epoch(rid, 3)),
              store.record_event(rid, LogEvent(run=rid, message="checkpoint saved")),
              store.record_event(rid, epoch(rid, 3))]            # a repeated epoch: dropped
    assert missed[2] is None
    missed = missed[:2]
    with SSEReader(url, headers={**AUTH, "Last-Event-ID": last_seen}) as reader:
        got = reader.take(2)
        assert [m["id"] for m in got] == missed
        store.set_status(rid, RunStatus.succeeded)
        final = reader.get()
        assert final["event"] == "status" and SSEReader.event(final)["status"] == "succeeded"
        assert reader.closed.wait(5), "the stream did not end after the terminal status"
        assert reader.messages.empty()
    # The last id in the query; a finished run with nothing new: 204. A token in the URL: 401.
    r = httpx.get(url, params={"last_event_id": final["id"]}, headers=AUTH, timeout=5)
    assert r.status_code == 204
    assert httpx.get(url, params={"token": BOOTSTRAP}, timeout=5).status_code == 401
    with SSEReader(url, headers=AUTH, params={"last_event_id": missed[0]}) as reader:
        assert [m["id"] for m in reader.take(2)] == [missed[1], final["id"]]
        assert reader.closed.wait(5)


def test_sweep_stream_carries_every_run_and_ends_when_all_finish(live: str, store: Store):
    sweep_id, (dense, pruned) = make_sweep(store)
    with SSEReader(f"{live}/api/v1/sweeps/{sweep_id}/events", headers=AUTH) as reader:
        history = reader.take(2)
        assert {SSEReader.event(m)["run"] for m in history} == {dense, pruned}
        store.record_event(pruned, epoch(pruned, 1))
        store.set_status(dense, RunStatus.running)
        store.set_status(dense, RunStatus.succeeded)
        got = reader.take(3)
        assert [(SSEReader.event(m)["run"], m["event"]) for m in got] == [
            (pruned, "epoch"), (dense, "status"), (dense, "status")]
        assert not reader.closed.wait(1.5)             # one run still open: keep streaming
        assert reader.comments >= 1                    # keep-alive comments meanwhile
        store.set_status(pruned, RunStatus.cancelled, expect={RunStatus.queued})
        assert SSEReader.event(reader.get())["status"] == "cancelled"
        assert reader.closed.wait(5)


def test_sse_needs_a_credential_and_a_known_run(live: str, store: Store):
    _, (rid, _) = make_sweep(store)
    assert httpx.get(f"{live}/api/v1/runs/{rid}/events", timeout=5).status_code == 401
    assert httpx.get(f"{live}/api/v1/runs/nope/events", headers=AUTH, timeout=5).status_code == 404
    r = httpx.get(f"{live}/api/v1/runs/{rid}/events", headers={**AUTH, "Last-Event-ID": "x'"},
                  timeout=5)
    # The declared pattern refuses it (422 naming the header, issue 14.10; it was a bare 400).
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["header", "Last-Event-ID"]


def test_503_while_redis_is_down_then_recovers(tmp_path: Path):
    data = tmp_path / "redis"
    url, redis_proc = start_redis(data, appendonly=True)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    base, api = start_uvicorn("tests.support.apps:app_without_workers", {
        "REDIS_URL": url, "TSCNC_BOOTSTRAP_TOKEN": BOOTSTRAP, "TSCNC_REDIS_TIMEOUT": "1"},
        factory=True)
    try:
        st = Store.from_url(url)
        sweep, _ = st.create_sweep(SweepSpec(methods=[Method.dense], seeds=[0]), "o")
        st.close()
        assert httpx.get(f"{base}/api/v1/runs", headers=AUTH, timeout=5).json()["total"] == 1
        stop_process(redis_proc)
        for method, path in [("GET", "/api/v1/runs"), ("GET", f"/api/v1/sweeps/{sweep.id}"),
                             ("POST", "/api/v1/sweeps"), ("GET", "/api/v1/health"),
                             ("GET", f"/api/v1/runs/{sweep.run_ids[0]}/events")]:
            t0 = time.monotonic()
            r = httpx.request(method, base + path, headers=AUTH, json={}, timeout=10)
            assert r.status_code == 503, (path, r.status_code, r.text)
            assert time.monotonic() - t0 < 5, "a request hung while Redis was down"
            body = r.json()
            assert "Redis" in body.get("detail", "") or body.get("redis") == "down"
        url2, redis_proc = start_redis(data, appendonly=True, port=port)
        r = httpx.get(f"{base}/api/v1/runs", headers=AUTH, timeout=5)
        assert r.status_code == 200 and r.json()["total"] == 1           # nothing lost (AOF)
        assert httpx.get(f"{base}/api/v1/health", timeout=5).json()["redis"] == "ok"
    finally:
        stop_process(api)
        stop_process(redis_proc)


def test_importing_the_app_leaves_torch_unloaded():
    code = ("import sys, backend.app; "
            "bad = [m for m in ('torch', 'worker.tasks', 'tscnc.pipeline', 'celery') "
            "if m in sys.modules]; print(json.dumps(bad))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, env={
                             "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


@pytest.mark.parametrize("path", ["/api/v1/openapi.json", "/api/v1/docs"])
def test_live_docs(live: str, path: str):
    assert httpx.get(live + path, timeout=5).status_code == 200


def test_python_m_backend_stops_promptly_with_open_streams(redis_url: str, store: Store):
    """``python -m backend`` serves on TSCNC_HOST/PORT and, on SIGTERM, closes open event
    streams after TSCNC_SHUTDOWN_GRACE instead of waiting for them forever."""
    import os
    import signal

    from tests.support.services import _popen, free_port, process_output

    _, (rid, _) = make_sweep(store)
    port = free_port()
    proc = _popen([sys.executable, "-m", "backend"], cwd=str(ROOT), env={
        **os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": redis_url, "TSCNC_PORT": str(port),
        "TSCNC_BOOTSTRAP_TOKEN": BOOTSTRAP, "TSCNC_SHUTDOWN_GRACE": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(base + "/api/v1/health", timeout=1).status_code == 200, 30,
                   "the backend to answer /health", retry_on=(httpx.HTTPError,))
        with SSEReader(f"{base}/api/v1/runs/{rid}/events", headers=AUTH) as reader:
            assert reader.get()["event"] == "status"
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
            assert time.monotonic() - t0 < 5, process_output(proc)
            assert reader.closed.wait(5)
    finally:
        stop_process(proc)
