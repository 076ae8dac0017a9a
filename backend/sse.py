"""Server-Sent Events from the run and sweep event streams (:class:`EventStream`).

Each stream entry becomes one SSE message: ``id:`` the Redis stream id, ``event:`` the event
type, ``data:`` the event JSON. A client resumes with ``Last-Event-ID`` (or ``?last_event_id=``)
and receives exactly the entries after it. While nothing happens a ``: keep-alive`` comment is
sent every ``keepalive`` seconds of silence. All clients of one stream share one Redis reader
(:class:`StreamHub`), which writes each new batch to every client itself. A Redis outage during
a stream is ridden out (the stream stays open and carries on once Redis is back).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable
from typing import Annotated, Any, NamedTuple

import redis.exceptions
from fastapi import Header, HTTPException, Query, Request, status
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

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
# The scope key under which the app leaves the server's own ``send`` (backend/app.py ``_App``):
# the stream's body goes out with it, past middleware that acts only on the headers.
SERVER_SEND = "tscnc.server_send"
RETRY_MS = 2000
KEEPALIVE = b": keep-alive\n\n"
STORE_DOWN = b": store unavailable, retrying\n\n"


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
    """A stream entry as sent: serialised and encoded once for all of its clients."""

    key: tuple[int, int]     # the id, comparable
    id: str
    data: bytes              # format_entry(entry), UTF-8
    terminal: bool           # terminal_status(entry)

    @classmethod
    def of(cls, e: StreamEntry) -> _Message:
        return cls(_id_key(e.id), e.id, format_entry(e).encode(), terminal_status(e))


def _body(data: bytes) -> Message:
    return {"type": "http.response.body", "body": data, "more_body": True}


class _Batch:
    """Entries read together, as one chunk of bytes shared by every client that has sent
    nothing of them yet."""

    __slots__ = ("messages", "body", "message", "first", "last", "last_id", "terminal")

    def __init__(self, entries: list[StreamEntry]) -> None:
        self.messages = [_Message.of(e) for e in entries]
        self.body = b"".join(m.data for m in self.messages)
        self.message = _body(self.body)       # the ASGI message of the whole batch, shared
        self.first, self.last = self.messages[0].key, self.messages[-1].key
        self.last_id = self.messages[-1].id
        self.terminal = any(m.terminal for m in self.messages)

    def after(self, key: tuple[int, int]) -> tuple[bytes, bool]:
        """The messages after ``key`` (all of them: the shared bytes) and whether one of them
        is a terminal status."""
        if self.first > key:
            return self.body, self.terminal
        out = [m for m in self.messages if m.key > key]
        return b"".join(m.data for m in out), any(m.terminal for m in out)


# Sent to a client dropped for being too slow, before its stream ends: reconnect soon (the
# browser's EventSource / frontend/js/sse.js resumes with Last-Event-ID, missing nothing).
DROP_RETRY_MS = 500
DROPPED = (f"retry: {DROP_RETRY_MS}\n"
           ": dropped: too slow for the live stream; reconnect with Last-Event-ID\n\n")


class _Resumed:
    """Awaiting this finishes a coroutine that was started by hand (``coro.send(None)``) and
    suspended on ``blocker`` (what it yielded): the awaiting task waits on each future the
    coroutine waits on and passes every result or exception on, as if it had run it from the
    start."""

    __slots__ = ("coro", "blocker")

    def __init__(self, coro: Coroutine[Any, Any, None], blocker: Any) -> None:
        self.coro, self.blocker = coro, blocker

    def __await__(self) -> Generator[Any, None, None]:
        blocker = self.blocker
        while True:
            try:
                yield blocker
            except BaseException as exc:    # noqa: BLE001 — handed to the coroutine (cancel)
                try:
                    blocker = self.coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    blocker = self.coro.send(None)
                except StopIteration:
                    return


async def _finish(coro: Coroutine[Any, Any, None], blocker: Any) -> None:
    await _Resumed(coro, blocker)


async def _awaited(a: Awaitable[None]) -> None:
    await a


class _Client:
    """One SSE connection as its stream's hub sees it.

    While ``live`` (its own task waits, with nothing left to send) the hub writes each new batch
    to it directly, from the reader's task: no task of the client's wakes for an event. Else
    the hub leaves batches in ``pending`` (at most ``limit``; one more marks it ``overflow``)
    and wakes the client's task, which sends them, coalesced into one write.
    """

    __slots__ = ("send", "limit", "last", "last_id", "pending", "live", "writing", "overflow",
                 "gone", "look", "keepalive", "_waiter")

    def __init__(self, send: Send, limit: int, after: str) -> None:
        self.send, self.limit = send, limit
        self.last, self.last_id = _id_key(after), after   # the last entry sent
        self.pending: list[_Batch] = []
        self.live = False
        self.writing: asyncio.Task[None] | None = None    # a write the hub started, waiting
        self.overflow = self.gone = False
        self.look = False                                  # a terminal status went out
        self.keepalive = False                             # the stream was silent
        self._waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def offer(self, batch: _Batch) -> None:
        """A new batch from the hub: written now when live, else left for the client's task."""
        if self.overflow or self.gone:
            return
        if not self.live:
            if len(self.pending) >= self.limit:
                self.overflow = True
            else:
                self.pending.append(batch)
            self.wake()
            return
        if batch.first > self.last:     # all of it: the batch's own message
            self.last, self.last_id, terminal = batch.last, batch.last_id, batch.terminal
            self.write(batch.message)
        else:
            body, terminal = self.take((batch,))
            if not body:
                return
            self.write(_body(body))
        if terminal:                    # the client's task looks whether the stream has ended
            self.live, self.look = False, True
            self.wake()

    def take(self, batches: Iterable[_Batch]) -> tuple[bytes, bool]:
        """The messages of ``batches`` after the last one sent, as one chunk, and whether one
        of them is a terminal status; they count as sent from now on."""
        parts, terminal = [], False
        for batch in batches:
            body, t = batch.after(self.last)
            if body:
                parts.append(body)
                terminal = terminal or t
                self.last, self.last_id = batch.last, batch.last_id
        return (parts[0] if len(parts) == 1 else b"".join(parts)), terminal

    def write(self, message: Message) -> None:
        """Start sending ``message`` (a body chunk). The send usually completes at once (the
        bytes go to the socket); when it has to wait (the client reads slowly and its socket is
        full) it goes on in a task of its own, and the client's task takes over once it is
        done."""
        sent = self.send(message)
        coro = sent if isinstance(sent, Coroutine) else _awaited(sent)
        try:
            blocker = coro.send(None)
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001 — this connection cannot be written to
            log.debug("event stream: write failed: %r", exc)
            self.gone, self.live = True, False
            self.wake()
            return
        self.live = False
        self.writing = asyncio.get_running_loop().create_task(_finish(coro, blocker))
        self.writing.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[None]) -> None:
        self.writing = None
        if task.cancelled() or task.exception() is not None:
            self.gone = True
        self.wake()

    def silent(self, ended: bool = False) -> None:
        """The stream has been silent for a keep-alive period (or Redis is unreachable);
        ``ended``: its run or sweep has finished meanwhile (the client's task looks once more
        before it ends the stream)."""
        if self.live:
            self.live, self.keepalive, self.look = False, True, ended
            self.wake()

    def disconnected(self) -> None:
        self.gone, self.live = True, False
        self.wake()


