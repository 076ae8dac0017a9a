"""The stages as the job service runs them: :func:`pretrain` (one per pretrain group) and
:func:`complete_run` (prune + finetune + evaluate one run, or evaluate a dense run)."""

from __future__ import annotations

import platform
import time
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from tscnc import code_version, evaluation, metrics, pruning
from tscnc.pipeline.checkpoints import (
    CHECKPOINT_NAME,
    FINAL_NAME,
    build_run_model,
    discard_checkpoints,
    latest_epoch,
    load_checkpoint,
    pretrain_dir,
    run_dir,
    save_final,
    stale_warning,
    staleness,
)
from tscnc.pipeline.device import DeviceOptions, resolve_device
from tscnc.pipeline.training import (
    Data,
    Emit,
    ShouldCancel,
    StageConfig,
    never,
    no_emit,
    train_stage,
)
from tscnc.records import (
    ConditionSummary,
    Evaluation,
    EvaluationEvent,
    RunResult,
    Stage,
    StageFinished,
    StageStarted,
)
from tscnc.spec import Method, RunSpec, SweepSpec


def _all_params(model: nn.Module) -> Iterable[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def pretrain(spec: SweepSpec, run: RunSpec, run_ids: list[str], artifacts: Path, *,
             emit: Emit = no_emit, should_cancel: ShouldCancel = never,
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
        reason = staleness(final, load_checkpoint(final, torch.device("cpu")).get("code"), None)
        if not reason:
            return final
        stale_warning(reason, fresh, run_ids, emit)
        if not fresh:
            return final
        discard_checkpoints(out)
    data_ = data_ or Data.load(spec)
    torch.manual_seed(run.seed)   # identical initial weights for every run of the group
    model = build_run_model(spec, run, device)
    cfg = StageConfig(Stage.pretrain, spec.training.pretrain_epochs, spec.training.lr,
                      params=_all_params, run_ids=run_ids, fresh=fresh)
    train_stage(model, cfg, spec, run.seed, out, data_, device, emit, should_cancel, run.method)
    save_final(final, model, spec, run)
    return final


def complete_run(spec: SweepSpec, run: RunSpec, run_id: str, artifacts: Path, *,
                 emit: Emit = no_emit, should_cancel: ShouldCancel = never,
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
    model.load_state_dict(load_checkpoint(pre, device)["model"])
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
    last = out / "prune" / CHECKPOINT_NAME.format(latest_epoch(out / "prune"))
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

