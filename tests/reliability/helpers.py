"""Helpers of the reliability tests (issue 6): probes of what a run went through, and
signals to a worker's whole process group."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.apps import BOOTSTRAP_TOKEN
from tests.support.services import process_output, start_redis, start_uvicorn, stop_process
from tests.support.stack import Stack
from tests.support.wait import wait_until

ADMIN = {"Authorization": f"Bearer {BOOTSTRAP_TOKEN}"}


@contextlib.contextmanager
def live_api(tmp: Path, env: dict[str, str] | None = None) -> Iterator[tuple[str, str]]:
    """A real uvicorn server (no-op dispatcher: nothing is queued) on a private redis-server,
    configured by ``env`` like a deployment; yields ``(base_url, redis_url)``. The bootstrap
    admin token is :data:`ADMIN`. Fails if the server did not stop cleanly."""
    url, redis_proc = start_redis(tmp / "redis")
    try:
        base, api_proc = start_uvicorn("tests.support.apps:app_without_workers", {
            "REDIS_URL": url, "TSCNC_ARTIFACTS_DIR": str(tmp), "TSCNC_SSE_KEEPALIVE": "1",
            "TSCNC_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN, **(env or {})}, factory=True)
        try:
            yield base, url
        finally:
            code = stop_process(api_proc)
        assert code in (0, -15), f"uvicorn exited with {code}:\n{process_output(api_proc)}"
    finally:
        stop_process(redis_proc)

TERMINAL = {"succeeded", "failed", "cancelled"}


class Probe:
    """Reads a run's events and state through the API of a :class:`Stack`."""

    def __init__(self, stack: Stack) -> None:
        self.s = stack

    def events(self, run_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        after = None
        while True:
            params: dict[str, Any] = {"limit": 1000, **({"after": after} if after else {})}
            page = self.s.api("GET", f"/runs/{run_id}/events", params=params,
                              headers={"Accept": "application/json"}).json()
            out += [x["event"] for x in page["items"]]
            after = page["next"]
            if not after:
                return out

    def run(self, run_id: str) -> dict[str, Any]:
        r = self.s.api("GET", f"/runs/{run_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait_run(self, run_id: str, done: Any, timeout: float = 120,
                 interval: float = 0.1) -> dict[str, Any]:
        """Poll one run until ``done(run)``; fails with the workers' logs on timeout."""
        return wait_until(lambda: self.run(run_id), timeout, f"run {run_id}", done=done,
                          interval=interval,
                          show=lambda run: f"{run}\n{self.s.worker_logs()}")

    @staticmethod
    def epochs(events: list[dict[str, Any]]) -> list[tuple[str, int]]:
        return [(e["stage"], e["epoch"]) for e in events if e["type"] == "epoch"]

    @staticmethod
    def statuses(events: list[dict[str, Any]]) -> list[str]:
        return [e["status"] for e in events if e["type"] == "status"]


def worker_index(stack: Stack, worker_name: str) -> int:
    """Index in ``stack.workers`` of the worker a run reports (``test-N@host``)."""
    return int(worker_name.split("@", 1)[0].rsplit("-", 1)[1])


def kill_group(proc: Any, sig: int = signal.SIGKILL) -> None:
    """Signal the worker's whole process group (Celery parent and pool child)."""
    os.killpg(proc.pid, sig)