class StreamHub:
    """One Redis reader per stream for all of this process's SSE clients of that stream.

    Each SSE client used to hold its own Redis connection blocked in XREAD: redis-py's pool
    (100 connections by default) answered the 101st client with 503 ("Too many connections")
    and cut live streams short, and every event was read and decoded once per client. Now the
    first client of a stream starts a reader task (one connection, one blocking XREAD) that
    hands each batch of new entries to every client; the last client to leave stops it.

    A client first reads its history (after its Last-Event-ID) from Redis itself, once the
    reader has fixed the id it follows from, then takes the reader's batches, skipping ids it
    has already sent: every entry exactly once, in order. The reader serialises each batch once
    (:class:`_Batch`) for all clients and never waits for one: it writes the batch to every
    client that is waiting for it (:meth:`_Client.offer`), and leaves it with any other, whose
    own task sends it; a client with ``queue_batches`` batches left with it is marked, gets no
    more, and is dropped with a reconnect hint (:data:`DROPPED`) as soon as it can be written
    to again; it resumes with Last-Event-ID. When a read finds nothing for the keep-alive
    period, the hub asks once whether the stream's run or sweep has ended and tells every
    waiting client (:meth:`_Client.silent`): a keep-alive each, and a look in Redis only when
    it has ended (a look per client per silent period was a burst of thousands of Redis
    calls with 1,000 viewers of a quiet run).
    """

    QUEUE_BATCHES = 256

    def __init__(self, astore: AsyncStore, block_ms: int, queue_batches: int | None = None
                 ) -> None:
        self.astore, self.block_ms = astore, block_ms
        if queue_batches is not None:
            self.QUEUE_BATCHES = queue_batches
        self._subs: dict[str, set[_Client]] = {}
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._ready: dict[str, asyncio.Event] = {}
        self._finished: dict[str, Callable[[], Awaitable[bool]]] = {}

    @property
    def readers(self) -> int:
        """Streams read from Redis right now (one connection each)."""
        return len(self._readers)

    def subscribe(self, stream: str, client: _Client,
                  finished: Callable[[], Awaitable[bool]]) -> asyncio.Event:
        """Register a client; returns the event set once the stream's reader has fixed its
        starting id (read the history only after that). ``finished``: whether the stream's
        run or sweep has ended (asked once per silent keep-alive period, for all clients)."""
        self._subs.setdefault(stream, set()).add(client)
        self._finished.setdefault(stream, finished)
        if stream not in self._readers:
            self._ready[stream] = asyncio.Event()
            self._readers[stream] = asyncio.create_task(self._read(stream,
                                                                   self._ready[stream]))
        return self._ready[stream]

    def unsubscribe(self, stream: str, client: _Client) -> None:
        subs = self._subs.get(stream)
        if subs is None:
            return
        subs.discard(client)
        if not subs:
            del self._subs[stream]
            self._ready.pop(stream, None)
            self._finished.pop(stream, None)
            task = self._readers.pop(stream, None)
            if task is not None:
                task.cancel()

    async def close(self) -> None:
        tasks = list(self._readers.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._readers.clear()

    async def _ended(self, stream: str) -> bool:
        finished = self._finished.get(stream)
        try:
            return finished is not None and await finished()
        except _STORE_DOWN:
            return False

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
                for client in list(self._subs.get(stream, ())):
                    client.silent()
                await asyncio.sleep(1.0)
                continue
            if not entries:
                # Silent: keep-alives, and one look at whether the run or sweep has ended (an
                # ending without a terminal status event, e.g. a deletion) for all clients.
                ended = await self._ended(stream)
                for client in list(self._subs.get(stream, ())):
                    client.silent(ended)
                continue
            pos = entries[-1].id
            batch = _Batch(entries)                         # serialised once for every client
            for client in list(self._subs.get(stream, ())):
                client.offer(batch)


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


async def _watch(receive: Receive, client: _Client) -> None:
    """Tell ``client`` when its connection closes (the server's ``http.disconnect``)."""
    try:
        while (await receive())["type"] != "http.disconnect":
            pass
    except Exception as exc:  # noqa: BLE001 — a connection that cannot be read has gone too
        log.debug("event stream: receive failed: %r", exc)
    client.disconnected()


class EventStream(Response):
    """The SSE response of one stream: entries after ``after``, then live through the hub.

    A thin ASGI response rather than Starlette's ``StreamingResponse``: the live batches are
    written by the hub (:meth:`_Client.offer`), and this response's task wakes only for what
    the hub leaves to it: batches that came while it was busy (sent coalesced, one write), a
    terminal status, a silent stream, a slow or gone client. A task waiting on ``receive()``
    notices the client leaving. After a batch holding a terminal status event, or a silent
    period after which the hub found ``finished()``, the stream looks in Redis once more: when
    nothing follows and ``finished()`` holds, it ends. A keep-alive comment goes out whenever
    the hub's read finds the stream silent for ``keepalive`` seconds.

    The headers go through the app's middleware; the body goes out with the server's own
    ``send`` when the app left it in the scope (:data:`SERVER_SEND`), past wrappers that act
    only on the headers. The hub calls that ``send`` from its own task, so the middleware must
    be plain ASGI (backend/app.py: no ``BaseHTTPMiddleware``) and leave bodies alone.
    """

    media_type = "text/event-stream"

    def __init__(self, astore: AsyncStore, stream: str, after: str, *, keepalive: float,
                 finished: Callable[[], Awaitable[bool]], hub: StreamHub) -> None:
        self.status_code = 200
        self.background = None
        self.init_headers(HEADERS)
        self.astore, self.stream, self.after = astore, stream, after
        self.keepalive, self.finished, self.hub = keepalive, finished, hub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        send = scope.get(SERVER_SEND, send)             # the body past the middleware
        await send(_body(f"retry: {RETRY_MS}\n\n".encode()))
        client = _Client(send, self.hub.QUEUE_BATCHES, self.after)
        ready = self.hub.subscribe(self.stream, client, self.finished)
        watcher = asyncio.create_task(_watch(receive, client))
        try:
            await self._serve(client, ready)
        finally:
            self.hub.unsubscribe(self.stream, client)
            watcher.cancel()
            if client.writing is not None:
                client.writing.cancel()
        if not client.gone:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _serve(self, client: _Client, ready: asyncio.Event) -> None:
        send = client.send
        while not ready.is_set():                       # Redis down while the reader starts
            if client.gone:
                return
            try:
                await asyncio.wait_for(ready.wait(), self.keepalive)
            except TimeoutError:
                await send(_body(KEEPALIVE))
        look, ending = True, False                      # history first
        while True:
            if client.gone:
                return
            if client.writing is not None:              # a write the hub started is waiting
                await client.wait()
                continue
            if client.overflow:                         # too slow: drop with a reconnect hint
                await send(_body(DROPPED.encode()))
                return
            if client.look:
                client.look, look, ending = False, True, True
            if client.pending:                          # coalesced into one write
                batches, client.pending = client.pending, []
                body, terminal = client.take(batches)
                if body:
                    await send(_body(body))
                if terminal:
                    look = ending = True
                continue
            if client.keepalive:
                client.keepalive = False
                await send(_body(KEEPALIVE))
                continue
            if look:                                    # history, or a look after an end
                try:
                    entries = await self.astore.read(self.stream, client.last_id, block_ms=None)
                    if not entries and ending and await self.finished():
                        return
                except _STORE_DOWN as exc:
                    log.warning("event stream: Redis unavailable (%s); retrying", exc)
                    await send(_body(STORE_DOWN))
                    await asyncio.sleep(1.0)
                    continue
                if not entries:
                    look = ending = False
                    continue
                body, terminal = client.take((_Batch(entries),))
                if body:
                    await send(_body(body))
                if terminal:
                    ending = True
                continue
            client.live = True                          # the hub writes the next batches
            await client.wait()
            client.live = False


async def _respond(request: Request, astore: AsyncStore, stream: str, after: str,
                   keepalive: float, finished: Callable[[], Awaitable[bool]],
                   ) -> EventStream | None:
    """The SSE response for ``stream``; None when ``finished()`` and nothing is left after
    ``after``."""
    if await finished() and not await astore.read(stream, after, block_ms=None, count=1):
        return None
    return EventStream(astore, stream, after, keepalive=keepalive, finished=finished,
                       hub=hub_for(request, astore, keepalive))


async def run_events(request: Request, astore: AsyncStore, run_id: str, after: str,
                     keepalive: float) -> EventStream | None:
    """SSE for one run; ends after its terminal status event. None (→ 204) when the run has
    finished and nothing is left after ``after``."""
    stream = astore.run_stream(run_id)

    async def finished() -> bool:
        st = await astore.run_status(run_id)
        return st is None or st in TERMINAL_STATUSES

    return await _respond(request, astore, stream, after, keepalive, finished)


async def sweep_events(request: Request, astore: AsyncStore, sweep_id: str, after: str,
                       keepalive: float) -> EventStream | None:
    """SSE for all runs of a sweep; ends once every run has finished. None (→ 204) when all
    have finished and nothing is left after ``after``."""
    stream = astore.sweep_stream(sweep_id)

    async def finished() -> bool:
        st = await astore.sweep_statuses(sweep_id)
        return st is None or all(s in TERMINAL_STATUSES for s in st.values())

    return await _respond(request, astore, stream, after, keepalive, finished)
