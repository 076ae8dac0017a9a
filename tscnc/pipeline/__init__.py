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

Modules: :mod:`~tscnc.pipeline.device` (device and GPU options), :mod:`~tscnc.pipeline.checkpoints`
(artifacts layout, atomic checkpoints, staleness), :mod:`~tscnc.pipeline.training` (the data the
stages read, the optimizer and the resumable epoch loop), :mod:`~tscnc.pipeline.stages`
(pretrain, prune, finetune, evaluate) and :mod:`~tscnc.pipeline.sweep` (a whole sweep here).

GPU options (:class:`DeviceOptions`): ``training.amp`` and ``training.channels_last`` take effect
on CUDA only and change nothing elsewhere.

Example::

    >>> from tscnc.spec import preset
    >>> outcome = run_sweep(preset("digits-quick"), Path("out"))      # doctest: +SKIP
    >>> outcome.results[0].clean_accuracy                              # doctest: +SKIP
    0.97
"""

from tscnc.pipeline.checkpoints import (
    CHECKPOINT_NAME,
    FINAL_NAME,
    build_run_model,
    load_model,
    pretrain_dir,
    run_dir,
    save_final,
)
from tscnc.pipeline.device import DeviceOptions, resolve_device
from tscnc.pipeline.stages import complete_run, pretrain
from tscnc.pipeline.sweep import RunError, SweepOutcome, run_sweep
from tscnc.pipeline.training import (
    Data,
    Emit,
    ShouldCancel,
    StageConfig,
    build_optimizer,
    no_decay_parameters,
    train_stage,
    train_step,
)

__all__ = [
    "CHECKPOINT_NAME",
    "FINAL_NAME",
    "Data",
    "DeviceOptions",
    "Emit",
    "RunError",
    "ShouldCancel",
    "StageConfig",
    "SweepOutcome",
    "build_optimizer",
    "build_run_model",
    "complete_run",
    "load_model",
    "no_decay_parameters",
    "pretrain",
    "pretrain_dir",
    "resolve_device",
    "run_dir",
    "run_sweep",
    "save_final",
    "train_stage",
    "train_step",
]
