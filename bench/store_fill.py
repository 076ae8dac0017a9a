"""Filling a store with benchmark runs, shared by ``bench/load.py`` and ``bench/runs_table.py``:
sweeps of the five pruning methods over up to 50 sparsities, and a fixed mix of run states
with metrics, written through the data layer (``backend.store``)."""

from __future__ import annotations

from typing import Any

from tscnc.records import EpochEvent, RunStatus, Stage
from tscnc.spec import Method, SweepSpec

METHODS = [Method.lwm, Method.hydra, Method.tsc, Method.cnc, Method.tscnc]


def bench_spec(name: str, sparsities: int, seeds: int) -> SweepSpec:
    """A sweep of :data:`METHODS` × ``sparsities`` sparsities from 0.5 (≤ 50) × ``seeds`` seeds."""
    return SweepSpec(name=name, methods=METHODS,
                     sparsities=[round(0.5 + 0.0098 * i, 4) for i in range(sparsities)],
                     seeds=list(range(seeds)))


def populate(store: Any, run_ids: list[str], *, annotate_every: int = 0,
             release: bool = False) -> None:
    """Give ``run_ids`` a mix of states: of every ten, five stay queued, five are claimed and
    get a pretrain epoch with metrics, then three succeed, one fails and one stays running.
    ``annotate_every``: tag and note every n-th run (0: none); ``release``: release each claim."""
    for i, rid in enumerate(run_ids):
        kind = i % 10
        if kind >= 5:
            continue                                    # half stay queued
        store.claim(rid, "bench-worker", "cpu")
        store.record_event(rid, EpochEvent(
            run=rid, stage=Stage.pretrain, epoch=1, epochs=10, loss=1.0,
            clean_accuracy=0.9 - 0.001 * (i % 100), robust_accuracy=0.5, lr=0.1,
            sparsity=0.0, condition_numbers={"fc1": 10.0 + i % 7, "fc2": 20.0}))
        if annotate_every and i % annotate_every == 0:
            store.annotate("run", rid, tags=["bench"], notes=f"note {i}")
        if kind < 3:
            store.set_status(rid, RunStatus.succeeded)
        elif kind == 3:
            store.set_status(rid, RunStatus.failed, category="diverged", message="bench")
        if release:
            store.release(rid)
