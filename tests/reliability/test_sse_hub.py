"""Issue 6.6 — the shared stream reader behind the SSE endpoints (backend.sse.StreamHub) gives
every client every entry exactly once and in order: from its Last-Event-ID through the handover
from history to live, and when the client is too slow for its queue (it is dropped with the
reconnect hint and, resuming from its last id as the browser does, misses nothing). One Redis reader serves all clients of a stream and stops with the last.

The response the endpoints return (backend.sse.EventStream, a plain ASGI app) runs here
in-process against a real redis-server, each client a pair of ASGI ``receive``/``send``
callables, with events appended through the data layer while clients read. A slow client's
``send`` sleeps, as a full socket makes the server's ``send`` wait: the hub's write to it goes on
in a task of its own and the batches meanwhile are sent coalesced by the client's task.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
from pathlib import Path
from typing import Any

from backend import sse
from backend.store import AsyncStore, Store
from tests.support.apps import BOOTSTRAP_TOKEN
from tests.support.services import start_redis, start_uvicorn, stop_process
from tests.support.wait import wait_until, wait_until_async
from tscnc.records import LogEvent, RunStatus
from tscnc.spec import Method, SweepSpec

EVENTS = 300


LAST = f'"message":"new {EVENTS - 1}"'


def _chunk_ids(chunk: str) -> list[str]:
    return [line[4:] for line in chunk.split("\n") if line.startswith("id: ")]


async def _read(stream: sse.EventStream, ids: list[str], delay: float = 0.0,
                drops: list | None = None) -> None:
    """Serves ``stream`` to one client over ASGI and appends to ``ids`` the ids of the entries
    it receives up to the last event written, then disconnects (sleeping ``delay`` in each
    ``send`` of entries, for a slow client). A stream that ends with the drop hint before the
    last event is appended to ``drops``."""
    gone = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] != "http.response.body" or gone.is_set():
            return
        chunk = message["body"].decode()
        ids.extend(_chunk_ids(chunk))
        if LAST in chunk:
            gone.set()                                # the client leaves
        elif chunk == sse.DROPPED and drops is not None:
            drops.append(ids[-1] if ids else None)
        elif delay and "id: " in chunk:
            await asyncio.sleep(delay)                # the point: a client slower than the writer

    await asyncio.wait_for(stream({"type": "http"}, receive, send), 60)


async def _read_resuming(client: Any, after: str, delay: float, drops: list,
                         ids: list[str]) -> list[str]:
    """A client that, like the browser, reconnects with its last id when its stream is cut;
    the ids it receives are appended to ``ids`` as they come."""
    while True:
        n = len(drops)
        await _read(client(ids[-1] if ids else after), ids, delay, drops)
        if len(drops) == n:
            return ids


def _running_run(store: Store) -> str:
    """The id of a new one-run sweep's run, set running (its events are live)."""
    sweep, _ = store.create_sweep(SweepSpec(methods=[Method.dense]), "owner")
    rid = sweep.run_ids[0]
    store.set_status(rid, RunStatus.running)
    return rid


