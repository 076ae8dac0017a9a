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
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, NamedTuple

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
# A stream asks whether its client has gone at most this often (seconds). Starlette's
# is_disconnected() opens and cancels an anyio cancel scope, which formats the task's repr
# (~0.1 ms): once per batch for every client, it was a tenth of the API's CPU under 300 streams
# (docs/benchmarks.md). A client that has gone is also noticed at the next write.
DISCONNECT_CHECK_S = 1.0


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


class _Message(NamedTuple):
    """A stream entry as sent: serialised once by the reader for all of its clients."""

    key: tuple[int, int]     # the id, comparable
    id: str
    text: str                # format_entry(entry)
    terminal: bool           # terminal_status(entry)

    @classmethod
    def of(cls, e: StreamEntry) -> _Message:
        return cls(_id_key(e.id), e.id, format_entry(e), terminal_status(e))


# Sent to a client dropped for being too slow, before its stream ends: reconnect soon (the
# browser's EventSource / frontend/js/sse.js resumes with Last-Event-ID, missing nothing).
DROP_RETRY_MS = 500
DROPPED = (f"retry: {DROP_RETRY_MS}\n"
           ": dropped: too slow for the live stream; reconnect with Last-Event-ID\n\n")


class _Subscriber:
    __slots__ = ("queue", "overflow")

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[list[_Message]] = asyncio.Queue(size)
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
    has already sent: every entry exactly once, in order. The reader serialises each entry once
    (:class:`_Message`) for all clients and never waits for one: a client whose queue
    (``queue_batches`` batches) is full is marked, gets no more batches, and is dropped with a
    reconnect hint (:data:`DROPPED`) as soon as it reads again; it resumes with Last-Event-ID.
    """

    QUEUE_BATCHES = 256

    def __init__(self, astore: AsyncStore, block_ms: int, queue_batches: int | None = None
                 ) -> None:
        self.astore, self.block_ms = astore, block_ms
        if queue_batches is not None:
            self.QUEUE_BATCHES = queue_batches
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
            batch = [_Message.of(e) for e in entries]      # serialised once for every client
            for sub in list(self._subs.get(stream, ())):
                if sub.overflow:
                    continue
                try:
                    sub.queue.put_nowait(batch)
                except asyncio.QueueFull:
                    sub.overflow = True


def hub_for(request: Request, astore: AsyncStore, keepalive: float,
            queue_batches: int | None = None) -> StreamHub:
    """The app's hub (made on first use, closed by the app's lifespan)."""
    hub: StreamHub | None = getattr(request.app.state, "sse_hub", None)
    if queue_batches is None and getattr(request.app.state, "settings", None) is not None:
        queue_batches = request.app.state.settings.sse_client_buffer
    if hub is None or hub.astore is not astore:
        hub = request.app.state.sse_hub = StreamHub(astore, max(1, int(keepalive * 1000)),
                                                    queue_batches)
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
        checked = -DISCONNECT_CHECK_S
        while True:
            if sub.overflow:                            # too slow: drop with a reconnect hint
                yield DROPPED
                return
            if time.monotonic() - checked >= DISCONNECT_CHECK_S:
                checked = time.monotonic()
                if await request.is_disconnected():
                    return
            if from_redis:                              # history, or a look after an end
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
                batch = [_Message.of(e) for e in entries]
            else:
                try:
                    batch = await asyncio.wait_for(sub.queue.get(), keepalive)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    from_redis = ending = True          # ended meanwhile? look once
                    continue
            last_key = _id_key(last)
            out = [m for m in batch if m.key > last_key]     # skip what the history sent
            if not out:
                continue
            yield "".join(m.text for m in out)          # one write per batch
            last = out[-1].id
            if any(m.terminal for m in out):
                from_redis = ending = True
    finally:
        hub.unsubscribe(stream, sub)


async def _respond(request: Request, astore: AsyncStore, stream: str, after: str,
                   keepalive: float, finished: Callable[[], Awaitable[bool]],
                   ) -> StreamingResponse | None:
    """The SSE response for ``stream``; None when ``finished()`` and nothing is left after
    ``after``."""
    if await finished() and not await astore.read(stream, after, block_ms=None, count=1):
        return None
    return StreamingResponse(
        _stream(request, astore, stream, after, keepalive=keepalive, finished=finished,
                hub=hub_for(request, astore, keepalive)),
        media_type="text/event-stream", headers=HEADERS)


async def run_events(request: Request, astore: AsyncStore, run_id: str, after: str,
                     keepalive: float) -> StreamingResponse | None:
    """SSE for one run; ends after its terminal status event. None (→ 204) when the run has
    finished and nothing is left after ``after``."""
    stream = astore.run_stream(run_id)

    async def finished() -> bool:
        st = await astore.run_status(run_id)
        return st is None or st in TERMINAL_STATUSES

    return await _respond(request, astore, stream, after, keepalive, finished)


async def sweep_events(request: Request, astore: AsyncStore, sweep_id: str, after: str,
                       keepalive: float) -> StreamingResponse | None:
    """SSE for all runs of a sweep; ends once every run has finished. None (→ 204) when all
    have finished and nothing is left after ``after``."""
    stream = astore.sweep_stream(sweep_id)

    async def finished() -> bool:
        st = await astore.sweep_statuses(sweep_id)
        return st is None or all(s in TERMINAL_STATUSES for s in st.values())

    return await _respond(request, astore, stream, after, keepalive, finished)
