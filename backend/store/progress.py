"""A run's progress: the epochs before each stage, and the run fields each event implies."""

from __future__ import annotations

from typing import Any

from backend.store.codec import median
from backend.store.records import RunRecord
from tscnc.records import (
    EpochEvent,
    EvaluationEvent,
    Event,
    ProgressEvent,
    Stage,
    StageFinished,
    StageStarted,
)
from tscnc.spec import Method, SweepSpec


def stage_offsets(spec: SweepSpec, method: Method) -> dict[str, int]:
    """Epochs of a run done before each stage starts (for the run's progress)."""
    total = spec.total_epochs(method)
    t = spec.training
    finetune_start = total - t.finetune_epochs if method != Method.dense else total
    return {Stage.pretrain.value: 0, Stage.prune.value: t.pretrain_epochs,
            Stage.finetune.value: finetune_start, Stage.evaluate.value: total}


def derived_fields(event: Event, run: RunRecord) -> dict[str, Any]:
    """Run fields an event implies (stage, epoch, progress, latest metrics, checkpoint)."""
    total = run.total_epochs

    def frac(stage: Stage, done: float) -> float:
        if total <= 0:
            return 0.0
        return min(1.0, max(0.0, (run.offsets.get(stage.value, 0) + done) / total))

    f: dict[str, Any] = {}
    if isinstance(event, StageStarted):
        f.update(stage=event.stage, epoch=event.resumed_from_epoch,
                 progress=frac(event.stage, event.resumed_from_epoch))
    elif isinstance(event, EpochEvent):
        # Monitor values go to their own fields: the result columns (and sorting by them)
        # hold evaluated numbers only.
        f.update(stage=event.stage, epoch=event.epoch, progress=frac(event.stage, event.epoch),
                 monitor_stage=event.stage, monitor_epoch=event.epoch,
                 monitor_clean_accuracy=event.clean_accuracy,
                 monitor_robust_accuracy=event.robust_accuracy,
                 monitor_kappa_median=median(event.condition_numbers.values()),
                 monitor_sparsity=event.sparsity)
    elif isinstance(event, ProgressEvent):
        done = event.epoch - 1 + (event.batch / event.batches if event.batches else 0.0)
        f.update(stage=event.stage, epoch=event.epoch - 1, progress=frac(event.stage, done))
    elif isinstance(event, EvaluationEvent):
        ev = event.evaluation
        f.update(stage=Stage.evaluate, clean_accuracy=ev.clean_accuracy)
        if ev.attacks:
            f["robust_accuracy"] = min(a.accuracy for a in ev.attacks)
        if ev.spectra:
            f["kappa_median"] = median(s.condition_number for s in ev.spectra)
    elif isinstance(event, StageFinished) and event.checkpoint:
        f["checkpoint"] = event.checkpoint
    return f

