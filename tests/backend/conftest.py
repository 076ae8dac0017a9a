"""Fixtures for the backend tests: a private redis-server for the session (flushed before each
test), tokens of every role, a TestClient app whose dispatcher records what it would queue,
and a real uvicorn server for the HTTP/SSE tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:       # `pytest` run without `python -m`: make tests.support importable
    sys.path.insert(0, str(ROOT))

from backend.app import create_app  # noqa: E402
from backend.settings import Settings  # noqa: E402
from backend.store import Store  # noqa: E402
from tests.support.apps import BOOTSTRAP_TOKEN  # noqa: E402
from tests.support.services import start_redis, start_uvicorn, stop_process  # noqa: E402

BOOTSTRAP = BOOTSTRAP_TOKEN


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, proc = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    stop_process(proc)


@pytest.fixture
def store(redis_url: str) -> Iterator[Store]:
    st = Store.from_url(redis_url)
    st.r.flushdb()
    yield st
    st.close()


@dataclass
class Recorder:
    """The dispatcher the tests give the app: records instead of queueing to Celery."""

    enqueued: list[tuple[str, list[str] | None]] = field(default_factory=list)
    fresh: list[tuple[str, list[str] | None]] = field(default_factory=list)   # fresh retries
    revoked: list[str] = field(default_factory=list)
    fail: bool = False

    def enqueue(self, sweep_id: str, run_ids: list[str] | None = None,
                fresh: bool = False) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.enqueued.append((sweep_id, run_ids))
        if fresh:
            self.fresh.append((sweep_id, run_ids))

    def revoke(self, task_id: str) -> None:
        self.revoked.append(task_id)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@dataclass
class Tokens:
    admin: str
    alice: str          # member
    bob: str            # member
    viewer: str
    ids: dict[str, str]

    @staticmethod
    def h(secret: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def tokens(store: Store) -> Tokens:
    ids, secrets = {}, {}
    for name, role in [("admin", "admin"), ("alice", "member"), ("bob", "member"),
                       ("viewer", "viewer")]:
        rec, secret = store.create_token(name, role)
        ids[name], secrets[name] = rec.id, secret
    return Tokens(**secrets, ids=ids)


@pytest.fixture
def settings(redis_url: str, tmp_path: Path) -> Settings:
    art = tmp_path / "artifacts"
    art.mkdir()
    return Settings(redis_url=redis_url, artifacts_dir=art, max_runs_per_sweep=50,
                    max_epochs_per_stage=100, sse_keepalive=1.0, frontend_dir=tmp_path / "fe")


@pytest.fixture
def client(settings: Settings, store: Store, recorder: Recorder) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    app = create_app(settings, enqueue=recorder.enqueue, revoke=recorder.revoke)
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="session")
def live(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real uvicorn server (no-op dispatcher) on the session Redis; its base URL."""
    art = tmp_path_factory.mktemp("live-artifacts")
    base, proc = start_uvicorn("tests.support.apps:app_without_workers", {
        "REDIS_URL": redis_url, "TSCNC_ARTIFACTS_DIR": str(art), "TSCNC_SSE_KEEPALIVE": "1",
        "TSCNC_BOOTSTRAP_TOKEN": BOOTSTRAP}, factory=True)
    yield base
    code = stop_process(proc)
    assert code in (0, -15), f"uvicorn exited with {code}"

