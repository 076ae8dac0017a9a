"""Load on the job service's API: submitters, the runs list with 10,000 runs, and live event
fan-out to many dashboards (SSE clients).

Starts its own private redis-server and the real API (uvicorn, one process, with its real
dispatcher: accepted sweeps are queued to Celery in Redis; no worker consumes them), all on
127.0.0.1, and measures:

1. **submit**: ``--submitters`` concurrent clients POST small sweeps (5 runs each, a fresh
   Idempotency-Key each) for ``--submit-seconds``: sweeps accepted per second, latency, errors;
2. **list**: the store is filled to ``--runs`` runs (a mix of queued, running, succeeded and
   failed, with metrics; one run in 20 tagged and noted), then ``GET /api/v1/runs`` (first
   page of 50, newest first; also each filter — status, method, dataset, model, owner, tag,
   date, metric range, sweep —, every sort, free text of several kinds, and the next page;
   and ``GET /api/v1/sweeps`` with a few filters) is timed ``--list-requests`` times each, one
   request at a time: p50/p95/p99;
3. **events**: for each count in ``--clients``, that many SSE clients follow one running run's
   ``GET /api/v1/runs/{id}/events``; a separate "worker" process appends ``--events`` events
   through the data layer (``Store.record_event``, each stamped with the wall clock when it is
   made) every ``--event-interval`` s; each client notes when each arrives: p50/p95/p99/max of
   (arrival − stamp), and any event a client never got; meanwhile ``GET /api/v1/runs`` is
   timed every 20 ms from a process of its own ("list while open"; ``--no-list-while-open``
   leaves it out, so that the server's CPU time per event is the streams' alone: "server CPU
   µs/event/client" is the server's CPU time per event divided by the clients). The clients
   are asyncio protocols on uvloop in one process, stamping an event's arrival in the
   callback that delivers its last byte ("clients CPU ms/event": that process's CPU time).

``--workers N`` runs N API processes (uvicorn ``--workers``, as ``tscnc serve --workers``).
``--profile PATH`` samples the API processes with py-spy (if installed) during the events
round of ``--profile-clients`` clients, counting only samples that hold the GIL, and writes
the share of each part of the server (list request: store, views; SSE fan-out; HTTP; the
event loop) to PATH and the report.

Bounded: every phase has a count and a deadline, the whole run stops after ``--max-seconds``,
and every process it started is stopped at the end. Clients, server and Redis share this
machine's cores, so the figures include the clients' own cost. Prints a markdown report (and
``--json PATH`` writes the numbers). Never fails on time; exits 1 only if a request errored or
an event was lost.

Usage::

    .venv/bin/python bench/load.py                     # the full run (~2 min on 2 cores)
    .venv/bin/python bench/load.py --runs 300 --clients 1,5 --events 3 --submit-seconds 1
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.store import Store  # noqa: E402
from backend.store.retention import memory_usage  # noqa: E402
from bench import api_profile  # noqa: E402
from bench.store_fill import METHODS, bench_spec, populate  # noqa: E402
from tests.support.services import start_redis, start_uvicorn, stop_process  # noqa: E402
from tscnc.records import LogEvent, ProgressEvent, RunStatus, Stage  # noqa: E402
from tscnc.spec import Method, SweepSpec  # noqa: E402

TOKEN = "bench-load-admin-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SMALL_SWEEP = {"spec": {"name": "load", "methods": ["dense", "hydra", "tscnc"],
                        "sparsities": [0.5, 0.9], "training": {"pretrain_epochs": 2,
                                                               "prune_epochs": 1,
                                                               "finetune_epochs": 1}}}


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def check(self, what: str) -> None:
        if self.left() <= 0:
            raise TimeoutError(f"--max-seconds reached during {what}")


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of ``values``; nan when empty."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


def summary(ms: list[float]) -> dict[str, float]:
    return {"n": len(ms), "p50": pct(ms, 50), "p95": pct(ms, 95), "p99": pct(ms, 99),
            "max": max(ms) if ms else float("nan"),
            "mean": statistics.fmean(ms) if ms else float("nan")}


# ---- 1. submitters ---------------------------------------------------------------------------

async def submit_phase(base: str, submitters: int, seconds: float, max_sweeps: int) -> dict:
    lat: list[float] = []
    errors: list[str] = []
    accepted = 0
    stop_at = time.monotonic() + seconds

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal accepted
        while time.monotonic() < stop_at and accepted + len(errors) < max_sweeps:
            t0 = time.perf_counter()
            try:
                r = await client.post("/api/v1/sweeps", json=SMALL_SWEEP,
                                      headers={**AUTH, "Idempotency-Key": uuid.uuid4().hex})
            except httpx.HTTPError as e:
                errors.append(f"{type(e).__name__}: {e}")
                continue
            lat.append((time.perf_counter() - t0) * 1000)
            if r.status_code == 201:
                accepted += 1
            else:
                errors.append(f"{r.status_code}: {r.text[:200]}")

    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, timeout=30,
                                 limits=httpx.Limits(max_connections=submitters)) as client:
        await asyncio.gather(*(one(client) for _ in range(submitters)))
    elapsed = time.perf_counter() - t0
    return {"submitters": submitters, "seconds": elapsed, "accepted": accepted,
            "per_second": accepted / elapsed, "latency_ms": summary(lat), "errors": errors[:5],
            "error_count": len(errors)}


# ---- 2. the runs list ------------------------------------------------------------------------

def fill(store: Store, runs: int, owner: str, deadline: Deadline) -> tuple[float, list[str]]:
    """Store sweeps of up to 1,000 runs until ``runs`` runs exist in total (at least one sweep);
    a tenth of the new runs are left running, four tenths finish (three succeeded, one failed),
    all with metrics."""
    t0 = time.perf_counter()
    sweep_ids = []
    while (have := sum(store.status_counts().values())) < runs or not sweep_ids:
        deadline.check("filling the store")
        n = max(50, min(1000, runs - have))
        seeds = max(1, n // (len(METHODS) * 50))
        per = max(1, min(50, n // (len(METHODS) * seeds)))
        sweep, _ = store.create_sweep(bench_spec(f"load-{len(sweep_ids)}", per, seeds), owner,
                                      owner_name="bench")
        sweep_ids.append(sweep.id)
        populate(store, sweep.run_ids, annotate_every=20)
    return time.perf_counter() - t0, sweep_ids


# Every sort of the runs table (RunSort) and every filter of the list (issue 16).
SORTS = ("sparsity", "seed", "progress", "clean_accuracy", "robust_accuracy", "kappa_median",
         "sparsity_actual", "key", "method", "status")


def list_phase(base: str, sweep_id: str, requests: int, deadline: Deadline,
               owner: str = "", created_mid: float = 0.0) -> dict:
    variants: dict[str, dict[str, Any]] = {
        "newest 50": {"limit": 50},
        "status=succeeded": {"limit": 50, "status": "succeeded"},
        "method=tscnc": {"limit": 50, "method": "tscnc"},
        "dataset=digits": {"limit": 50, "dataset": "digits"},
        "model=mlp": {"limit": 50, "model": "mlp"},
        "owner": {"limit": 50, "owner": owner},
        "tag=bench": {"limit": 50, "tag": "bench"},
        "created_from (date)": {"limit": 50, "created_from": created_mid},
        "metric range robust_accuracy≥0.4": {"limit": 50, "metric": "robust_accuracy",
                                            "min": 0.4},
        "one sweep": {"limit": 50, "sweep": sweep_id},
        "status=succeeded + sort=kappa_median": {"limit": 50, "status": "succeeded",
                                                 "sort": "kappa_median"},
        "text q=note (a word)": {"limit": 50, "q": "note"},
        "text q=seed0 (a word of the keys)": {"limit": 50, "q": "seed0"},
        "text q=ote (inside a word)": {"limit": 50, "q": "ote"},
        "text q=40 (inside many words)": {"limit": 50, "q": "40"},
        "text q=s0.9 (two tokens, a word pair)": {"limit": 50, "q": "s0.9"},
        "text q=load-0 + status=succeeded": {"limit": 50, "q": "load-0", "status": "succeeded"},
        "text q=note + sort=robust_accuracy": {"limit": 50, "q": "note",
                                               "sort": "robust_accuracy"},
    }
    for srt in SORTS:
        variants[f"sort={srt}"] = {"limit": 50, "sort": srt, "order": "desc"}
    out: dict[str, Any] = {}
    errors = 0
    failed: set[str] = set()
    with httpx.Client(base_url=base, headers=AUTH, timeout=30) as c:
        first = c.get("/api/v1/runs", params={"limit": 50}).json()
        out["total"] = first["total"]
        variants["next page"] = {"limit": 50, "cursor": first["next"]}
        sweeps = {"sweeps newest 50": {"limit": 50}, "sweeps status=running":
                  {"limit": 50, "status": "running"}, "sweeps method=tscnc + dataset=digits":
                  {"limit": 50, "method": "tscnc", "dataset": "digits"},
                  "sweeps q=load": {"limit": 50, "q": "load"}}
        for name, params in [*variants.items(), *sweeps.items()]:
            path = "/api/v1/sweeps" if name.startswith("sweeps") else "/api/v1/runs"
            for _ in range(3):                                  # warm up
                c.get(path, params=params)
            ms = []
            for _ in range(requests):
                deadline.check("the list phase")
                t0 = time.perf_counter()
                r = c.get(path, params=params)
                ms.append((time.perf_counter() - t0) * 1000)
                if r.status_code != 200 or (not r.json()["items"] and "metric" not in params):
                    errors += 1                 # every variant matches runs of the filled sweep
                    failed.add(name)
            out[name] = summary(ms)
    out["error_count"] = errors
    out["failed"] = sorted(failed)
    return out


# ---- 3. live events to many SSE clients ------------------------------------------------------

def emit(redis_url: str, run_id: str, n: int, interval: float, start_at: float) -> None:
    """The "worker": append ``n`` stamped events to the run through the data layer."""
    store = Store.from_url(redis_url)
    time.sleep(max(0.0, start_at - time.time()))
    for i in range(n):
        store.record_event(run_id, LogEvent(run=run_id, message=f"load {i}", time=time.time()))
        time.sleep(interval)
    store.close()


# The stamp and number of a log event of the emitter ("load N") in an SSE data line (the
# event JSON has "time" before "message": tscnc.records.LogEvent's field order).
_LOAD = re.compile(rb'"time":([-+.0-9eE]+)[^\n]*?"message":"load ([0-9]+)"')
_END = b"\r\n0\r\n\r\n"                     # the last chunk of a chunked body


class _Follower(asyncio.Protocol):
    """One dashboard following the run's events, as an asyncio protocol speaking HTTP/1.1
    (chunked) on a plain socket, rather than httpx or stream readers: the load generator
    shares the cores with the server, and the arrival of each event is stamped in the
    callback that hands over its last byte, with a regular expression and no JSON decoding,
    so the clients' own cost per message stays small beside the server's."""

    def __init__(self, request: bytes, n: int, connected: list, arrivals: dict[int, float],
                 errors: list[str]) -> None:
        self.request, self.n = request, n
        self.connected, self.arrivals, self.errors = connected, arrivals, errors
        self.head: bytes | None = b""                 # None once the headers are read
        self.buf = b""
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport                    # type: ignore[assignment]
        transport.write(self.request)                 # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if self.head is not None:
            head = self.head + data
            if b"\r\n\r\n" not in head:
                self.head = head
                return
            self.head = None
            head, data = head.split(b"\r\n\r\n", 1)
            status = head.split(b"\r\n", 1)[0].split()
            if len(status) < 2 or status[1] != b"200":
                self._finish(f"HTTP {status[1:2]}")
                return
            self.connected.append(1)
        buf = self.buf + data
        cut = buf.rfind(b"\n\n")                       # messages end with a blank line
        if cut >= 0:
            for stamp, i in _LOAD.findall(buf, 0, cut):
                self.arrivals[int(i)] = now - float(stamp)
            buf = buf[cut + 2:]
        self.buf = buf
        if len(self.arrivals) >= self.n:
            self._finish(None)
        elif buf.endswith(_END):
            self._finish("stream ended early")

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(None if len(self.arrivals) >= self.n else
                     f"connection lost: {exc!r}" if exc else "stream ended early")

    def _finish(self, error: str | None) -> None:
        if self.done.done():
            return
        if error is not None:
            self.errors.append(error)
        self.done.set_result(None)


def time_lists(base: str, stop: Any, out: Any) -> None:
    """``GET /api/v1/runs`` (newest 50) timed one at a time, one every 20 ms, until ``stop`` is
    set; sends (milliseconds of each, errors) to ``out``. Run in a process of its own, so that
    it takes no time from the SSE clients' event loop (nor its GIL) while they stamp
    arrivals."""
    ms: list[float] = []
    errors = 0
    with httpx.Client(base_url=base, headers=AUTH, timeout=30) as c:
        out.send("ready")
        while not stop.is_set() and len(ms) < 2000:
            t = time.perf_counter()
            if c.get("/api/v1/runs", params={"limit": 50}).status_code != 200:
                errors += 1
            ms.append((time.perf_counter() - t) * 1000)
            time.sleep(0.02)
    out.send((ms, errors))


async def sse_client(host: str, port: int, run_id: str, n: int, connected: list,
                     arrivals: dict[int, float], errors: list[str]) -> None:
    """Follow ``GET /api/v1/runs/{run_id}/events`` until ``n`` emitted events have arrived
    (``arrivals[i]``: seconds from event i's stamp to its arrival) or the stream ends."""
    request = (f"GET /api/v1/runs/{run_id}/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
               f"Authorization: Bearer {TOKEN}\r\nAccept: text/event-stream\r\n\r\n").encode()
    follower = _Follower(request, n, connected, arrivals, errors)
    try:
        await asyncio.get_running_loop().create_connection(lambda: follower, host, port)
        await follower.done
    except Exception as e:  # noqa: BLE001 — counted as an error of the bench, not raised
        errors.append(f"{type(e).__name__}: {e}")
    finally:
        if follower.transport is not None:
            follower.transport.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its children (the API's workers)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat.parent.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def fanout(base: str, api_pid: int, redis_url: str, store: Store, owner: str,
                 clients: int, events: int, interval: float, deadline: Deadline,
                 profile: Path | None = None, list_while_open: bool = True) -> dict:
    host, port = base.removeprefix("http://").split(":")
    sweep, _ = store.create_sweep(SweepSpec(name=f"fanout-{clients}", methods=[Method.hydra],
                                            sparsities=[0.5]), owner, owner_name="bench")
    rid = sweep.run_ids[0]
    store.claim(rid, "bench-worker", "cpu")
    connected: list[int] = []
    errors: list[str] = []
    arrivals: list[dict[int, float]] = [{} for _ in range(clients)]
    t0 = time.perf_counter()
    tasks = []
    for i in range(clients):
        tasks.append(asyncio.create_task(sse_client(host, int(port), rid, events, connected,
                                                    arrivals[i], errors)))
        if i % 50 == 49:
            await asyncio.sleep(0.05)                      # let accepts keep up
    while len(connected) + len(errors) < clients and deadline.left() > 0 \
            and time.perf_counter() - t0 < 60:
        await asyncio.sleep(0.05)
    connect_s = time.perf_counter() - t0
    await asyncio.sleep(0.5)                               # all streams past their history
    cpu0 = (cpu_seconds(api_pid), time.process_time())
    ctx = multiprocessing.get_context("spawn")
    # GET /api/v1/runs (newest 50) timed one at a time while the streams are open and fed
    # (started first: its start-up is over before the first event).
    stop_listing, (lists_in, lists_out) = ctx.Event(), ctx.Pipe(duplex=False)
    lister = ctx.Process(target=time_lists, args=(base, stop_listing, lists_out))
    if list_while_open:
        lister.start()
        await asyncio.to_thread(lists_in.recv)             # "ready"
    worker = ctx.Process(target=emit, args=(redis_url, rid, events, interval, time.time() + 0.2))
    worker.start()
    spy = None if profile is None else api_profile.record(api_pid, profile,
                                                          int(events * interval) + 1)
    wait_until = time.perf_counter() + 0.2 + events * interval + 15
    readers = 0
    while any(len(a) < events for a in arrivals) and time.perf_counter() < wait_until \
            and deadline.left() > 0 and not all(t.done() for t in tasks):
        # Connections blocked in a read: the API's live stream readers (no worker runs here).
        readers = max(readers, int(store.r.info("clients")["blocked_clients"]))
        await asyncio.sleep(0.05)
    cpu = (cpu_seconds(api_pid) - cpu0[0], time.process_time() - cpu0[1])
    stop_listing.set()
    list_ms: list[float] = []
    if list_while_open:
        list_ms, failed = await asyncio.to_thread(lists_in.recv)
        errors.extend(["list request failed"] * failed)
        lister.join(10)
    prof = None
    if spy is not None:
        await asyncio.to_thread(spy.wait, 60)
        prof = api_profile.summary(profile) if profile is not None and profile.exists() else None
    store.set_status(rid, RunStatus.succeeded)             # ends every stream
    await asyncio.wait(tasks, timeout=10)
    for t in tasks:
        t.cancel()
    worker.join(10)
    delays = [d * 1000 for a in arrivals for d in a.values()]
    lost = sum(events - len(a) for a in arrivals)
    return {"clients": clients, "connected": len(connected), "connect_s": connect_s,
            "events": events, "delay_ms": summary(delays), "lost": lost,
            "list_ms_while_open": summary(list_ms),
            "redis_blocked_readers": readers,
            "server_cpu_ms_per_event": cpu[0] * 1000 / events,
            "server_cpu_us_per_event_per_client": cpu[0] * 1e6 / events / clients,
            "list_while_open": list_while_open,
            "clients_cpu_ms_per_event": cpu[1] * 1000 / events,
            "errors": errors[:5], "error_count": len(errors), "profile": prof}


def memory_phase(store: Store, sample: int = 200) -> dict[str, Any]:
    """MEMORY USAGE per finished run and per event, before and after the retention policy
    (``Store.compact_events``, keeping 10 log lines): ``sample`` running runs first get 100
    progress and 50 log events, as a training run writes, and then succeed."""
    ids = store.r.zrange(store.k.runs_by_status(RunStatus.running), 0, sample - 1)
    for rid in ids:
        for i in range(100):
            store.record_event(rid, ProgressEvent(run=rid, stage=Stage.pretrain, epoch=1,
                                                  batch=i, batches=100, progress=0.1))
            if i % 2 == 0:
                store.record_event(rid, LogEvent(run=rid, message=f"step {i} loss 0.123"))
        store.set_status(rid, RunStatus.succeeded)
    before = memory_usage(store, ids)
    store.compact_events(keep_logs=10)
    return {"before": before, "after compaction": memory_usage(store, ids),
            "runs": sum(store.status_counts().values()),
            "used_memory": int(store.r.info("memory")["used_memory"])}


# ---- the run ---------------------------------------------------------------------------------

def report(res: dict[str, Any]) -> str:
    f = "{:.1f}".format
    lines = [f"API: {res['args']['workers']} uvicorn process(es); Redis {res['redis']}; "
             f"{os.cpu_count()} CPU cores shared by server, Redis and the load clients; load "
             f"average {res['load_average']} at the start.", ""]
    s = res["submit"]
    lines += ["#### Submitting sweeps (5 runs each, queued to Celery in Redis)", "",
              "| submitters | sweeps accepted | per second | p50 ms | p95 ms | p99 ms | errors |",
              "|---|---|---|---|---|---|---|",
              f"| {s['submitters']} | {s['accepted']} in {f(s['seconds'])} s | "
              f"{f(s['per_second'])} | {f(s['latency_ms']['p50'])} | "
              f"{f(s['latency_ms']['p95'])} | {f(s['latency_ms']['p99'])} | "
              f"{s['error_count']} |", ""]
    li = res["list"]
    lines += [f"#### GET /api/v1/runs, {li['total']:,} runs stored (one request at a time)", "",
              "| request | n | p50 ms | p95 ms | p99 ms | max ms |", "|---|---|---|---|---|---|"]
    for name, v in li.items():
        if isinstance(v, dict):
            lines.append(f"| {name} | {v['n']} | {f(v['p50'])} | {f(v['p95'])} | "
                         f"{f(v['p99'])} | {f(v['max'])} |")
    lines += ["", f"errors: {li['error_count']}"
              + (f" ({', '.join(li['failed'])})" if li["failed"] else ""), "",
              "#### Event delay: `Store.record_event` (stamped) → arrival at each SSE client",
              "", "| SSE clients | connected (s) | events × clients | p50 ms | p95 ms | p99 ms | "
              "max ms | lost | errors | Redis readers | server CPU ms/event | "
              "server CPU µs/event/client | clients CPU ms/event | "
              "list p95 / max ms while open |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in res["events"]:
        d = e["delay_ms"]
        lines.append(f"| {e['clients']} | {e['connected']} ({f(e['connect_s'])}) | "
                     f"{e['events']} × {e['clients']} | {f(d['p50'])} | {f(d['p95'])} | "
                     f"{f(d['p99'])} | {f(d['max'])} | {e['lost']} | {e['error_count']} | "
                     f"{e['redis_blocked_readers']} | {f(e['server_cpu_ms_per_event'])} | "
                     f"{f(e['server_cpu_us_per_event_per_client'])} | "
                     f"{f(e['clients_cpu_ms_per_event'])} | "
                     + (f"{f(e['list_ms_while_open']['p95'])} / "
                        f"{f(e['list_ms_while_open']['max'])} |" if e["list_while_open"]
                        else "not timed |"))
    if "memory" in res:
        m = res["memory"]
        lines += ["", "#### Redis memory (MEMORY USAGE of a run's hash, stream, epochs set and "
                  "result; sampled finished runs)", "",
                  "| | bytes per run | events per run | bytes per event |", "|---|---|---|---|"]
        for name in ("before", "after compaction"):
            v = m[name]
            lines.append(f"| {name} | {v['bytes_per_run']:.0f} | {v['events_per_run']:.1f} | "
                         f"{v['bytes_per_event']:.0f} |")
        lines.append(f"\nused_memory with {m['runs']:,} runs: {m['used_memory'] / 2**20:.1f} MiB")
    for e in res["events"]:
        if e.get("profile"):
            p = e["profile"]
            lines += ["", f"#### Where the API's time goes, {e['clients']} SSE clients (py-spy, "
                      f"samples holding the GIL: {p['samples']:.0f})", "",
                      "| part | % of samples |", "|---|---|"]
            lines += [f"| {k} | {v:.1f} |" for k, v in p.items() if k != "samples"]
    return "\n".join(lines)


def start_api(env: dict[str, str], workers: int) -> tuple[str, Any]:
    """The API on a free loopback port: one uvicorn process, or ``workers`` of them sharing
    the port (uvicorn ``--workers``, as ``tscnc serve --workers``)."""
    if workers <= 1:
        return start_uvicorn("backend.app:create_app", env, factory=True)
    import subprocess

    from backend.launcher import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "backend.app:create_app", "--factory", "--host",
         "127.0.0.1", "--port", str(port), "--workers", str(workers), "--log-level", "warning",
         "--no-access-log", "--timeout-graceful-shutdown", "2"],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, cwd=str(ROOT),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 60
    while time.monotonic() < end:
        try:
            if httpx.get(f"{base}/api/v1/health", timeout=1).status_code == 200:
                return base, proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_process(proc)
    raise RuntimeError(f"{workers} API processes did not start")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10_000, help="runs stored for the list phase")
    ap.add_argument("--list-requests", type=int, default=300, help="timed requests per variant")
    ap.add_argument("--clients", default="1,50,200,500", help="SSE client counts")
    ap.add_argument("--events", type=int, default=40, help="events per SSE round")
    ap.add_argument("--event-interval", type=float, default=0.1, help="seconds between events")
    ap.add_argument("--submitters", type=int, default=8)
    ap.add_argument("--submit-seconds", type=float, default=10.0)
    ap.add_argument("--max-sweeps", type=int, default=5000, help="most sweeps submitted")
    ap.add_argument("--max-seconds", type=float, default=600.0, help="stop after this long")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--workers", type=int, default=1, help="API processes")
    ap.add_argument("--profile", type=Path, help="py-spy raw samples of the API go here")
    ap.add_argument("--profile-clients", type=int, default=300,
                    help="the SSE round the profile is taken in")
    ap.add_argument("--no-list-while-open", dest="list_while_open", action="store_false",
                    help="no GET /api/v1/runs while the streams are open (the server's CPU "
                         "time per event is then the streams' alone)")
    args = ap.parse_args(argv)
    counts = [int(x) for x in args.clients.split(",") if x.strip()]
    if not all(0 < c <= 2000 for c in counts) or not 0 < args.runs <= 100_000:
        ap.error("--clients each in 1..2000 and --runs in 1..100000")
    deadline = Deadline(args.max_seconds)
    res: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()},
                           "redis": "without persistence",
                           "load_average": " ".join(f"{x:.1f}" for x in os.getloadavg())}
    with tempfile.TemporaryDirectory(prefix="tscnc-load-") as tmp:
        redis_url, redis_proc = start_redis(Path(tmp) / "redis")
        api_proc = None
        try:
            base, api_proc = start_api({
                "REDIS_URL": redis_url, "TSCNC_BOOTSTRAP_TOKEN": TOKEN,
                "TSCNC_ARTIFACTS_DIR": str(Path(tmp) / "artifacts"),
                "TSCNC_SSE_KEEPALIVE": "5"}, args.workers)
            store = Store.from_url(redis_url)
            owner = store.create_token("bench", "admin", secret=TOKEN)[0].id

            print(f"submitting for {args.submit_seconds} s ...", file=sys.stderr)
            res["submit"] = asyncio.run(submit_phase(base, args.submitters,
                                                     min(args.submit_seconds, deadline.left()),
                                                     args.max_sweeps))
            print(f"filling the store to {args.runs} runs ...", file=sys.stderr)
            res["fill_s"], sweeps = fill(store, args.runs, owner, deadline)
            sweep_for_list = sweeps[0] if sweeps else store.list_sweeps(limit=1)[0][0].id
            res["memory"] = memory_phase(store)
            print("timing GET /api/v1/runs ...", file=sys.stderr)
            mid = store.list_runs(limit=1, desc=True)[0][0].created if sweeps else 0.0
            res["list"] = list_phase(base, sweep_for_list, args.list_requests, deadline, owner,
                                     mid - 1.0)
            # The clients' process has read 100,000 runs into the store's cache: leave them
            # out of its garbage collections, whose walk would stall every client at once.
            gc.collect()
            gc.freeze()
            res["events"] = []
            for n in counts:
                print(f"{n} SSE clients ...", file=sys.stderr)
                res["events"].append(uvloop.run(fanout(
                    base, api_proc.pid, redis_url, store, owner, n, args.events,
                    args.event_interval, deadline,
                    args.profile if n == args.profile_clients else None,
                    args.list_while_open)))
            store.close()
        finally:
            if api_proc is not None:
                stop_process(api_proc)
            stop_process(redis_proc)
    print(report(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    failures = (res["submit"]["error_count"] + res["list"]["error_count"]
                + sum(e["lost"] + e["error_count"] for e in res["events"]))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
