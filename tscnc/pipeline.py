"""The TSCNC pipeline: pretrain → prune → finetune → evaluate (DESIGN §3.4).

Two levels of entry point:

- stage functions used by the job service, one Celery task each: :func:`pretrain` (shared by all
  runs of a pretrain group, see :attr:`tscnc.spec.RunSpec.pretrain_key`) and :func:`complete_run`
  (prune + finetune + evaluate one run, or evaluate a dense run);
- :func:`run_sweep`, which runs a whole sweep in this process (the CLI and the benchmarks).

Every stage writes a checkpoint at the end of every epoch into the artifacts directory and, when
called again, resumes after the last one; with the per-epoch seeding below a resumed stage trains
exactly the epochs that were missing, each once, and reaches the same weights on the same machine.
``should_cancel`` is checked between batches: the stage stops, keeping its last checkpoint, and
raises :class:`tscnc.errors.Cancelled`. A NaN/inf loss raises :class:`tscnc.errors.Diverged`.

Progress is reported through ``emit`` with the typed events of :mod:`tscnc.records`.

GPU options (:class:`DeviceOptions`): ``training.amp`` and ``training.channels_last`` take effect
on CUDA only and change nothing elsewhere.

Example::

    >>> from tscnc.spec import preset
    >>> outcome = run_sweep(preset("digits-quick"), Path("out"))      # doctest: +SKIP
    >>> outcome.results[0].clean_accuracy                              # doctest: +SKIP
    0.97
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tscnc import adversarial, code_version, constraints, data, evaluation, metrics, pruning
from tscnc.errors import Cancelled, Diverged, OutOfMemory, StorageError, TSCNCError
from tscnc.layers import apply_masks_, iter_prunable
from tscnc.models import build_model
from tscnc.records import (
    ConditionSummary,
    EpochEvent,
    Evaluation,
    EvaluationEvent,
    Event,
    FailureCategory,
    LogEvent,
    ProgressEvent,
    RunResult,
    Stage,
    StageFinished,
    StageStarted,
)
from tscnc.spec import (
    CONSTRAINED,
    USES_CNC,
    USES_TSC,
    Amp,
    DeviceKind,
    Method,
    Optimizer,
    RunSpec,
    Schedule,
    SweepSpec,
    TSCVariant,
)

log = logging.getLogger(__name__)

Emit = Callable[[Event], None]
ShouldCancel = Callable[[], bool]

CHECKPOINT_NAME = "epoch_{:04d}.pt"
FINAL_NAME = "final.pt"
PROGRESS_INTERVAL_S = 1.0


def _no_emit(_: Event) -> None:
    return None


def _never() -> bool:
    return False


def resolve_device(kind: DeviceKind | str = DeviceKind.auto) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an input error."""
    kind = DeviceKind(kind)
    if kind == DeviceKind.cuda and not torch.cuda.is_available():
        from tscnc.errors import InvalidInput

        raise InvalidInput("training.device is 'cuda' but no CUDA device is available")
    if kind == DeviceKind.cpu or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


@dataclass(frozen=True)
class DeviceOptions:
    """What ``training.amp`` and ``training.channels_last`` mean on a device.

    On CUDA, ``amp`` is the autocast dtype of the training step's forwards (``bf16``, or
    ``fp16`` whose loss is also scaled by a :class:`torch.amp.GradScaler`) and
    ``memory_format`` is ``channels_last`` for the model's 4-D weights and the 4-D batches. On
    any other device both are no-ops. The constraints are computed outside autocast (float32).
    Evaluation uses the memory format but never autocast: reported robust accuracies come from
    full-precision attack gradients whatever the training precision.

    Example::

        >>> DeviceOptions.of(preset("cifar10-vgg16"), torch.device("cpu"))
        DeviceOptions(amp=None, memory_format=torch.contiguous_format)
    """

    amp: torch.dtype | None = None
    memory_format: torch.memory_format = torch.contiguous_format

    @classmethod
    def of(cls, spec: SweepSpec, device: torch.device) -> DeviceOptions:
        if device.type != "cuda":
            return cls()
        amp = {Amp.bf16: torch.bfloat16, Amp.fp16: torch.float16}.get(spec.training.amp)
        fmt = torch.channels_last if spec.training.channels_last else torch.contiguous_format
        return cls(amp, fmt)

    def model(self, model: nn.Module) -> nn.Module:
        """Move ``model``'s 4-D parameters and buffers to the memory format (in place)."""
        if self.memory_format == torch.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=self.memory_format) if x.dim() == 4 else x

    def scaler(self) -> torch.amp.GradScaler:
        """The loss scaler of fp16 training (disabled, a pass-through, otherwise)."""
        return torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)


