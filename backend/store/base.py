"""The connection every part of the synchronous store shares (:class:`StoreBase`): the Redis
client, the key names, the registered Lua scripts and the helpers the aggregates use."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Self

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from backend.store import index, retention, scripts, sweepindex, textindex
from backend.store.index import IdPage
from backend.store.keys import Keys
from backend.store.records import RunRecord


def redis_kwargs(timeout: float, retries: int) -> dict[str, Any]:
    return dict(decode_responses=True, socket_timeout=timeout,
                socket_connect_timeout=min(timeout, 2.0),
                retry=Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), retries),
                health_check_interval=30)


class StoreBase:
    """What every part of :class:`backend.store.Store` shares: the Redis client (one
    connection pool per instance, thread-safe), the key names, the registered Lua scripts."""

    def __init__(self, client: redis.Redis, keys: Keys | None = None, *,
                 retention_keep_logs: int | None = None) -> None:
        # decode_responses=True: every reply is str (redis-py's stubs say bytes | str).
        self.r: Any = client
        self.k = keys or Keys()
        # Compact a run's event stream as it finishes, keeping this many log lines
        # (backend.store.retention.on_finish); None: never automatically.
        self.retention_keep_logs = retention_keep_logs
        self._append = client.register_script(scripts.APPEND)
        self._transition = client.register_script(scripts.TRANSITION)
        self._update_script = client.register_script(scripts.UPDATE)
        self._reindex = client.register_script(index.REINDEX_SCRIPT)
        self._compact = client.register_script(retention.COMPACT_SCRIPT)
        self._text_query = client.register_script(textindex.QUERY_SCRIPT)
        self.ix = index.IndexKeys(self.k.runs)
        self.sx = index.IndexKeys(self.k.sweeps)         # the sweeps list's (sweepindex)
        self._sweep_update = client.register_script(sweepindex.UPDATE_SCRIPT)
        self._sweep_reindex = client.register_script(sweepindex.REINDEX_SCRIPT)
        self._take_over = client.register_script(scripts.TAKE_OVER)
        self._hold_pretrain = client.register_script(scripts.HOLD_PRETRAIN)
        self._release_pretrain = client.register_script(scripts.RELEASE_PRETRAIN)
        self._summaries = client.register_script(scripts.SUMMARIES)
        self._get_runs = client.register_script(scripts.GET_RUNS)
        self._static: dict[str, RunRecord] = {}     # immutable run fields, per process

    def _update(self, keys: Sequence[str], args: Sequence[str]) -> Any:
        """Run the field-update script (optional arguments padded; the index prefix last)."""
        return self._update_script(keys=keys,
                                   args=[*args, *[""] * (3 - len(args)), self.ix.prefix])

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 5.0, retries: int = 10,
                 retention_keep_logs: int | None = None) -> Self:
        """Connect lazily to ``url``. The worker keeps the default retries (rides out a Redis
        restart); the API uses few retries and a short timeout so requests fail fast (503)."""
        return cls(redis.Redis.from_url(url, **redis_kwargs(timeout, retries)),
                   retention_keep_logs=retention_keep_logs)

    def close(self) -> None:
        self.r.close()

    def ping(self) -> bool:
        return bool(self.r.ping())

    def _page(self, keys: list[str], limit: int, cursor: str | None, desc: bool) -> IdPage:
        """Keyset pagination over the intersection of index zsets (scores are unique seqs)."""
        return index.query_ids(self.r, self.ix, self.k.tmp, keys, None, None, desc, limit,
                               cursor, keys[0], None)

    def _query(self, ix: index.IndexKeys, sets: list[str], where: index.IndexFilter | None,
               sort: str | None, desc: bool, limit: int, cursor: str | None, base: str,
               hash_prefix: str, sort_fallback: Any = None, text: str | None = None) -> IdPage:
        """:func:`backend.store.index.query_ids` over the list ``ix`` (``base``: all its ids;
        ``hash_prefix``: its items' hash keys but the id), with the items containing ``text``
        (:mod:`backend.store.textindex`) as one more set."""
        owned = ""
        if text is not None:
            q, tokens, check = textindex.query_tokens(text)
            found, mine = self._text_query(keys=[], args=[
                ix.prefix, self.k.tmp(), q, "1" if check else "", hash_prefix, base, *tokens])
            if not found:
                return IdPage([], 0, None)
            sets = [*sets, found]
            owned = found if int(mine) else ""
        try:
            return index.query_ids(self.r, ix, self.k.tmp, sets, where, sort, desc, limit,
                                   cursor, base, sort_fallback)
        finally:
            if owned:
                self.r.delete(owned)

    def _hashes(self, keys: Iterable[str]) -> list[dict[str, str]]:
        """HGETALL of every key, in one round trip (``{}`` for a missing one)."""
        with self.r.pipeline(transaction=False) as p:
            for key in keys:
                p.hgetall(key)
            return list(p.execute())
