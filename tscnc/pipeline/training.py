"""The resumable training stage shared by pretrain, prune and finetune: the data it reads, the
optimizer and schedule, one step of the adversarial objective plus constraints, and the epoch
loop with its checkpoints, events and cancellation."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tscnc import adversarial, code_version, constraints, data, evaluation, metrics, pruning
from tscnc.errors import Cancelled, Diverged, OutOfMemory
from tscnc.layers import apply_masks_, iter_prunable
from tscnc.pipeline.checkpoints import (
    CHECKPOINT_NAME,
    discard_checkpoints,
    latest_epoch,
    load_checkpoint,
    save_atomic,
    stale_warning,
    staleness,
)
from tscnc.pipeline.device import DeviceOptions
from tscnc.records import (
    EpochEvent,
    Event,
    LogEvent,
    ProgressEvent,
    Stage,
    StageFinished,
    StageStarted,
)
from tscnc.spec import CONSTRAINED, USES_CNC, USES_TSC, Method, Optimizer, Schedule, SweepSpec

Emit = Callable[[Event], None]
ShouldCancel = Callable[[], bool]

PROGRESS_INTERVAL_S = 1.0


def no_emit(_: Event) -> None:
    return None


def never() -> bool:
    return False


# ---- data -----------------------------------------------------------------------------

@dataclass
class Data:
    """Everything the stages read: a training set and fixed held-out tensors."""

    train: Dataset[Any]
    test_x: torch.Tensor
    test_y: torch.Tensor
    monitor_x: torch.Tensor
    monitor_y: torch.Tensor

    @classmethod
    def load(cls, spec: SweepSpec) -> Data:
        train, test = data.load_data(spec.dataset)
        x, y = data.to_tensors(test, limit=spec.evaluation.examples)
        # The monitor slice is the head of the evaluation set: cheap, fixed and held out.
        m = min(spec.training.monitor_examples, len(y))
        return cls(train=train, test_x=x, test_y=y, monitor_x=x[:m], monitor_y=y[:m])


def _loader(ds: Dataset[Any], spec: SweepSpec, seed: int) -> DataLoader[Any]:
    return data.train_loader(ds, spec.training.batch_size, seed,
                             num_workers=spec.training.num_workers)


def _epoch_seed(seed: int, stage: Stage, epoch: int) -> int:
    # Same seed ⇒ same batches and attack noise per epoch, whether or not the stage resumed.
    return (seed * 1_000_003 + list(Stage).index(stage) * 10_007 + epoch) % (2**31 - 1)


# ---- the generic training stage -------------------------------------------------------

@dataclass
class StageConfig:
    stage: Stage
    epochs: int
    lr: float
    params: Callable[[nn.Module], Iterable[nn.Parameter]]
    # Called on a fresh model before a checkpoint is loaded (e.g. to create hydra scores).
    prepare: Callable[[nn.Module], None] = lambda m: None
    run_ids: list[str] = field(default_factory=list)
    # The artifact this stage starts from: a checkpoint older than it is stale.
    parent: Path | None = None
    # Discard stale checkpoints (another build, or older than the parent) instead of reusing.
    fresh: bool = False


def no_decay_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters weight decay must not touch: HYDRA scores (decay would pull every |s| to 0
    and blur the top-k) and the gates' log α (decay pulls it to 0, i.e. every gate to 0.5)."""
    out = pruning.score_parameters(model)
    for layer in iter_prunable(model):
        if layer.gate is not None:
            out.extend(layer.gate.parameters())
    return out


