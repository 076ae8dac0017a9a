"""Issue 16.2 — a client that stops reading its event stream cannot slow the others: against a
real uvicorn and redis-server, one SSE client stops reading while thousands of events are
appended; another client of the same run receives every event meanwhile. When the stalled
client reads again it finds its stream ended with the reconnect hint (``backend.sse.DROPPED``),
and resuming with Last-Event-ID (as the browser does) it misses nothing."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx

from backend import sse
from backend.store import Store
from tests.support.apps import BOOTSTRAP_TOKEN
from tests.support.services import start_redis, start_uvicorn, stop_process
from tests.support.wait import wait_until
from tscnc.records import LogEvent, RunStatus
from tscnc.spec import Method, SweepSpec

EVENTS = 2500
PAD = "x" * 4000          # ~10 MB in all: more than the kernel and uvicorn buffers hold (~4 MB)


def _ids(text: str) -> list[str]:
    return [line[4:].strip() for line in text.splitlines() if line.startswith("id: ")]


def _fast_reader(base: str, rid: str, out: list[str], done: threading.Event) -> None:
    """Read the run's stream as the browser does (frontend/js/sse.js): when the server drops
    this client too (its queue filled in a burst), reconnect with Last-Event-ID and go on."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        headers = {"Authorization": f"Bearer {BOOTSTRAP_TOKEN}", "Accept": "text/event-stream"}
        if out:
            headers["Last-Event-ID"] = out[-1]
        with httpx.stream("GET", f"{base}/api/v1/runs/{rid}/events", headers=headers,
                          timeout=60) as r:
            for line in r.iter_lines():
                if line.startswith("id: "):
                    out.append(line[4:])
                if f"last {EVENTS - 1}" in line:
                    done.set()
                    return


def test_stalled_client_is_dropped_and_resumes_without_loss(tmp_path: Path) -> None:
    url, redis_proc = start_redis(tmp_path)
    store = Store.from_url(url)
    base, api = start_uvicorn("tests.support.apps:app_without_workers", factory=True, env={
        "REDIS_URL": url, "TSCNC_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN,
        "TSCNC_ARTIFACTS_DIR": str(tmp_path), "TSCNC_SSE_CLIENT_BUFFER": "4",
        "TSCNC_SSE_KEEPALIVE": "1"})
    slow = None
    try:
        sweep, _ = store.create_sweep(SweepSpec(methods=[Method.dense]), "owner")
        rid = sweep.run_ids[0]
        store.set_status(rid, RunStatus.running)
        host, port = base.removeprefix("http://").split(":")
        slow = socket.create_connection((host, int(port)))
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        slow.settimeout(30)
        slow.sendall((f"GET /api/v1/runs/{rid}/events HTTP/1.1\r\nHost: {host}\r\n"
                      f"Authorization: Bearer {BOOTSTRAP_TOKEN}\r\n"
                      "Accept: text/event-stream\r\n\r\n").encode())
        first = slow.recv(4096).decode()
        assert first.startswith("HTTP/1.1 200"), first
        fast: list[str] = []
        fast_done = threading.Event()
        t = threading.Thread(target=_fast_reader, args=(base, rid, fast, fast_done), daemon=True)
        t.start()
        before = len(store.events(rid, limit=100))   # the run's status events so far
        wait_until(lambda: len(fast), 30, f"the reading client to read those {before}",
                   done=lambda n: n >= before)
        for i in range(EVENTS):                    # the slow client reads nothing meanwhile
            msg = f"last {i}" if i == EVENTS - 1 else f"e {i} {PAD}"
            store.record_event(rid, LogEvent(run=rid, message=msg))
        assert fast_done.wait(120), f"the reading client got {len(fast)} of {EVENTS + 2}"
        every = [e.id for e in store.events(rid, limit=10_000)]
        assert fast == every                       # all of them while the other one stalled

        # The stalled client reads again: a part of the stream, then the drop hint and the end.
        slow.settimeout(30)
        raw = first
        while sse.DROPPED not in raw:
            chunk = slow.recv(1 << 16)
            assert chunk, "connection closed without the reconnect hint"
            raw += chunk.decode(errors="replace")
        got = _ids(raw)
        assert got == every[:len(got)] and len(got) < len(every)
        slow.close()
        slow = None

        # Resuming after its last id (Last-Event-ID) it receives the rest, each once.
        rest: list[str] = []
        headers = {"Authorization": f"Bearer {BOOTSTRAP_TOKEN}", "Accept": "text/event-stream",
                   "Last-Event-ID": got[-1]}
        store.set_status(rid, RunStatus.succeeded)   # so that the stream ends after the rest
        every = [e.id for e in store.events(rid, limit=10_000)]
        with httpx.stream("GET", f"{base}/api/v1/runs/{rid}/events", headers=headers,
                          timeout=60) as r:
            for line in r.iter_lines():
                if line.startswith("id: "):
                    rest.append(line[4:])
                    if rest[-1] == every[-1]:
                        break
        assert got + rest == every
    finally:
        if slow is not None:
            slow.close()
        stop_process(api)
        store.close()
        stop_process(redis_proc)
