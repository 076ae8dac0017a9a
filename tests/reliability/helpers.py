"""Helpers of the reliability tests (issue 6): probes of what a run went through, and
signals to a worker's whole process group."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from tests.support.services import process_output
from tests.support.stack import Stack

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
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(run_id)
            if done(run):
                return run
            if time.monotonic() > deadline:
                logs = "\n".join(process_output(w)[-3000:] for w in self.s.workers)
                raise AssertionError(f"run not there in {timeout} s: {run}\n{logs}")
            time.sleep(interval)

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
