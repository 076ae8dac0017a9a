"""The work queues: one per device kind a worker serves (torch-, celery- and redis-free, so the
API, the launcher, the data layer and the worker share this one definition).

A sweep's runs go to the queue :func:`worker.dispatch.choose_queue` picks from its
``training.device``; ``tscnc worker --queue`` and ``TSCNC_QUEUE`` name the queue a worker
serves (or ``auto``: ``gpu`` on a CUDA machine, else ``cpu``)::

    >>> [q.value for q in Queue]
    ['gpu', 'cpu']
"""

from __future__ import annotations

from enum import StrEnum


class Queue(StrEnum):
    gpu = "gpu"
    cpu = "cpu"
