"""App factories for tests that run the API in a uvicorn subprocess.

``uvicorn --factory tests.support.apps:app_without_workers`` serves the real app with its
dispatcher swapped for a no-op (a dependency swap: nothing is queued to Celery), configured
from the environment like the real one.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

# Admin token the backend tests give their servers (TSCNC_BOOTSTRAP_TOKEN).
BOOTSTRAP_TOKEN = "bootstrap-admin-secret-for-tests-0123456789"


def app_without_workers() -> FastAPI:
    from backend.app import create_app

    def enqueue(sweep_id: str, run_ids: list[str] | None = None, fresh: bool = False) -> Any:
        return None

    def revoke(task_id: str) -> Any:
        return None

    return create_app(enqueue=enqueue, revoke=revoke)
