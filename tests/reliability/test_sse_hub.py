"""Issue 6.6 — the shared stream reader behind the SSE endpoints (backend.sse.StreamHub) gives
every client every entry exactly once and in order: from its Last-Event-ID through the handover
from history to live, and when the client is too slow for its queue (it is dropped with the
reconnect hint and, resuming from its last id as the browser does, misses nothing). One Redis reader serves all clients of a stream and stops with the last.

The generator the endpoints stream (backend.sse._stream) runs here in-process against a real
redis-server, with events appended through the data layer while clients read.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path
from typing import Any

from backend import sse
from backend.store import AsyncStore, Store
from tests.support.services import start_redis, stop_process
from tests.support.wait import wait_until_async
from tscnc.records import LogEvent, RunStatus
from tscnc.spec import Method, SweepSpec

EVENTS = 300


class _Request:
    """What the stream generator asks of its request: is the client still there?"""

    async def is_disconnected(self) -> bool:
        return False


LAST = f'"message":"new {EVENTS - 1}"'


async def _read(gen: Any, ids: list[str], delay: float = 0.0, drops: list | None = None) -> None:
    """Appends to ``ids`` the ids of the entries a client receives up to the last event written
    (sleeping ``delay`` after each chunk, for a slow client). A stream that ends with the drop
    hint before the last event is appended to ``drops`` and ends the read early."""
    async for chunk in gen:
        ids += [line[4:] for line in chunk.split("\n") if line.startswith("id: ")]
        if LAST in chunk:
            break
        if chunk == sse.DROPPED and drops is not None:
            drops.append(ids[-1] if ids else None)
        if delay and "id: " in chunk:
            await asyncio.sleep(delay)                # the point: a client slower than the writer
    await gen.aclose()


async def _read_resuming(client: Any, after: str, delay: float, drops: list,
                         ids: list[str]) -> list[str]:
    """A client that, like the browser, reconnects with its last id when its stream is cut;
    the ids it receives are appended to ``ids`` as they come."""
    while True:
        n = len(drops)
        await _read(client(ids[-1] if ids else after), ids, delay, drops)
        if len(drops) == n:
            return ids


def test_every_client_gets_every_entry_once_in_order(tmp_path: Path, monkeypatch):
    drops: list = []
    url, proc = start_redis(tmp_path)
    store = Store.from_url(url)
    try:
        sweep, _ = store.create_sweep(SweepSpec(methods=[Method.dense]), "owner")
        rid = sweep.run_ids[0]
        store.set_status(rid, RunStatus.running)
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

            def client(after: str) -> Any:
                return sse._stream(_Request(), astore, stream, after, keepalive=0.5,
                                   finished=finished, hub=hub)

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
