"""Fixtures for the browser tests: the real stack (a private redis-server, the API under
uvicorn, one Celery worker) and Debian's Chromium driven by Playwright.

Chromium comes from ``apt-get install -y chromium`` (``playwright install`` cannot download
here; `make install` does it); without it the browser tests fail with that hint.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `pytest` run without `python -m`: make tests.support importable
    sys.path.insert(0, str(ROOT))

from tests.support.services import (  # noqa: E402
    process_output,
    remove_log,
    start_redis,
    start_uvicorn,
    stop_process,
)
from tests.support.stack import start_worker  # noqa: E402
from tests.support.wait import wait_until  # noqa: E402

CHROMIUM = os.environ.get("TSCNC_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps trying to reach the internet.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "frontend-tests-admin-token-0123456789"
FRONTEND = ROOT / "frontend"


@dataclass
class Stack:
    base: str
    redis_url: str
    token: str
    artifacts: Path
    worker: subprocess.Popen
    api_proc: subprocess.Popen        # uvicorn, with its access log on (process_output reads it)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, f"{self.base}/api/v1{path}", headers=self.headers,
                             timeout=10, **kw)

    def login_url(self, route: str = "#/sweeps") -> str:
        return f"{self.base}/?token={self.token}{route}"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("stack")
    artifacts = tmp / "artifacts"
    artifacts.mkdir()
    redis_url, redis_proc = start_redis(tmp / "redis")
    base, api_proc = start_uvicorn("backend.app:create_app", {
        "REDIS_URL": redis_url, "TSCNC_ARTIFACTS_DIR": str(artifacts),
        "TSCNC_BOOTSTRAP_TOKEN": TOKEN, "TSCNC_SSE_KEEPALIVE": "1"}, factory=True,
        access_log=True)
    worker = start_worker(redis_url, artifacts, "test-frontend")
    s = Stack(base=base, redis_url=redis_url, token=TOKEN, artifacts=artifacts, worker=worker,
              api_proc=api_proc)
    try:
        def worker_alive() -> None:
            assert worker.poll() is None, f"the worker died:\n{process_output(worker)}"
        wait_until(lambda: s.api("GET", "/queue").json()["workers"], 90, "the worker's heartbeat",
                   interval=0.2, check=worker_alive,
                   show=lambda ws: f"{ws}; worker log:\n{process_output(worker)[-3000:]}")
        yield s
        assert worker.poll() is None, f"the worker died during the tests:\n{process_output(worker)}"
    finally:
        stop_process(worker, timeout=15)
        stop_process(api_proc)
        stop_process(redis_proc)
        for p in (worker, api_proc, redis_proc):
            remove_log(p)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: run `make install` (as root it installs it) "
                    f"or apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1500, "height": 1000}, accept_downloads=True)
    ctx.set_default_timeout(20_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: Any) -> Iterator[Any]:
    """A page that fails the test on any uncaught JavaScript error."""
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    assert not errors, f"JavaScript errors: {errors}"


@pytest.fixture(scope="session")
def static_frontend() -> Iterator[str]:
    """The frontend/ files on a plain static server: for unit tests of the pure modules."""
    handler = functools.partial(_QuietHandler, directory=str(FRONTEND))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript"}

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def js(page: Any, static_frontend: str) -> Any:
    """Evaluate `body` (an async function body with the pure modules in scope: charts, cs
    (charts_summary), specform, exp (export), router, filters) in a page; `arg` is passed in."""
    page.goto(static_frontend + "/js/")

    def run(body: str, arg: Any = None) -> Any:
        return page.evaluate(f"""async (arg) => {{
            const charts = await import('/js/charts.js');
            const cs = await import('/js/charts_summary.js');
            const specform = await import('/js/specform.js');
            const exp = await import('/js/export.js');
            const router = await import('/js/router.js');
            const filters = await import('/js/filters.js');
            {body}
        }}""", arg)
    return run