def test_every_client_gets_every_entry_once_in_order(tmp_path: Path, monkeypatch):
    drops: list = []
    url, proc = start_redis(tmp_path)
    store = Store.from_url(url)
    try:
        rid = _running_run(store)
        for i in range(10):                                   # history before anyone listens
            store.record_event(rid, LogEvent(run=rid, message=f"old {i}"))
        history = [e.id for e in store.events(rid, limit=100)]

        async def main() -> dict[str, Any]:
            astore = AsyncStore.from_url(url, timeout=5)
            hub = sse.StreamHub(astore, block_ms=200)
            hub.QUEUE_BATCHES = 2                             # make a slow client overflow
            stream = astore.run_stream(rid)

            async def finished() -> bool:
                return False

            def client(after: str) -> sse.EventStream:
                return sse.EventStream(astore, stream, after, keepalive=0.5, finished=finished,
                                       hub=hub)

            written = [0]

            async def write() -> None:
                for i in range(EVENTS):
                    await asyncio.to_thread(store.record_event, rid,
                                            LogEvent(run=rid, message=f"new {i}"))
                    written[0] += 1
                    if i % 20 == 0:
                        await asyncio.sleep(0.01)     # the point: events arrive over time

            # Every client reconnects from its last id when dropped, as the browser does (with
            # a queue of 2 batches any of them may overflow on a busy machine).
            received: list[list[str]] = [[] for _ in range(22)]
            clients = [asyncio.create_task(_read_resuming(client, "0-0", 0.0, [], received[i]))
                       for i in range(20)]
            slow = asyncio.create_task(_read_resuming(client, "0-0", 0.002, drops, received[20]))
            late = asyncio.create_task(_read_resuming(client, history[4], 0.0, [], received[21]))
            # Each client has read history, so it is subscribed: then count the Redis readers.
            await wait_until_async(lambda: [len(ids) for ids in received], 30,
                                   "every client to read the history", done=all)
            readers_while_live = hub.readers
            writer = asyncio.create_task(write())
            await wait_until_async(lambda: written[0], 30, "the writer to be under way",
                                   done=lambda n: n >= 20)  # a client joining mid-stream
            joined_after = (await asyncio.to_thread(store.events, rid, None, 10_000))[-1].id
            joined = asyncio.create_task(_read_resuming(client, joined_after, 0.0, [], []))
            await writer
            got = await asyncio.wait_for(asyncio.gather(*clients, slow, late, joined), 60)
            await wait_until_async(lambda: hub.readers, 5, "the Redis reader to stop",
                                   done=lambda n: n == 0)
            out = {"got": got, "readers_while_live": readers_while_live,
                   "readers_after": hub.readers, "joined_after": joined_after}
            await hub.close()
            await astore.close()
            return out

        # A fresh thread has no event loop: Playwright's sync API (browser tests earlier in the
        # same session) keeps one running in the main thread, where asyncio.run would refuse.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            out = pool.submit(asyncio.run, main()).result()
        ids = [e.id for e in store.events(rid, limit=10_000)]
        assert len(ids) == len(history) + EVENTS
        *everyone, slow, late, joined = out["got"]
        for got in everyone:
            assert got == ids
        assert slow == ids and drops, "the slow client was never dropped"
        assert late == ids[5:]
        start = ids.index(out["joined_after"]) + 1
        assert start < len(ids) - 50 and joined == ids[start:]
        assert out["readers_while_live"] == 1                 # 23 clients, one Redis reader
        assert out["readers_after"] == 0                      # stopped with the last client
    finally:
        store.close()
        stop_process(proc)


def test_events_that_come_while_a_write_waits_go_out_in_one_write_in_order(tmp_path: Path):
    """While a write to a client waits (its socket is full), the batches that come meanwhile
    are left with it and then sent together: one write holding every entry, each once, in
    order, with its id."""
    url, proc = start_redis(tmp_path)
    store = Store.from_url(url)
    try:
        rid = _running_run(store)
        after = store.events(rid, limit=100)[-1].id

        async def main() -> tuple[list[list[str]], int]:
            astore = AsyncStore.from_url(url, timeout=5)
            hub = sse.StreamHub(astore, block_ms=200)
            stream = astore.run_stream(rid)
            gate, gone = asyncio.Event(), asyncio.Event()
            writes: list[list[str]] = []

            async def receive() -> dict[str, Any]:
                await gone.wait()
                return {"type": "http.disconnect"}

            async def send(message: dict[str, Any]) -> None:
                ids = _chunk_ids(message.get("body", b"").decode())
                if ids:
                    writes.append(ids)
                    await gate.wait()                 # the socket is full until the gate opens

            async def finished() -> bool:
                return False

            response = sse.EventStream(astore, stream, after, keepalive=5, finished=finished,
                                       hub=hub)
            served = asyncio.create_task(response({"type": "http"}, receive, send))
            await wait_until_async(lambda: hub.readers, 10, "the client to subscribe")
            (client,) = hub._subs[stream]
            await wait_until_async(lambda: client.live, 10, "the client to wait for events")
            await asyncio.to_thread(store.record_event, rid, LogEvent(run=rid, message="first"))
            await wait_until_async(lambda: client.writing, 10, "the hub's write to wait")
            for i in range(5):                        # one batch each: the hub reads each alone
                await asyncio.to_thread(store.record_event, rid,
                                        LogEvent(run=rid, message=f"later {i}"))
                await wait_until_async(lambda: len(client.pending), 10,
                                       f"batch {i + 1} to be left with the client",
                                       done=lambda n, i=i: n == i + 1)
            left = len(client.pending)
            gate.set()
            await wait_until_async(lambda: sum(map(len, writes)), 10, "every entry to go out",
                                   done=lambda n: n == 6)
            gone.set()
            await asyncio.wait_for(served, 10)
            await hub.close()
            await astore.close()
            return writes, left

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            writes, left = pool.submit(asyncio.run, main()).result()
        ids = [e.id for e in store.events(rid, limit=100)]
        assert left == 5                                      # five batches waited
        assert writes == [ids[-6:-5], ids[-5:]]               # the first, then one write of five
    finally:
        store.close()
        stop_process(proc)


