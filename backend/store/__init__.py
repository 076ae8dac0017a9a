"""The data layer: every Redis key name and the event encoding live in this package
(DESIGN §2.4, §4).

Torch-free; used by the API (:class:`Store` in the request thread pool, :class:`AsyncStore` for
the Server-Sent Event streams) and by the Celery workers (:class:`Store`).

Modules, by responsibility:

================  ===========================================================================
``keys``          every key name (:class:`Keys`) and the layout of the keys
``codec``         how events and records are stored (hash values, stream entries)
``records``       the stored records: :mod:`tscnc.resources`' models plus store-only fields
``scripts``       the Lua scripts (atomic status changes, event appends, updates, claims)
``progress``      a run's progress: stage offsets and the fields each event implies
``runs``          run reads, the runs list, events, results
``lifecycle``     run writes: status changes, claims, take-overs, retries, events, results
``sweeps``        sweep creation (idempotent), reads, summaries, deletion
``access``        API tokens and shared dashboards
``workers``       heartbeats and Celery's queue depths
``aio``           :class:`AsyncStore`, the async reads of the event streams
``index``         the runs list's indexes, maintained on write
``sweepindex``    the sweeps list's indexes, maintained on write
``textindex``     the word index of both lists' free text, maintained on write
``retention``     the retention of finished runs' event streams
``search``        the list filters of the API (query parameters)
================  ===========================================================================

Status changes, event appends with their derived run fields, and claims are Lua scripts, so
each is atomic and the sync and async clients share one implementation.

Example::

    >>> store = Store.from_url("redis://127.0.0.1:6379/0")          # doctest: +SKIP
    >>> sweep, created = store.create_sweep(preset("digits-quick"), owner="tok1")  # doctest: +SKIP
    >>> store.set_status(sweep.run_ids[0], RunStatus.running, worker="w1", device="cpu")  # doctest: +SKIP
    True
"""

from __future__ import annotations

from backend.store.access import AccessMixin
from backend.store.aio import AsyncStore
from backend.store.codec import StreamEntry, decode_event, encode_event
from backend.store.keys import CELERY_QUEUES, Keys, hash_secret
from backend.store.lifecycle import LifecycleMixin
from backend.store.progress import derived_fields, stage_offsets
from backend.store.records import (
    RUN_SORT_FIELDS,
    DashboardRecord,
    RunRecord,
    SweepRecord,
    SweepSummary,
    TokenRecord,
    WorkerRecord,
)
from backend.store.scripts import ALLOWED_FROM
from backend.store.sweeps import IdempotencyConflict, SweepsMixin
from backend.store.workers import WorkersMixin

__all__ = [
    "ALLOWED_FROM",
    "CELERY_QUEUES",
    "RUN_SORT_FIELDS",
    "AsyncStore",
    "DashboardRecord",
    "IdempotencyConflict",
    "Keys",
    "RunRecord",
    "Store",
    "StreamEntry",
    "SweepRecord",
    "SweepSummary",
    "TokenRecord",
    "WorkerRecord",
    "decode_event",
    "derived_fields",
    "encode_event",
    "hash_secret",
    "stage_offsets",
]


class Store(SweepsMixin, LifecycleMixin, AccessMixin, WorkersMixin):
    """Synchronous data layer (redis-py). Thread-safe: one connection pool per instance.

    One class made of one part per aggregate (sweeps, runs and their lifecycle, tokens and
    dashboards, workers), all sharing :class:`backend.store.base.StoreBase`'s connection."""
