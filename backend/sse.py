"""Server-Sent Events from the run and sweep event streams (``StreamingResponse``).

Each stream entry becomes one SSE message: ``id:`` the Redis stream id, ``event:`` the event
type, ``data:`` the event JSON. A client resumes with ``Last-Event-ID`` (or ``?last_event_id=``)
and receives exactly the entries after it. While nothing happens a ``: keep-alive`` comment is
sent every ``keepalive`` seconds (the blocking read's timeout). A Redis outage during a stream
is ridden out (the stream stays open and carries on once Redis is back).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable

import redis.exceptions
from fastapi import HTTPException, Request, status
from fastapi.responses import StreamingResponse

from backend.store import AsyncStore, StreamEntry
from tscnc.records import TERMINAL_STATUSES, RunStatus

log = logging.getLogger(__name__)

_STREAM_ID = re.compile(r"^\d{1,20}(-\d{1,20})?$")
_U64 = 2**64


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


async def _stream(request: Request, astore: AsyncStore, stream: str, after: str, *,
                  keepalive: float, finished: Callable[[], Awaitable[bool]]) -> AsyncIterator[str]:
    """Entries after ``after``, live. After a batch holding a terminal status event the next
    read does not wait: when it finds nothing and ``finished()`` holds, the stream ends."""
    yield f"retry: {RETRY_MS}\n\n"
    block_ms = max(1, int(keepalive * 1000))
    wait: int | None = block_ms
    while True:
        if await request.is_disconnected():
            return
        try:
            entries = await astore.read(stream, after, block_ms=wait)
            if not entries:
                if await finished():
                    return
                if wait is not None:
                    yield ": keep-alive\n\n"
                wait = block_ms
                continue
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            log.warning("event stream: Redis unavailable (%s); retrying", exc)
            yield ": store unavailable, retrying\n\n"
            await asyncio.sleep(1.0)
            continue
        wait = block_ms
        for e in entries:
            yield format_entry(e)
            after = e.id
            if terminal_status(e):
                wait = None


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
        _stream(request, astore, stream, after, keepalive=keepalive,
                finished=finished),
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
        _stream(request, astore, stream, after, keepalive=keepalive,
                finished=finished),
        media_type="text/event-stream", headers=HEADERS)