def test_a_client_that_leaves_is_noticed_at_once(tmp_path: Path):
    """A client that closes its connection while its run is quiet (no event, no keep-alive due
    for a minute) is noticed: its stream ends and, as it was the run's last client, the shared
    Redis reader stops."""
    url, redis_proc = start_redis(tmp_path)
    store = Store.from_url(url)
    base, api = start_uvicorn("tests.support.apps:app_without_workers", factory=True, env={
        "REDIS_URL": url, "TSCNC_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN,
        "TSCNC_ARTIFACTS_DIR": str(tmp_path), "TSCNC_SSE_KEEPALIVE": "60"})
    sock = None
    try:
        rid = _running_run(store)
        host, port = base.removeprefix("http://").split(":")
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.sendall((f"GET /api/v1/runs/{rid}/events HTTP/1.1\r\nHost: {host}\r\n"
                      f"Authorization: Bearer {BOOTSTRAP_TOKEN}\r\n"
                      "Accept: text/event-stream\r\n\r\n").encode())
        raw = b""
        while raw.count(b"event: status") < 2:        # the history: queued, running
            chunk = sock.recv(4096)
            assert chunk, raw
            raw += chunk

        def blocked() -> int:
            return int(store.r.info("clients")["blocked_clients"])

        wait_until(blocked, 10, "the stream's Redis reader", done=lambda n: n == 1)
        sock.close()
        sock = None
        wait_until(blocked, 10, "the Redis reader to stop after the client left",
                   done=lambda n: n == 0)
    finally:
        if sock is not None:
            sock.close()
        stop_process(api)
        store.close()
        stop_process(redis_proc)


def test_a_quiet_stream_costs_one_look_per_keepalive_period_not_one_per_client(tmp_path: Path):
    """While a run is quiet, each keep-alive period the hub asks Redis once whether the run has
    ended, for all its clients: 30 viewers get keep-alives at the cost of a read or two per
    period (one look per client per period was a burst of thousands of Redis calls with 1,000
    viewers, which delayed the next events by most of a second). When the run is deleted
    (no terminal status event follows), every stream still ends after the next silent
    period."""
    url, redis_proc = start_redis(tmp_path)
    store = Store.from_url(url)
    base, api = start_uvicorn("tests.support.apps:app_without_workers", factory=True, env={
        "REDIS_URL": url, "TSCNC_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN,
        "TSCNC_ARTIFACTS_DIR": str(tmp_path), "TSCNC_SSE_KEEPALIVE": "0.3"})
    socks: list[socket.socket] = []
    try:
        sweep, _ = store.create_sweep(SweepSpec(methods=[Method.dense]), "owner")
        rid = sweep.run_ids[0]
        store.set_status(rid, RunStatus.running)
        host, port = base.removeprefix("http://").split(":")
        raw: list[bytes] = []
        for _ in range(30):
            sock = socket.create_connection((host, int(port)), timeout=10)
            sock.sendall((f"GET /api/v1/runs/{rid}/events HTTP/1.1\r\nHost: {host}\r\n"
                          f"Authorization: Bearer {BOOTSTRAP_TOKEN}\r\n"
                          "Accept: text/event-stream\r\n\r\n").encode())
            socks.append(sock)
            raw.append(b"")

        def read_until(i: int, done: Any) -> None:
            while not done(raw[i]):
                chunk = socks[i].recv(65536)
                assert chunk, raw[i]
                raw[i] += chunk

        for i in range(30):                           # the history: queued, running
            read_until(i, lambda b: b.count(b"event: status") == 2)
        store.r.config_resetstat()
        seen = [b.count(b": keep-alive") for b in raw]
        for i in range(30):                           # four more silent periods each
            read_until(i, lambda b, n=seen[i]: b.count(b": keep-alive") >= n + 4)
        stats = store.r.info("commandstats")
        calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}
        to_streams = sum(n for c, n in calls.items() if c not in ("info", "config"))
        # about two calls per period (the hub's read, its look at the run); per client: >= 240
        assert to_streams < 30, calls
        assert store.delete_sweep(sweep.id)
        for i in range(30):                           # each stream ends (the last chunk)
            read_until(i, lambda b: b.endswith(b"\r\n0\r\n\r\n"))
    finally:
        for sock in socks:
            sock.close()
        stop_process(api)
        store.close()
        stop_process(redis_proc)
