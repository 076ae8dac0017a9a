"""The API's CPU time per live event per SSE client, measured in lockstep (issue 16).

Starts a private redis-server and one API process (uvicorn, as ``bench/load.py`` does), opens
``--clients`` SSE streams of one running run, then appends ``--events`` events through the data
layer one at a time, each only once every client has received the one before. Each event is
thus fanned out alone, whatever the machine's load: the API's CPU time (user + system, from
/proc) over the events, divided by events × clients, is the cost of delivering one event to
one client, and does not depend on how busy the cores are (the wall-clock delays do, and are
reported only as a check).

``--compare DIR`` runs a second API from another checkout of this repository (e.g. the commit
before a change: ``git worktree add ../before HEAD~1``) on the same Redis and run, with as many
clients of its own, at the same time: both fan out the very same events under the very same
load, so the two figures compare side by side.

Usage::

    nice .venv/bin/python bench/sse_cpu.py --clients 500 --events 40
    nice .venv/bin/python bench/sse_cpu.py --clients 500 --events 40 --compare ../before
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WARMUP = 2          # events before the CPU clock starts (every stream past its history)
TOKEN = "bench-load-admin-token-0123456789abcdef"      # bench/load.py's


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn_api(root: Path, env: dict[str, str]) -> tuple[str, subprocess.Popen]:
    """One uvicorn process serving the app of the checkout at ``root`` (started before this
    script imports anything heavy, so that on a busy machine they all import at once)."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "backend.app:create_app", "--factory", "--host",
         "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
         "--timeout-graceful-shutdown", "2"],
        env={**os.environ, **env, "PYTHONPATH": str(root)}, cwd=str(root),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return f"http://127.0.0.1:{port}", proc


def cpu_seconds(pid: int) -> float:
    """CPU time so far of every thread of a process, in ns resolution (/proc/PID/task/*/schedstat;
    the clock ticks of /proc/PID/stat are 10 ms)."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


def wait_api(base: str, proc: subprocess.Popen, timeout: float) -> None:
    import httpx

    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        try:
            if httpx.get(f"{base}/api/v1/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the API at {base} did not start")


async def follow(host: str, port: int, rid: str, n: int, connected: list,
                 arrivals: dict[int, float], errors: list[str]) -> None:
    """bench/load.py's SSE client, connecting again when refused (a starved API's Redis calls
    may time out while hundreds of clients connect: not what this bench measures)."""
    from bench.load import sse_client

    for _ in range(30):
        refused: list[str] = []
        await sse_client(host, port, rid, n, connected, arrivals, refused)
        if not refused or not refused[0].startswith("HTTP") or arrivals:
            errors.extend(refused)
            return
        await asyncio.sleep(1.0)
    errors.extend(refused)


async def measure(apis: list[tuple[str, str, subprocess.Popen]], store: Any, rid: str,
                  clients: int, events: int, timeout: float) -> list[dict]:
    from bench.load import pct
    from tscnc.records import LogEvent, RunStatus

    total = events + WARMUP
    errors: list[str] = []
    per_api = []
    tasks = []
    for _, base, _ in apis:
        host, port = base.removeprefix("http://").split(":")
        connected: list[int] = []
        arrivals: list[dict[int, float]] = [{} for _ in range(clients)]
        per_api.append((connected, arrivals))
        for i in range(clients):
            tasks.append(asyncio.create_task(follow(host, int(port), rid, total, connected,
                                                    arrivals[i], errors)))
            if i % 50 == 49:
                await asyncio.sleep(0.05)
    end = time.monotonic() + timeout
    while sum(len(c) for c, _ in per_api) + len(errors) < clients * len(apis):
        if time.monotonic() > end:
            raise TimeoutError("clients did not connect")
        await asyncio.sleep(0.05)
    cpu0: list[float] = []
    for i in range(total):
        if i == WARMUP:
            cpu0 = [cpu_seconds(proc.pid) for _, _, proc in apis]
        await asyncio.to_thread(store.record_event, rid,
                                LogEvent(run=rid, message=f"load {i}", time=time.time()))
        while not all(i in a for _, arr in per_api for a in arr):     # lockstep
            if time.monotonic() > end + i * 10 or errors:
                raise TimeoutError(f"event {i} not delivered: {errors[:3]}")
            await asyncio.sleep(0.005)
    cpu = [cpu_seconds(proc.pid) - c for (_, _, proc), c in zip(apis, cpu0, strict=True)]
    store.set_status(rid, RunStatus.succeeded)                          # ends every stream
    await asyncio.wait(tasks, timeout=30)
    for t in tasks:
        t.cancel()
    out = []
    for (name, _, _), (_, arrivals), c in zip(apis, per_api, cpu, strict=True):
        delays = [d * 1000 for a in arrivals for i, d in a.items() if i >= WARMUP]
        out.append({"api": name, "clients": clients, "events": events,
                    "cpu_ms_per_event": c * 1000 / events,
                    "cpu_us_per_event_per_client": c * 1e6 / events / clients,
                    "delay_p50_ms": pct(delays, 50), "delay_p95_ms": pct(delays, 95),
                    "errors": len(errors)})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=500, help="SSE clients per API")
    ap.add_argument("--events", type=int, default=40, help="events measured (after 2 more)")
    ap.add_argument("--compare", type=Path, help="another checkout's API, side by side")
    ap.add_argument("--timeout", type=float, default=900.0,
                    help="seconds for the APIs to start and the clients to connect")
    args = ap.parse_args(argv)
    roots = [("this checkout", ROOT)]
    if args.compare is not None:
        roots.append((f"--compare {args.compare}", args.compare.resolve()))
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="tscnc-sse-cpu-") as tmp:
        redis_port = _free_port()
        env = {"REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "TSCNC_BOOTSTRAP_TOKEN": TOKEN,
               "TSCNC_ARTIFACTS_DIR": str(Path(tmp) / "artifacts"),
               "TSCNC_SSE_KEEPALIVE": "60", "TSCNC_REDIS_TIMEOUT": "30"}
        apis = [(name, *spawn_api(root, env)) for name, root in roots]
        redis_proc = None
        try:
            from backend.store import Store
            from tests.support.services import start_redis
            from tscnc.spec import Method, SweepSpec

            redis_url, redis_proc = start_redis(Path(tmp) / "redis", port=redis_port)
            for _, base, proc in apis:
                wait_api(base, proc, args.timeout)
            store = Store.from_url(redis_url)
            owner = store.create_token("bench", "admin", secret=TOKEN)[0].id
            sweep, _ = store.create_sweep(SweepSpec(name="sse-cpu", methods=[Method.hydra],
                                                    sparsities=[0.5]), owner, owner_name="bench")
            rid = sweep.run_ids[0]
            store.claim(rid, "bench-worker", "cpu")
            rows = asyncio.run(measure(apis, store, rid, args.clients, args.events,
                                       args.timeout))
            store.close()
        finally:
            from tests.support.services import stop_process

            for _, _, proc in apis:
                stop_process(proc)
            if redis_proc is not None:
                stop_process(redis_proc)
    print(f"load average {load} at the start; {os.cpu_count()} cores; one API process each; "
          "events fanned out one at a time (lockstep)\n")
    print("| API | SSE clients | events | server CPU ms/event | server CPU µs/event/client | "
          "delay p50 / p95 ms | errors |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['api']} | {r['clients']} | {r['events']} | {r['cpu_ms_per_event']:.1f} | "
              f"{r['cpu_us_per_event_per_client']:.1f} | {r['delay_p50_ms']:.1f} / "
              f"{r['delay_p95_ms']:.1f} | {r['errors']} |")
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
