"""A whole sweep in one process (the CLI and the benchmarks): pretrain groups first, then
every run of the group; a failed run does not stop the others."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tscnc.errors import Cancelled, TSCNCError
from tscnc.pipeline.device import resolve_device
from tscnc.pipeline.stages import complete_run, pretrain
from tscnc.pipeline.training import Data, Emit, ShouldCancel, never, no_emit
from tscnc.records import FailureCategory, LogEvent, RunResult
from tscnc.spec import Method, RunSpec, SweepSpec


@dataclass
class RunError:
    run: str
    method: Method
    sparsity: float
    seed: int
    category: FailureCategory
    message: str


@dataclass
class SweepOutcome:
    results: list[RunResult] = field(default_factory=list)
    failures: list[RunError] = field(default_factory=list)


def run_sweep(spec: SweepSpec, artifacts: Path, *, emit: Emit = no_emit,
              should_cancel: ShouldCancel = never, device: torch.device | None = None,
              on_result: Callable[[RunResult], None] | None = None,
              fresh: bool = False, data_: Data | None = None) -> SweepOutcome:
    """Run every run of ``spec`` here, pretrain groups first; a failed run does not stop others.

    Run ids are the runs' keys (``RunSpec.key``). Cancellation propagates as ``Cancelled``.
    ``fresh``: start over wherever a checkpoint is stale (see :func:`complete_run`).
    ``data_``: the prepared data every stage reads (e.g. a validation split); by default the
    spec's dataset is loaded (:meth:`Data.load`).
    """
    device = device or resolve_device(spec.training.device)
    data_ = data_ or Data.load(spec)
    outcome = SweepOutcome()

    def failed(runs: list[RunSpec], e: TSCNCError) -> None:
        if isinstance(e, Cancelled):
            raise e
        for r in runs:
            outcome.failures.append(RunError(r.key, r.method, r.sparsity, r.seed,
                                             e.category, e.message))
            emit(LogEvent(run=r.key, level="error", message=e.message))

    for runs in spec.pretrain_groups().values():
        ids = [r.key for r in runs]
        try:
            pretrain(spec, runs[0], ids, artifacts, emit=emit, should_cancel=should_cancel,
                     device=device, data_=data_, fresh=fresh)
        except TSCNCError as e:
            failed(runs, e)
            continue
        for r in runs:
            try:
                res = complete_run(spec, r, r.key, artifacts, emit=emit,
                                   should_cancel=should_cancel, device=device, data_=data_,
                                   fresh=fresh)
            except TSCNCError as e:
                failed([r], e)
                continue
            outcome.results.append(res)
            if on_result:
                on_result(res)
    return outcome