# ---- artifacts layout -----------------------------------------------------------------

def pretrain_dir(artifacts: Path, run: RunSpec) -> Path:
    return artifacts / "pretrain" / run.pretrain_key


def run_dir(artifacts: Path, run_id: str) -> Path:
    return artifacts / "runs" / run_id


# ---- checkpoints ----------------------------------------------------------------------

def _save(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically: serialise in memory, write a hidden temporary
    file in the same directory, fsync it, rename it over ``path``. A crash or a failed write
    (disk full, file size limit) never leaves a partial checkpoint: the temporary file is
    removed, ``path`` keeps its previous content. Storage failures raise :class:`StorageError`
    naming the path (failure category ``storage``)."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getbuffer()
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise StorageError(f"cannot write the checkpoint {path}: "
                           f"{e.strerror or type(e).__name__}") from e
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _load(path: Path, device: torch.device) -> dict[str, Any]:
    return torch.load(path, map_location=device, weights_only=True)


def _latest_epoch(stage_dir: Path) -> int:
    epochs = [int(p.stem.split("_")[1]) for p in stage_dir.glob("epoch_*.pt")]
    return max(epochs, default=0)


def _model_meta(spec: SweepSpec, run: RunSpec) -> str:
    return json.dumps({"spec": spec.model_dump(mode="json"), "run": run.model_dump(mode="json")})


def build_run_model(spec: SweepSpec, run: RunSpec, device: torch.device) -> nn.Module:
    """The model of ``spec`` with the layer wrappers ``run``'s method trains with."""
    model = build_model(spec.model, spec.dataset)
    if run.method in USES_TSC and spec.constraints.tsc_variant == TSCVariant.gates:
        constraints.attach_gates(model)
    return model.to(device)


def save_final(path: Path, model: nn.Module, spec: SweepSpec, run: RunSpec) -> None:
    _save(path, {"model": model.state_dict(), "meta": _model_meta(spec, run),
                 "code": code_version()})


# ---- which build wrote a checkpoint ---------------------------------------------------

def _describe(code: dict[str, str]) -> str:
    if not code:
        return "an unrecorded older build"
    rev = code.get("git")
    return f"tscnc {code.get('tscnc', '?')}" + (f" (git {rev[:12]})" if rev else "")


def _staleness(path: Path, recorded: Any, parent: Path | None) -> str | None:
    """Why the checkpoint at ``path`` should not be reused silently, or None.

    Stale when it was written by another build (``recorded`` ≠ :func:`tscnc.code_version`), or
    when it is older than ``parent``, the artifact it was trained from (a pretrain or prune
    redone since)."""
    recorded = recorded if isinstance(recorded, dict) else {}
    if recorded != code_version():
        return f"{path} was written by {_describe(recorded)}; this is {_describe(code_version())}"
    if parent is not None and parent.exists() and \
            path.stat().st_mtime_ns < parent.stat().st_mtime_ns:
        return f"{path} predates {parent}, which it was trained from"
    return None


def _stale_warning(reason: str, fresh: bool, run_ids: list[str], emit: Emit) -> None:
    """Log and emit (as a warning event to every run) what happens to a stale checkpoint."""
    action = ("starting over (fresh)" if fresh else
              "reusing it; run again with --fresh (CLI) or retry with {\"fresh\": true} (API) "
              "to start over")
    message = f"{reason}: {action}"
    log.warning(message)
    for rid in run_ids:
        emit(LogEvent(run=rid, level="warning", message=message))


def _discard_checkpoints(stage_dir: Path) -> None:
    for p in [*stage_dir.glob("epoch_*.pt"), stage_dir / FINAL_NAME]:
        p.unlink(missing_ok=True)


def load_model(checkpoint: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild a (pruned) model from a final checkpoint, loaded with ``weights_only=True``."""
    device = torch.device(device)
    payload = _load(Path(checkpoint), device)
    meta = json.loads(payload["meta"])
    spec = SweepSpec.model_validate(meta["spec"])
    run = RunSpec.model_validate(meta["run"])
    model = build_run_model(spec, run, device)
    model.load_state_dict(payload["model"])
    model.eval()
    return model


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
        train, test = data.load_datasets(spec.dataset)
        x, y = data.to_tensors(test, limit=spec.evaluation.examples)
        # The monitor slice is the head of the evaluation set: cheap, fixed and held out.
        m = min(spec.training.monitor_examples, len(y))
        return cls(train=train, test_x=x, test_y=y, monitor_x=x[:m], monitor_y=y[:m])


def _loader(ds: Dataset[Any], spec: SweepSpec, seed: int) -> DataLoader[Any]:
    g = torch.Generator().manual_seed(seed)
    bs = spec.training.batch_size
    # A last batch of one example breaks BatchNorm in training mode: drop only that one.
    return DataLoader(ds, batch_size=bs, shuffle=True, generator=g,
                      num_workers=spec.training.num_workers,
                      drop_last=len(ds) % bs == 1)  # type: ignore[arg-type]


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
               opts: DeviceOptions, where: str = "training") -> tuple[torch.Tensor,
                                                                      dict[str, float]]:
    """One optimizer step on the batch ``(x, y)`` (already on the device): the adversarial
    objective of ``spec`` plus the constraints ``method`` trains with (DESIGN §3.4).

    Returns the adversarial loss (detached) and the penalty parts; raises
    :class:`~tscnc.errors.Diverged` (naming ``where``) when the loss is not finite.
    """
    adv = spec.adversarial
    loss, _ = adversarial.adversarial_loss(
        model, opts.batch(x), y, objective=adv.objective, epsilon=spec.epsilon,
        step_size=spec.step_size, steps=adv.steps, beta=adv.beta, amp=opts.amp)
    reg, parts = constraints.regularization(
        model, spec.constraints, use_tsc=method in USES_TSC,
        use_cnc=method in USES_CNC, use_lcc=method in CONSTRAINED)
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
    done = _latest_epoch(stage_dir)
    state: dict[str, Any] = {}
    if done:
        path = stage_dir / CHECKPOINT_NAME.format(done)
        state = _load(path, device)
        reason = _staleness(path, state.get("code"), cfg.parent)
        if reason:
            _stale_warning(reason, cfg.fresh, cfg.run_ids, emit)
            if cfg.fresh:
                _discard_checkpoints(stage_dir)
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
                    where=f"{cfg.stage.value} epoch {epoch} batch {i + 1} (lr {lr:g})")
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
        _save(stage_dir / CHECKPOINT_NAME.format(epoch),
              {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
               "scaler": scaler.state_dict(), "code": code_version()})
        # Older epoch checkpoints are not needed to resume; keep only the latest.
        for p in stage_dir.glob("epoch_*.pt"):
            if p.name != CHECKPOINT_NAME.format(epoch):
                p.unlink(missing_ok=True)
    rep.send(StageFinished(run=rep.run, stage=cfg.stage, seconds=time.monotonic() - t0))
    return model


# ---- stages ---------------------------------------------------------------------------

def _all_params(model: nn.Module) -> Iterable[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def pretrain(spec: SweepSpec, run: RunSpec, run_ids: list[str], artifacts: Path, *,
             emit: Emit = _no_emit, should_cancel: ShouldCancel = _never,
             device: torch.device | None = None, data_: Data | None = None,
             fresh: bool = False) -> Path:
    """Dense (constrained) adversarial pretraining shared by ``run``'s pretrain group.

    Events go to every id in ``run_ids``. Returns the path of the pretrained weights; when that
    file already exists the stage is complete and nothing is trained again — unless it was
    written by another build (:func:`tscnc.code_version`): then a warning is logged and sent
    as an event, and with ``fresh`` the stage starts over.
    """
    spec = spec.for_run(run)   # the run's grid values applied
    device = device or resolve_device(spec.training.device)
    out = pretrain_dir(artifacts, run)
    final = out / FINAL_NAME
    if final.exists():
        reason = _staleness(final, _load(final, torch.device("cpu")).get("code"), None)
        if not reason:
            return final
        _stale_warning(reason, fresh, run_ids, emit)
        if not fresh:
            return final
        _discard_checkpoints(out)
    data_ = data_ or Data.load(spec)
    torch.manual_seed(run.seed)   # identical initial weights for every run of the group
    model = build_run_model(spec, run, device)
    cfg = StageConfig(Stage.pretrain, spec.training.pretrain_epochs, spec.training.lr,
                      params=_all_params, run_ids=run_ids, fresh=fresh)
    train_stage(model, cfg, spec, run.seed, out, data_, device, emit, should_cancel, run.method)
    save_final(final, model, spec, run)
    return final


def complete_run(spec: SweepSpec, run: RunSpec, run_id: str, artifacts: Path, *,
                 emit: Emit = _no_emit, should_cancel: ShouldCancel = _never,
                 device: torch.device | None = None, data_: Data | None = None,
                 fresh: bool = False) -> RunResult:
    """Prune and finetune one run from its group's pretrained weights, then evaluate it.

    Runs the (resumable) pretrain first if its weights are missing, e.g. on a retry. A
    checkpoint written by another build, or older than the stage it was trained from, is
    reused with a warning (log and event), or discarded with ``fresh`` (that stage and the
    ones after it start over).
    """
    t0 = time.monotonic()
    spec = spec.for_run(run)   # the run's grid values applied
    device = device or resolve_device(spec.training.device)
    data_ = data_ or Data.load(spec)
    pre = pretrain(spec, run, [run_id], artifacts, emit=emit, should_cancel=should_cancel,
                   device=device, data_=data_, fresh=fresh)
    out = run_dir(artifacts, run_id)
    final = out / FINAL_NAME
    model = build_run_model(spec, run, device)
    model.load_state_dict(_load(pre, device)["model"])
    if run.method != Method.dense:
        parent = _prune(model, spec, run, run_id, out, data_, device, emit, should_cancel,
                        parent=pre, fresh=fresh)
        cfg = StageConfig(Stage.finetune, spec.training.finetune_epochs,
                          spec.training.finetune_lr, params=_all_params, run_ids=[run_id],
                          parent=parent, fresh=fresh)
        train_stage(model, cfg, spec, run.seed, out / "finetune", data_, device, emit,
                    should_cancel, run.method)
    save_final(final, model, spec, run)
    return _evaluate(model, spec, run, run_id, final, data_, device, emit, t0)


def _prune(model: nn.Module, spec: SweepSpec, run: RunSpec, run_id: str, out: Path,
           data_: Data, device: torch.device, emit: Emit, should_cancel: ShouldCancel,
           parent: Path | None = None, fresh: bool = False) -> Path | None:
    """Prune ``model`` in place; returns the artifact the finetune starts from (the prune
    stage's last checkpoint, or ``parent`` for the one-shot lwm)."""
    skip = tuple(spec.pruning.skip_layers)
    if run.method == Method.lwm:
        emit(StageStarted(run=run_id, stage=Stage.prune, epochs=0))
        t0 = time.monotonic()
        pruning.lwm_prune_(model, run.sparsity, skip=skip)
        emit(StageFinished(run=run_id, stage=Stage.prune, seconds=time.monotonic() - t0))
        return parent

    def prepare(m: nn.Module) -> None:
        pruning.init_scores_(m, run.sparsity, spec.pruning.score_init_scale, skip=skip)

    cfg = StageConfig(Stage.prune, spec.training.prune_epochs, spec.training.prune_lr,
                      params=pruning.prune_stage_parameters, prepare=prepare,
                      run_ids=[run_id], parent=parent, fresh=fresh)
    train_stage(model, cfg, spec, run.seed, out / "prune", data_, device, emit, should_cancel,
                run.method)
    pruning.finalize_scores_(model)
    last = out / "prune" / CHECKPOINT_NAME.format(_latest_epoch(out / "prune"))
    return last if last.exists() else parent


def _versions() -> dict[str, str]:
    import sklearn
    import torchattacks
    import torchvision

    from tscnc import __version__

    return {**code_version(), "tscnc": __version__, "torch": torch.__version__,
            "torchvision": torchvision.__version__, "torchattacks": torchattacks.__version__,
            "scikit-learn": sklearn.__version__, "python": platform.python_version()}


def _evaluate(model: nn.Module, spec: SweepSpec, run: RunSpec, run_id: str, final: Path,
              data_: Data, device: torch.device, emit: Emit, t0: float) -> RunResult:
    emit(StageStarted(run=run_id, stage=Stage.evaluate, epochs=0))
    t1 = time.monotonic()
    DeviceOptions.of(spec, device).model(model)   # layout only: attacks run in full precision
    ev: Evaluation = evaluation.evaluate(model, data_.test_x, data_.test_y, spec,
                                         seed=run.seed, device=device)
    emit(EvaluationEvent(run=run_id, evaluation=ev))
    emit(StageFinished(run=run_id, stage=Stage.evaluate, seconds=time.monotonic() - t1,
                       checkpoint=str(final)))
    per_layer = metrics.condition_numbers(model)
    med, mx = metrics.condition_summary(per_layer)
    return RunResult(
        run=run_id, method=run.method, sparsity=run.sparsity,
        sparsity_actual=metrics.sparsity(model),
        sparsity_per_layer=metrics.sparsity_per_layer(model), seed=run.seed, params=run.params,
        clean_accuracy=ev.clean_accuracy,
        robust_accuracy={a.attack: a.accuracy for a in ev.attacks},
        condition_number=ConditionSummary(median=med, max=mx, per_layer=per_layer),
        lipschitz_upper=metrics.lipschitz_upper(model),
        lipschitz_empirical=ev.lipschitz_empirical,
        security_curve=ev.security_curve, flags=ev.flags, attacks=ev.attacks,
        checkpoint=str(final), spec=spec.model_dump(mode="json"), versions=_versions(),
        wall_time=time.monotonic() - t0)


# ---- whole sweeps in one process ------------------------------------------------------

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


def run_sweep(spec: SweepSpec, artifacts: Path, *, emit: Emit = _no_emit,
              should_cancel: ShouldCancel = _never, device: torch.device | None = None,
              on_result: Callable[[RunResult], None] | None = None,
              fresh: bool = False) -> SweepOutcome:
    """Run every run of ``spec`` here, pretrain groups first; a failed run does not stop others.

    Run ids are the runs' keys (``RunSpec.key``). Cancellation propagates as ``Cancelled``.
    ``fresh``: start over wherever a checkpoint is stale (see :func:`complete_run`).
    """
    device = device or resolve_device(spec.training.device)
    data_ = Data.load(spec)
    outcome = SweepOutcome()
    for runs in spec.pretrain_groups().values():
        ids = [r.key for r in runs]
        try:
            pretrain(spec, runs[0], ids, artifacts, emit=emit, should_cancel=should_cancel,
                     device=device, data_=data_, fresh=fresh)
        except TSCNCError as e:
            if isinstance(e, Cancelled):
                raise
            for r in runs:
                outcome.failures.append(RunError(r.key, r.method, r.sparsity, r.seed,
                                                 e.category, e.message))
                emit(LogEvent(run=r.key, level="error", message=e.message))
            continue
        for r in runs:
            try:
                res = complete_run(spec, r, r.key, artifacts, emit=emit,
                                   should_cancel=should_cancel, device=device, data_=data_,
                                   fresh=fresh)
            except Cancelled:
                raise
            except TSCNCError as e:
                outcome.failures.append(RunError(r.key, r.method, r.sparsity, r.seed,
                                                 e.category, e.message))
                emit(LogEvent(run=r.key, level="error", message=e.message))
                continue
            outcome.results.append(res)
            if on_result:
                on_result(res)
    return outcome
