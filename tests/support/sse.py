"""A small Server-Sent Events client for tests (httpx streaming + the SSE line format).

Example::

    with SSEReader(base + "/api/v1/runs/RID/events", headers=auth) as reader:
        ev = reader.get(timeout=5)          # {"id": ..., "event": ..., "data": ..., "at": ...}
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpx


def iter_sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Parse SSE lines into messages ``{"id", "event", "data", "at"}`` (``at``: the monotonic
    time the message was complete); a comment line yields ``{"comment": text}``."""
    msg: dict[str, Any] = {}
    data: list[str] = []
    for line in lines:
        if line == "":
            if data or msg:
                msg["data"] = "\n".join(data)
                msg["at"] = time.monotonic()
                yield msg
            msg, data = {}, []
            continue
        if line.startswith(":"):
            yield {"comment": line[1:].strip()}
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            data.append(value)
        elif field in ("id", "event", "retry"):
            msg[field] = value


class SSEReader:
    """Reads an SSE endpoint in a background thread; messages arrive in a queue.

    ``status`` is the HTTP status; ``closed`` is set when the server ended the stream.
    """

    def __init__(self, url: str, headers: Mapping[str, str] | None = None,
                 params: Mapping[str, str] | None = None, timeout: float = 30.0) -> None:
        self.url, self.headers, self.params, self.timeout = url, dict(headers or {}), params, timeout
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.status: int | None = None
        self.connected = threading.Event()
        self.closed = threading.Event()
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self.comments = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SSEReader:
        self._thread.start()
        if not self.connected.wait(self.timeout):
            raise TimeoutError(f"no answer from {self.url}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        try:
            with httpx.Client(timeout=httpx.Timeout(self.timeout, read=None)) as c, \
                    c.stream("GET", self.url, headers={"Accept": "text/event-stream",
                                                        **self.headers},
                             params=self.params) as r:
                self.status = r.status_code
                self.connected.set()
                for msg in iter_sse(r.iter_lines()):
                    if self._stop.is_set():
                        return
                    if "comment" in msg:
                        self.comments += 1
                    elif "data" in msg and "id" in msg:
                        self.messages.put(msg)
        except BaseException as e:  # surfaced to the test through .error
            self.error = e
        finally:
            self.connected.set()
            self.closed.set()

    def get(self, timeout: float = 5.0) -> dict[str, Any]:
        return self.messages.get(timeout=timeout)

    def take(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        out = []
        while len(out) < n:
            out.append(self.messages.get(timeout=max(0.01, deadline - time.monotonic())))
        return out

    @staticmethod
    def event(msg: dict[str, Any]) -> dict[str, Any]:
        return json.loads(msg["data"])
