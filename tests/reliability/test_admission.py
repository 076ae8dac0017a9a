"""Issue 14.6 — resource admission: a sweep no worker could hold is refused at submit with its
estimate (tscnc.footprint; the estimate itself is tested against torch in
tests/tscnc/test_footprint.py).

A real uvicorn server on a private redis-server and a real Celery worker process, which reports
the memory of its device (here: the machine's RAM, or its cgroup's limit) in its heartbeat. The
API's own cap (TSCNC_MAX_RUN_MEMORY_GIB) is set far above here, so the refusals come from the
worker's report; test_bad_input.py covers the cap with no worker registered.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.reliability.helpers import ADMIN, live_api
from tests.support.services import process_output, stop_process
from tests.support.stack import start_worker
from tests.support.wait import wait_until
from tscnc.footprint import estimate
from tscnc.spec import resolve

CNC_4096 = {"model": {"name": "cnn", "width": 4096}, "training": {"batch_size": 4096,
                                                                   "device": "cpu"}}
WRN_100_20 = {"dataset": {"name": "cifar10"}, "model": {"name": "wrn", "depth": 100, "widen": 20},
              "training": {"batch_size": 4096, "device": "cpu"}}


def machine_memory() -> int:
    """RAM as the kernel reports it, capped by the cgroup v2 limit when there is one."""
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = Path("/sys/fs/cgroup/memory.max")
    if limit.exists() and limit.read_text().strip().isdigit():
        ram = min(ram, int(limit.read_text()))
    return ram


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("admission")
    with live_api(tmp, {"TSCNC_MAX_RUN_MEMORY_GIB": "100000"}) as (base, redis_url):
        worker = start_worker(redis_url, tmp / "artifacts", "admit-0",
                              {"TSCNC_QUEUE": "cpu", "TSCNC_HEARTBEAT_INTERVAL": "0.5"})
        try:
            def alive() -> None:
                assert worker.poll() is None, process_output(worker)
            wait_until(lambda: httpx.get(f"{base}/api/v1/queue", headers=ADMIN).json()["workers"],
                       90, "the worker's heartbeat", interval=0.2, check=alive,
                       show=lambda ws: f"{ws}\n{process_output(worker)}")
            yield base
        finally:
            stop_process(worker, timeout=15)


def submit(api: str, body: dict) -> httpx.Response:
    return httpx.post(f"{api}/api/v1/sweeps", json=body, headers=ADMIN, timeout=30)


def test_the_worker_reports_its_memory(api: str) -> None:
    workers = httpx.get(f"{api}/api/v1/queue", headers=ADMIN).json()["workers"]
    assert [w["memory_bytes"] for w in workers] == [machine_memory()]


@pytest.mark.parametrize("spec", [CNC_4096, WRN_100_20], ids=["cnn-4096-x-4096", "wrn-100-20"])
def test_a_sweep_no_worker_could_hold_is_refused_with_its_estimate(api: str, spec: dict) -> None:
    need = estimate(resolve("digits-quick", spec))
    assert need.memory_bytes > machine_memory()  # the premise: more than this machine has
    r = submit(api, {"preset": "digits-quick", "spec": spec})
    assert r.status_code == 422, r.text
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "spec"] and err["type"] == "too_much_memory", err
    assert need.describe() in err["msg"] and "cpu worker" in err["msg"], err
    assert f"{machine_memory() / 2**30:,.1f} GiB" in err["msg"], err


def test_digits_quick_is_accepted(api: str) -> None:
    r = submit(api, {"preset": "digits-quick"})
    assert r.status_code == 201, r.text
