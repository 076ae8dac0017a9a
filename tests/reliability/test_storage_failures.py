"""Issue 14.8 — an unwritable artifacts directory fails the run as ``storage``, naming the path.

Real redis-server, uvicorn and Celery worker. The worker's ARTIFACTS_DIR lies under a regular
file (tests run as root, so a chmod would not stop a write): the first checkpoint write fails,
the run ends ``failed`` with category ``storage`` and a message naming the checkpoint's path,
and is not retried. (The partial-file half of the promise: tests/tscnc/test_storage.py.)
"""

from __future__ import annotations

from pathlib import Path

from tests.support.services import process_output, start_redis, start_uvicorn, stop_process
from tests.support.stack import TOKEN, Stack, start_worker, tiny_sweep


def test_an_unwritable_artifacts_directory_fails_the_run_as_storage(tmp_path: Path) -> None:
    blocker = tmp_path / "a-regular-file"
    blocker.write_text("not a directory")
    artifacts = blocker / "artifacts"
    redis_url, redis_proc = start_redis(tmp_path / "redis")
    base, api_proc = start_uvicorn("backend.app:create_app", {
        "REDIS_URL": redis_url, "TSCNC_ARTIFACTS_DIR": str(tmp_path / "served"),
        "TSCNC_BOOTSTRAP_TOKEN": TOKEN}, factory=True)
    worker = start_worker(redis_url, artifacts, "storage-0")
    s = Stack(base=base, redis_url=redis_url, artifacts=artifacts, workers=[worker])
    try:
        s.wait_workers(1)
        spec = tiny_sweep(methods=["dense", "hydra"], sparsities=[0.5])
        r = s.api("POST", "/sweeps", json={"spec": spec})
        assert r.status_code == 201, r.text
        runs = s.wait_runs(r.json()["id"], lambda rs: all(x["status"] == "failed" for x in rs),
                           timeout=120)
        for run in runs:
            assert run["category"] == "storage", run
            assert str(artifacts) in run["message"] and "epoch_0001.pt" in run["message"], run
            assert run["attempts"] == 0, run
        assert worker.poll() is None, process_output(worker)  # the worker carries on
    finally:
        stop_process(worker, timeout=15)
        stop_process(api_proc)
        stop_process(redis_proc)
