"""Server-Sent Events from the run and sweep event streams (``StreamingResponse``).

Each stream entry becomes one SSE message: ``id:`` the Redis stream id, ``event:`` the event
type, ``data:`` the event JSON. A client resumes with ``Last-Event-ID`` (or ``?last_event_id=``)
and receives exactly the entries after it. While nothing happens a ``: keep-alive`` comment is
sent every ``keepalive`` seconds of silence. All clients of one stream share one Redis reader
(:class:`StreamHub`). A Redis outage during a stream is ridden out (the stream stays open and
carries on once Redis is back).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

import redis.exceptions
from fastapi import Header, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse

from backend.store import AsyncStore, StreamEntry
from tscnc.records import TERMINAL_STATUSES, RunStatus

log = logging.getLogger(__name__)

_STREAM_ID = re.compile(r"^\d{1,20}(-\d{1,20})?$")
_U64 = 2**64
# What the OpenAPI document declares for Last-Event-ID / last_event_id: ids every part of which
# is below 2**64 (19 digits at most), so every value the schema allows is one the server takes.
LAST_EVENT_ID_PATTERN = r"^[0-9]{1,19}(-[0-9]{1,19})?$"
# Declared as plain strings (a header or query value cannot be null); both are optional.
LastEventIdQuery = Annotated[str, Query(
    pattern=LAST_EVENT_ID_PATTERN, max_length=50,
    description="resume after this stream id (or send the Last-Event-ID header)")]
LastEventIdHeader = Annotated[str, Header(
    alias="Last-Event-ID", pattern=LAST_EVENT_ID_PATTERN, max_length=50,
    description="resume after this stream id (as EventSource sends it)")]


def valid_stream_id(value: str) -> bool:
    """A Redis stream id ``ms[-seq]`` with both parts below 2**64."""
    if not _STREAM_ID.match(value):
        return False
    return all(int(part) < _U64 for part in value.split("-"))


HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
RETRY_MS = 2000


def start_id(request: Request, query_value: str | None) -> str:
    """The id to resume after: ``Last-Event-ID`` header, else ``?last_event_id=``, else "0-0"
    (the whole history). 400 when malformed."""
    value = request.headers.get("last-event-id") or query_value
    if not value:
        return "0-0"
    value = value.strip()
    if not valid_stream_id(value):
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            "Last-Event-ID / last_event_id must be a stream id like 1718000000000-0")
    return value


def format_entry(e: StreamEntry) -> str:
    # Event JSON is compact (no newlines), so one data: line carries it.
    return f"id: {e.id}\nevent: {e.type}\ndata: {e.data}\n\n"


def terminal_status(e: StreamEntry) -> bool:
    if e.type != "status":
        return False
    try:
        return RunStatus(json.loads(e.data).get("status")) in TERMINAL_STATUSES
    except (ValueError, TypeError):
        return False


_STORE_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class _Subscriber:
    __slots__ = ("queue", "overflow")

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[list[StreamEntry]] = asyncio.Queue(size)
        self.overflow = False

    def drain(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()
        self.overflow = False


class StreamHub:
    """One Redis reader per stream for all of this process's SSE clients of that stream.

    Each SSE client used to hold its own Redis connection blocked in XREAD: redis-py's pool
    (100 connections by default) answered the 101st client with 503 ("Too many connections")
    and cut live streams short, and every event was read and decoded once per client. Now the
    first client of a stream starts a reader task (one connection, one blocking XREAD) that
    hands each batch of new entries to every client's queue; the last client to leave stops it.

    A client first reads its history (after its Last-Event-ID) from Redis itself, once the
    reader has fixed the id it follows from, then takes the reader's batches, skipping ids it
    has already sent: every entry exactly once, in order. A client too slow for its queue
    (``QUEUE_BATCHES``) is switched back to reading from Redis until it has caught up.
    """

    QUEUE_BATCHES = 256

    def __init__(self, astore: AsyncStore, block_ms: int) -> None:
        self.astore, self.block_ms = astore, block_ms
        self._subs: dict[str, set[_Subscriber]] = {}
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._ready: dict[str, asyncio.Event] = {}

    @property
    def readers(self) -> int:
        """Streams read from Redis right now (one connection each)."""
        return len(self._readers)

    def subscribe(self, stream: str) -> tuple[_Subscriber, asyncio.Event]:
        """Register a client; returns its subscriber and the event set once the stream's reader
        has fixed its starting id (read the history only after that)."""
        sub = _Subscriber(self.QUEUE_BATCHES)
        self._subs.setdefault(stream, set()).add(sub)
        if stream not in self._readers:
            self._ready[stream] = asyncio.Event()
            self._readers[stream] = asyncio.create_task(self._read(stream,
                                                                   self._ready[stream]))
        return sub, self._ready[stream]

    def unsubscribe(self, stream: str, sub: _Subscriber) -> None:
        subs = self._subs.get(stream)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self._subs[stream]
            self._ready.pop(stream, None)
            task = self._readers.pop(stream, None)
            if task is not None:
                task.cancel()

    async def close(self) -> None:
        tasks = list(self._readers.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._readers.clear()

    async def _read(self, stream: str, ready: asyncio.Event) -> None:
        pos: str | None = None
        while pos is None:
            try:
                pos = await self.astore.last_id(stream)
            except _STORE_DOWN as exc:
                log.warning("event stream: Redis unavailable (%s); retrying", exc)
                await asyncio.sleep(1.0)
        ready.set()
        while True:
            try:
                entries = await self.astore.read(stream, pos, block_ms=self.block_ms)
            except _STORE_DOWN as exc:
                log.warning("event stream: Redis unavailable (%s); retrying", exc)
                await asyncio.sleep(1.0)
                continue
            if not entries:
                continue
            pos = entries[-1].id
            for sub in list(self._subs.get(stream, ())):
                try:
                    sub.queue.put_nowait(entries)
                except asyncio.QueueFull:
                    sub.overflow = True


def hub_for(request: Request, astore: AsyncStore, keepalive: float) -> StreamHub:
    """The app's hub (made on first use, closed by the app's lifespan)."""
    hub: StreamHub | None = getattr(request.app.state, "sse_hub", None)
    if hub is None or hub.astore is not astore:
        hub = request.app.state.sse_hub = StreamHub(astore, max(1, int(keepalive * 1000)))
    return hub


async def _stream(request: Request, astore: AsyncStore, stream: str, after: str, *,
                  keepalive: float, finished: Callable[[], Awaitable[bool]],
                  hub: StreamHub) -> AsyncIterator[str]:
    """Entries after ``after``, then live through the hub. After a batch holding a terminal
    status event the stream looks in Redis once more: when nothing follows and ``finished()``
    holds, it ends. A keep-alive comment goes out every ``keepalive`` seconds of silence."""
    yield f"retry: {RETRY_MS}\n\n"
    sub, ready = hub.subscribe(stream)
    try:
        while not ready.is_set():                       # Redis down while the reader starts
            try:
                await asyncio.wait_for(ready.wait(), keepalive)
            except TimeoutError:
                yield ": keep-alive\n\n"
        last, from_redis, ending = after, True, False
        while True:
            if await request.is_disconnected():
                return
            if from_redis or sub.overflow:              # history, a flush, or catching up
                if sub.overflow:
                    sub.drain()
                try:
                    entries = await astore.read(stream, last, block_ms=None)
                    if not entries and ending and await finished():
                        return
                except _STORE_DOWN as exc:
                    log.warning("event stream: Redis unavailable (%s); retrying", exc)
                    yield ": store unavailable, retrying\n\n"
                    await asyncio.sleep(1.0)
                    continue
                if not entries:
                    from_redis = ending = False
                    continue
            else:
                try:
                    entries = await asyncio.wait_for(sub.queue.get(), keepalive)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    from_redis = ending = True          # ended meanwhile? look once
                    continue
            for e in entries:
                if _id_key(e.id) <= _id_key(last):
                    continue                            # already sent from the history
                yield format_entry(e)
                last = e.id
                if terminal_status(e):
                    from_redis = ending = True
    finally:
        hub.unsubscribe(stream, sub)


async def run_events(request: Request, astore: AsyncStore, run_id: str, after: str,
                     keepalive: float) -> StreamingResponse | None:
    """SSE for one run; ends after its terminal status event. None (→ 204) when the run has
    finished and nothing is left after ``after``."""
    stream = astore.run_stream(run_id)

    async def finished() -> bool:
        st = await astore.run_status(run_id)
        return st is None or st in TERMINAL_STATUSES

    if await finished() and not await astore.read(stream, after, block_ms=None, count=1):
        return None
    return StreamingResponse(
        _stream(request, astore, stream, after, keepalive=keepalive, finished=finished,
                hub=hub_for(request, astore, keepalive)),
        media_type="text/event-stream", headers=HEADERS)


async def sweep_events(request: Request, astore: AsyncStore, sweep_id: str, after: str,
                       keepalive: float) -> StreamingResponse | None:
    """SSE for all runs of a sweep; ends once every run has finished. None (→ 204) when all
    have finished and nothing is left after ``after``."""
    stream = astore.sweep_stream(sweep_id)

    async def finished() -> bool:
        st = await astore.sweep_statuses(sweep_id)
        return st is None or all(s in TERMINAL_STATUSES for s in st.values())

    if await finished() and not await astore.read(stream, after, block_ms=None, count=1):
        return None
    return StreamingResponse(
        _stream(request, astore, stream, after, keepalive=keepalive, finished=finished,
                hub=hub_for(request, astore, keepalive)),
        media_type="text/event-stream", headers=HEADERS)
