"""Asynchronous reads for the Server-Sent Event streams (:class:`AsyncStore`, redis.asyncio)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aredis

from backend.store.base import redis_kwargs
from backend.store.codec import StreamEntry, entries
from backend.store.keys import Keys
from tscnc.records import RunStatus


class AsyncStore:
    """Asynchronous reads for the Server-Sent Event streams (redis.asyncio)."""

    def __init__(self, client: aredis.Redis, keys: Keys | None = None) -> None:
        self.r: Any = client
        self.k = keys or Keys()

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 30.0, retries: int = 1,
                 max_connections: int = 10_000) -> AsyncStore:
        """``timeout`` must exceed the longest blocking read (the SSE keep-alive interval).
        Each stream followed live holds a connection in a blocking read, so the pool is
        sized for streams (redis-py's own default is 100 connections)."""
        return cls(aredis.Redis.from_url(url, max_connections=max_connections,
                                         **redis_kwargs(timeout, retries)))

    async def close(self) -> None:
        await self.r.aclose()

    async def ping(self) -> bool:
        return bool(await self.r.ping())

    async def run_status(self, run_id: str) -> RunStatus | None:
        s = await self.r.hget(self.k.run(run_id), "status")
        return RunStatus(s) if s else None

    async def run_state(self, run_id: str) -> tuple[RunStatus, str] | None:
        """(status, sweep id) of a run, None if unknown."""
        st, sweep = await self.r.hmget(self.k.run(run_id), ["status", "sweep_id"])
        return (RunStatus(st), sweep) if st and sweep else None

    async def sweep_statuses(self, sweep_id: str) -> dict[str, RunStatus] | None:
        """Run id → status of a sweep's runs (None if the sweep does not exist)."""
        async with self.r.pipeline(transaction=False) as p:
            p.exists(self.k.sweep(sweep_id))
            p.hgetall(self.k.sweep_status(sweep_id))
            exists, st = await p.execute()
        if not exists:
            return None
        return {r: RunStatus(s) for r, s in st.items()}

    async def read(self, stream: str, after: str, *, block_ms: int | None,
                   count: int = 500) -> list[StreamEntry]:
        """Entries of ``stream`` after id ``after`` ("0-0" = from the start), waiting up to
        ``block_ms`` for new ones (None = do not wait)."""
        res = await self.r.xread({stream: after}, count=count, block=block_ms)
        if not res:
            return []
        if isinstance(res, dict):                       # RESP3
            return entries(next(iter(res.values()))[0])
        return entries(res[0][1])

    async def last_id(self, stream: str) -> str:
        """Id of the newest entry of ``stream`` ("0-0" when empty or missing)."""
        res = await self.r.xrevrange(stream, "+", "-", count=1)
        return str(res[0][0]) if res else "0-0"

    def run_stream(self, run_id: str) -> str:
        return self.k.run_stream(run_id)

    def sweep_stream(self, sweep_id: str) -> str:
        return self.k.sweep_stream(sweep_id)