def build_optimizer(spec: SweepSpec, model: nn.Module, params: Iterable[nn.Parameter],
                    lr: float) -> torch.optim.Optimizer:
    """SGD (momentum) or Adam over ``params`` of ``model``: ``training.weight_decay`` on all of
    them except :func:`no_decay_parameters`, which form a second group with weight decay 0."""
    t = spec.training
    skip = {id(p) for p in no_decay_parameters(model)}
    params = list(params)
    groups = [{"params": [p for p in params if id(p) not in skip],
               "weight_decay": t.weight_decay},
              {"params": [p for p in params if id(p) in skip], "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if t.optimizer == Optimizer.adam:
        return torch.optim.Adam(groups, lr=lr)
    return torch.optim.SGD(groups, lr=lr, momentum=t.momentum)


def _lr_at(spec: SweepSpec, base: float, epoch: int, epochs: int) -> float:
    """Learning rate of (1-based) ``epoch``: cosine from ``base`` to 0, or constant."""
    if spec.training.schedule == Schedule.constant or epochs <= 1:
        return base
    return 0.5 * base * (1 + math.cos(math.pi * (epoch - 1) / epochs))


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, spec: SweepSpec,
               method: Method, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               opts: DeviceOptions, where: str = "training",
               step: int = 0) -> tuple[torch.Tensor, dict[str, float]]:
    """One optimizer step on the batch ``(x, y)`` (already on the device): the adversarial
    objective of ``spec`` plus the constraints ``method`` trains with (DESIGN §3.4);
    ``step`` (0-based, over the stage) tells the CNC's ``cnc_every`` which steps compute it.

    Returns the adversarial loss (detached) and the penalty parts; raises
    :class:`~tscnc.errors.Diverged` (naming ``where``) when the loss is not finite.
    """
    adv = spec.adversarial
    loss, _ = adversarial.adversarial_loss(
        model, opts.batch(x), y, objective=adv.objective, epsilon=spec.epsilon,
        step_size=spec.step_size, steps=adv.steps, beta=adv.beta, amp=opts.amp)
    reg, parts = constraints.regularization(
        model, spec.constraints, use_tsc=method in USES_TSC,
        use_cnc=method in USES_CNC, use_lcc=method in CONSTRAINED, step=step)
    full = loss + reg
    if not torch.isfinite(full):
        raise Diverged(f"loss became {full.item()} in {where}; lower the learning rate or the "
                       "constraint weights")
    opt.zero_grad(set_to_none=True)
    scaler.scale(full).backward()
    scaler.step(opt)
    scaler.update()
    return loss.detach(), parts


class _Reporter:
    """Fans events out to every run sharing a stage and throttles progress events."""

    def __init__(self, emit: Emit, run_ids: list[str]) -> None:
        self.emit, self.run_ids, self._last = emit, run_ids, 0.0

    @property
    def run(self) -> str:
        """The run id events are built with; :meth:`send` copies them to the others."""
        return self.run_ids[0]

    def send(self, event: Event) -> None:
        for rid in self.run_ids:
            self.emit(event if rid == event.run else event.model_copy(update={"run": rid}))

    def progress(self, event: Event) -> None:
        now = time.monotonic()
        if now - self._last >= PROGRESS_INTERVAL_S:
            self._last = now
            self.send(event)


def train_stage(model: nn.Module, cfg: StageConfig, spec: SweepSpec, seed: int,
                stage_dir: Path, data_: Data, device: torch.device, emit: Emit,
                should_cancel: ShouldCancel, method: Method) -> nn.Module:
    """Run one resumable training stage; returns the model after its last epoch."""
    rep = _Reporter(emit, cfg.run_ids)
    cfg.prepare(model)
    opts = DeviceOptions.of(spec, device)
    opts.model(model)
    opt = build_optimizer(spec, model, cfg.params(model), cfg.lr)
    scaler = opts.scaler()
    done = latest_epoch(stage_dir)
    state: dict[str, Any] = {}
    if done:
        path = stage_dir / CHECKPOINT_NAME.format(done)
        state = load_checkpoint(path, device)
        reason = staleness(path, state.get("code"), cfg.parent)
        if reason:
            stale_warning(reason, cfg.fresh, cfg.run_ids, emit)
            if cfg.fresh:
                discard_checkpoints(stage_dir)
                done, state = 0, {}
    if done:
        model.load_state_dict(state["model"])
        try:
            opt.load_state_dict(state["optimizer"])
        except ValueError as e:   # parameter groups of another build
            rep.send(LogEvent(run=rep.run, level="warning",
                              message=f"optimizer state not restored ({e}); continuing from "
                                      "the checkpoint's weights with a new optimizer state"))
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
    rep.send(StageStarted(run=rep.run, stage=cfg.stage, epochs=cfg.epochs,
                          resumed_from_epoch=done))
    t0 = time.monotonic()
    adv = spec.adversarial
    batches = len(_loader(data_.train, spec, 0))
    for epoch in range(done + 1, cfg.epochs + 1):
        torch.manual_seed(_epoch_seed(seed, cfg.stage, epoch))
        lr = _lr_at(spec, cfg.lr, epoch, cfg.epochs)
        for group in opt.param_groups:
            group["lr"] = lr
        model.train()
        total, count = 0.0, 0
        parts_sum: dict[str, float] = {}
        for i, (x, y) in enumerate(_loader(data_.train, spec, _epoch_seed(seed, cfg.stage, epoch))):
            if should_cancel():
                raise Cancelled(f"cancelled during {cfg.stage.value} epoch {epoch} "
                                f"(last checkpoint: epoch {epoch - 1})")
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            try:
                loss, parts = train_step(
                    model, x, y, spec, method, opt, scaler, opts,
                    where=f"{cfg.stage.value} epoch {epoch} batch {i + 1} (lr {lr:g})",
                    step=(epoch - 1) * batches + i)
            except torch.OutOfMemoryError as e:
                raise OutOfMemory(f"out of memory in {cfg.stage.value} epoch {epoch}: "
                                  f"lower training.batch_size ({e})") from e
            apply_masks_(model)
            total += float(loss) * len(y)
            count += len(y)
            for k, v in parts.items():
                parts_sum[k] = parts_sum.get(k, 0.0) + v * len(y)
            rep.progress(ProgressEvent(
                run=rep.run, stage=cfg.stage, epoch=epoch, batch=i + 1, batches=batches,
                progress=((epoch - 1) * batches + i + 1) / max(1, cfg.epochs * batches)))
        clean, robust = evaluation.monitor_accuracy(
            model, data_.monitor_x, data_.monitor_y, epsilon=spec.epsilon,
            steps=adv.steps, step_size=spec.step_size)
        # Emit before saving: a crash in between repeats the epoch on resume, and the store
        # drops the repeated (run, stage, epoch) event; the other order could lose the event.
        rep.send(EpochEvent(
            run=rep.run, stage=cfg.stage, epoch=epoch, epochs=cfg.epochs,
            loss=total / max(1, count), clean_accuracy=clean, robust_accuracy=robust, lr=lr,
            sparsity=metrics.sparsity(model), condition_numbers=metrics.condition_numbers(model),
            penalties={k: v / max(1, count) for k, v in parts_sum.items()}))
        save_atomic(stage_dir / CHECKPOINT_NAME.format(epoch),
              {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
               "scaler": scaler.state_dict(), "code": code_version()})
        # Older epoch checkpoints are not needed to resume; keep only the latest.
        for p in stage_dir.glob("epoch_*.pt"):
            if p.name != CHECKPOINT_NAME.format(epoch):
                p.unlink(missing_ok=True)
    rep.send(StageFinished(run=rep.run, stage=cfg.stage, seconds=time.monotonic() - t0))
    return model

