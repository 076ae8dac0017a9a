"""The whole service for tests: a private Redis, real Celery worker processes and the API.

Example::

    with service_stack(tmp_path) as s:
        s.api("POST", "/sweeps", json={"spec": {...}})
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.services import (
    REPO_ROOT,
    _popen,
    process_output,
    start_redis,
    start_uvicorn,
    stop_process,
)
from tests.support.wait import wait_until

TOKEN = "test-admin-token-0123456789abcdef"


def start_worker(redis_url: str, artifacts: Path, name: str = "test-0",
                 extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """A real Celery worker on the cpu queue (prefork, one child, one torch thread)."""
    env = {**os.environ, "REDIS_URL": redis_url, "ARTIFACTS_DIR": str(artifacts),
           "TSCNC_TORCH_THREADS": "1", "TSCNC_HEARTBEAT_INTERVAL": "0.5",
           "TSCNC_HEARTBEAT_TTL": "4",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT),
                                                     os.environ.get("PYTHONPATH", "")) if p),
           **(extra_env or {})}
    # A new session: the test can signal the worker's whole process group at once.
    return _popen([sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q",
                   "cpu", "--pool=prefork", "-c", "1", "--without-gossip", "--without-mingle",
                   "--loglevel=INFO", "-n", f"{name}@%h"],
                  env=env, cwd=str(REPO_ROOT), start_new_session=True)


@dataclass
class Stack:
    base: str
    redis_url: str
    artifacts: Path
    token: str = TOKEN
    workers: list[subprocess.Popen] = field(default_factory=list)
    # The redis-server process and its data directory (a test may restart it on the same port;
    # the stack stops whichever process is here at the end).
    redis_proc: subprocess.Popen | None = None
    redis_dir: Path | None = None
    # The data root of the API and the workers (TSCNC_DATA_ROOTS); tests put datasets here.
    data_root: Path | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {**self.headers, **kw.pop("headers", {})}
        return httpx.request(method, f"{self.base}/api/v1{path}", headers=headers,
                             timeout=kw.pop("timeout", 10), **kw)

    def workers_alive(self) -> None:
        """Fail with its log if a worker process has died."""
        for w in self.workers:
            assert w.poll() is None, f"a worker died:\n{process_output(w)}"

    def worker_logs(self, tail: int = 3000) -> str:
        """The last ``tail`` characters of each worker's output."""
        return "\n".join(process_output(w)[-tail:] for w in self.workers)

    def wait_workers(self, n: int = 1, timeout: float = 90) -> None:
        """Wait until ``n`` workers have written their heartbeat."""
        wait_until(lambda: self.api("GET", "/queue").json()["workers"], timeout,
                   f"{n} worker heartbeat(s)", done=lambda ws: len(ws) >= n, interval=0.2,
                   check=self.workers_alive,
                   show=lambda ws: f"{ws}; worker logs:\n{self.worker_logs()}")

    def wait_runs(self, sweep_id: str, done: Any, timeout: float = 240) -> list[dict[str, Any]]:
        """Poll the sweep's runs until ``done(runs)`` is true; returns the runs."""
        def runs() -> list[dict[str, Any]]:
            page = self.api("GET", "/runs", params={"sweep": sweep_id, "limit": 500}).json()
            return page["items"]  # type: ignore[no-any-return]
        return wait_until(runs, timeout, f"the runs of sweep {sweep_id}", done=done, interval=0.3,
            check=self.workers_alive,
            show=lambda items: [(r["key"], r["status"], r.get("message")) for r in items])


@contextlib.contextmanager
def service_stack(tmp: Path, workers: int = 1, appendonly: bool = False) -> Iterator[Stack]:
    artifacts = tmp / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    data_root = tmp / "data"
    data_root.mkdir(parents=True, exist_ok=True)
    redis_url, redis_proc = start_redis(tmp / "redis", appendonly=appendonly)
    base, api_proc = start_uvicorn("backend.app:create_app", {
        "REDIS_URL": redis_url, "TSCNC_ARTIFACTS_DIR": str(artifacts),
        "TSCNC_BOOTSTRAP_TOKEN": TOKEN, "TSCNC_SSE_KEEPALIVE": "1",
        "TSCNC_DATA_ROOTS": str(data_root)}, factory=True)
    s = Stack(base=base, redis_url=redis_url, artifacts=artifacts, redis_proc=redis_proc,
              redis_dir=tmp / "redis", data_root=data_root)
    s.workers = [start_worker(redis_url, artifacts, f"test-{i}",
                              {"TSCNC_DATA_ROOTS": str(data_root)}) for i in range(workers)]
    try:
        s.wait_workers(workers)
        yield s
        for w in s.workers:
            assert w.poll() is None, f"a worker died during the test:\n{process_output(w)}"
    finally:
        for w in s.workers:
            stop_process(w, timeout=15)
        stop_process(api_proc)
        if s.redis_proc is not None:
            stop_process(s.redis_proc)


def tiny_sweep(**over: Any) -> dict[str, Any]:
    """A digits sweep sized for tests (seconds per run on one CPU thread)."""
    spec: dict[str, Any] = {
        "name": "test-sweep",
        "dataset": {"name": "digits", "train_subset": 300},
        "model": {"name": "mlp", "width": 24},
        "training": {"pretrain_epochs": 2, "prune_epochs": 1, "finetune_epochs": 2,
                     "batch_size": 64, "lr": 0.05, "monitor_examples": 40, "device": "cpu"},
        "adversarial": {"steps": 2},
        "evaluation": {"attacks": ["fgsm", "pgd"], "pgd_steps": 3, "examples": 60,
                       "security_curve": [0.0, 1.0, 2.0]},
        "methods": ["dense", "hydra", "tscnc"],
        "sparsities": [0.5, 0.9],
        "seeds": [0],
    }
    for k, v in over.items():
        spec[k] = {**spec[k], **v} if isinstance(v, dict) and isinstance(spec.get(k), dict) else v
    return spec
